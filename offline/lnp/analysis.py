"""The measures LNP records for a network (and the evaluation reports for any HRSNN): Lyapunov
spectrum of the smoothed dynamics, local exponents, firing rates on noise, spectral radius, IPR of
the leading eigenvectors, local degree heterogeneity."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..hrsnn import HRSNN, HrsnnConfig
from ..lyapunov import map_lyapunov_spectrum
from ..surgery import HrsnnArrays, arrays_of
from .config import LnpConfig
from .dynamics import Analysis, Drive, analyse, smoothed_map, spiking_rates
from .graph import leading_spectrum, local_heterogeneity


def noise_frames(n_neurons: int, steps: int, transient: int, std: float, seed: int) -> np.ndarray:
    """The task-agnostic input: independent white noise for every neuron, ``(T, n_neurons)``
    with std ``std``, identical for every iteration of one run (pruned networks index its
    columns by their neurons' original positions)."""
    return np.random.default_rng([seed, 7919]).normal(0.0, std, size=(transient + steps, n_neurons))


def noise_scale(arrays: HrsnnArrays) -> float:
    """Current std per unit of noise: the RMS norm of the neurons' input-weight rows, i.e. the
    current a neuron receives on average from unit-variance input on every channel. The noise
    has the input's strength, but each neuron gets its own (the rate model's Lyapunov equation
    assumes independent noise; the same noise broadcast through ``W_in`` is fully correlated)."""
    return float(np.sqrt(np.mean(np.sum(arrays.w_in ** 2, axis=1)))) if arrays.w_in.size else 1.0


def drive_of(arrays: HrsnnArrays, frames: np.ndarray, transient: int, index: Optional[np.ndarray] = None) -> Drive:
    """``bias + noise_scale * xi_i(t)``: ``frames[:, index]`` is each neuron's own noise."""
    cols = frames if index is None else frames[:, index]
    if cols.shape[1] != arrays.n:
        raise ValueError("noise frames have %d columns for %d neurons" % (cols.shape[1], arrays.n))
    return Drive(noise_scale(arrays) * cols + arrays.bias, transient)


def full_analysis(arrays: HrsnnArrays, frames: np.ndarray, mcfg: HrsnnConfig, cfg: Any, index: Optional[np.ndarray] = None) -> Tuple[Analysis, Dict[str, float]]:
    """(Analysis, row of measures) of ``arrays`` on ``frames`` (columns ``index``)."""
    an = analyse(arrays, drive_of(arrays, frames, cfg.transient_steps, index), mcfg.threshold, mcfg.reset == "zero", cfg.smoothing, cfg.lyapunov_k, cfg.seed)
    row = {
        "lyapunov_max": float(an.exponents[0]),
        "lyapunov_exponents": [float(x) for x in an.exponents],
        "mean_rate": float(an.rates.mean()),
        "active_fraction": float((an.rates > 0).mean()),
        "heterogeneity": local_heterogeneity(arrays.w_rec),
    }
    row.update(leading_spectrum(arrays.w_rec))
    return an, row


def quick_exponent(arrays: HrsnnArrays, frames: np.ndarray, mcfg: HrsnnConfig, cfg: Any, index: Optional[np.ndarray] = None) -> Tuple[float, float]:
    """(largest exponent, mean spike rate) on the first half of the noise: the BO objective's inputs."""
    steps = cfg.transient_steps + max(100, cfg.noise_steps // 2)
    drive = drive_of(arrays, frames[:steps], cfg.transient_steps, index)
    reset_zero = mcfg.reset == "zero"
    step, jvp = smoothed_map(arrays, drive, mcfg.threshold, reset_zero, cfg.smoothing)
    res = map_lyapunov_spectrum(step, jvp, np.zeros(2 * arrays.n), steps - cfg.transient_steps, k=1, transient=cfg.transient_steps, reorth=5, seed=cfg.seed)
    return float(res.exponents[0]), float(spiking_rates(arrays, drive, mcfg.threshold, reset_zero).mean())


def analyse_network(model: HRSNN, cfg: Optional[Any] = None) -> Dict[str, Any]:
    """LNP's measures of any HRSNN (pruned or not, trained or not) on LNP's noise drive."""
    cfg = cfg or LnpConfig()
    arrays = arrays_of(model)
    frames = noise_frames(arrays.n, cfg.noise_steps, cfg.transient_steps, cfg.noise_std, cfg.seed)
    _, row = full_analysis(arrays, frames, model.cfg, cfg)
    row.update(neurons=arrays.n, synapses=arrays.n_synapses)
    return row
