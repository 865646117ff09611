"""Named starting regimes for the HRSNN that LNP prunes.

``default``: ``HrsnnConfig``'s own defaults, a strongly contracting network (largest Lyapunov
exponent about -0.08, spectral radius about 0.3 at 500 neurons): a filter bank in which any
pruning rule does about as well as any other.

``edge``: the regime LNP is about - fluctuating, recurrently driven, at the edge of chaos. Its
four parameters (recurrent weight scale, input scale, mean bias and ring neighbours, with the
E/I split kept at half inhibitory) were chosen by ``benchmarks/lnp_regime.py`` on training data
only: among a grid of candidates, those whose untrained networks (three seeds, 100-102, none of
them an evaluation seed) have a largest exponent >= 0, a spectral radius >= 1 and >= 80% of
neurons spiking under independent per-neuron noise, the one with the lowest Mackey-Glass
validation sMAPE (the ridge readout's held-out end of the training span). The grid and every
candidate's numbers are in ``docs/results/lnp_regime.md``.
"""

from __future__ import annotations

from typing import Any, Dict

from ..hrsnn import HrsnnConfig

REGIMES: Dict[str, Dict[str, Any]] = {
    "default": {},
    "edge": {"rec_gain": 1.5, "in_gain": 0.6, "bias_mean": -0.15, "ws_neighbours": 30},
}


def regime_config(regime: str = "default", **overrides: Any) -> HrsnnConfig:
    """``HrsnnConfig`` of the named regime; ``overrides`` (n_neurons, seed, ...) win."""
    if regime not in REGIMES:
        raise ValueError("unknown regime %r (known: %s)" % (regime, ", ".join(REGIMES)))
    return HrsnnConfig(**dict(REGIMES[regime], **overrides))
