"""LNP's options in one dataclass: targets, stopping rule, analysis settings and ablation switches.

Its own module so that ``analysis`` (which defaults to it) and ``loop`` (which runs it) both
import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LnpConfig:
    target_neurons: float = 0.5  # kept fraction of the starting neurons
    target_synapses: float = 0.5  # kept fraction of the starting recurrent synapses
    max_iterations: int = 100
    prune_iterations: int = 6  # iterations over which the targets are approached geometrically
    tolerance: float = 0.01  # relative change under which an iteration counts as settled
    patience: int = 3  # settled iterations in a row that stop the loop
    noise_steps: int = 600  # steps of noise input per analysis (after the transient)
    transient_steps: int = 200
    noise_std: float = 1.0  # independent white noise per neuron, in units of the input's RMS current
    lyapunov_k: int = 8  # exponents (and vectors) of the smoothed dynamics
    smoothing: float = 0.25  # width of the logistic spike, in units of the threshold
    modulation: float = 3.0  # strength m of the Lyapunov modulation: factors span [exp(-m), 1]
    neighbourhood_average: bool = True  # local exponents averaged over each neuron's closed neighbourhood
    subgraph: bool = False  # True: no Kron fill-in, no regrowth; the result is a subgraph of the start
    rescale: bool = True  # kept synapses scaled by 1/p (unbiased sparsification)
    delocalise_fraction: float = 0.05  # edges added back per iteration / edges removed
    betweenness_samples: int = 256  # sources for sampled betweenness (exact below this N)
    bo_evaluations: int = 10  # Bayesian-optimisation evaluations per iteration
    target_exponent: float = 0.0  # timescale objective: largest exponent close to this
    rate_range: tuple = (0.02, 0.3)  # timescale objective: mean spike rate kept in here
    # Ablations: each of LNP's four steps (and the modulation) can be switched off.
    noise_pruning: bool = True  # False: synapses pruned uniformly at random instead
    lyapunov_modulation: bool = True
    neuron_pruning_by_betweenness: bool = True  # False: neurons removed at random
    delocalisation: bool = True
    timescale_optimisation: bool = True
    seed: int = 0
