"""The HRSNN's dynamics as LNP analyses them: the spiking network and its smoothed twin.

Both are driven by the same task-agnostic input: white noise frames ``x_t ~ N(0, noise_std^2)``
on every input channel (seeded, identical across iterations so that changes in the measures come
from the network, not the noise).

*Spiking* (exactly ``offline.neurons.lif_step``), gives the firing rates::

    syn_t = a_syn * syn_{t-1} + W_in x_t + W s_{t-1} + b
    v_t   = a_mem * mem_{t-1} + syn_t,    s_t = H(v_t - theta),    mem_t = v_t - theta s_t

*Smoothed* (the map whose Lyapunov spectrum LNP uses): the Heaviside becomes a logistic of width
``w = smoothing * theta``, ``s = sigma((v - theta) / w)``, and the state is ``z = (syn, v)``::

    syn_t = a_syn syn_{t-1} + W_in x_t + W s(v_{t-1}) + b
    v_t   = a_mem (v_{t-1} - theta s(v_{t-1})) + syn_t          (reset "zero": a_mem v (1 - s))

As ``w -> 0`` this is the spiking network; for ``w > 0`` it is differentiable everywhere, so its
Jacobian and exponents exist (the spiking map's Jacobian is zero or undefined at spikes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import sparse

from ..lyapunov import map_lyapunov_spectrum
from ..surgery import HrsnnArrays


@dataclass
class Drive:
    """What the network is driven with: constant parts of each step's input current."""

    current: np.ndarray  # (T, n) W_in x_t + b
    transient: int


def noise_drive(arrays: HrsnnArrays, steps: int, transient: int, std: float, seed: int) -> Drive:
    """White-noise frames through the input weights, plus the bias (seeded)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, std, size=(transient + steps, arrays.w_in.shape[1]))
    return Drive(x @ arrays.w_in.T + arrays.bias, transient)


def decays(tau: np.ndarray) -> np.ndarray:
    return np.exp(-1.0 / tau)


def spiking_rates(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool) -> np.ndarray:
    """Each neuron's spike probability per step after the transient, on ``drive``."""
    w = sparse.csr_matrix(arrays.w_rec)
    a_syn, a_mem = decays(arrays.tau_syn), decays(arrays.tau_mem)
    n = arrays.n
    syn, mem, s = np.zeros(n), np.zeros(n), np.zeros(n)
    counts = np.zeros(n)
    for t, cur in enumerate(drive.current):
        syn = a_syn * syn + cur + w @ s
        v = a_mem * mem + syn
        s = (v >= threshold).astype(np.float64)
        mem = v * (1 - s) if reset_zero else v - threshold * s
        if t >= drive.transient:
            counts += s
    return counts / max(1, len(drive.current) - drive.transient)


def smoothed_map(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool, smoothing: float):
    """(step, jvp) of the smoothed dynamics on state ``z = (syn, v)`` of size 2n."""
    w = sparse.csr_matrix(arrays.w_rec)
    a_syn, a_mem = decays(arrays.tau_syn), decays(arrays.tau_mem)
    width = smoothing * threshold
    n = arrays.n

    def soft(v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        s = 0.5 * (1.0 + np.tanh(0.5 * (v - threshold) / width))  # logistic, overflow-free
        return s, s * (1.0 - s) / width

    def step(z: np.ndarray, t: int) -> np.ndarray:
        syn, v = z[:n], z[n:]
        s, _ = soft(v)
        syn2 = a_syn * syn + drive.current[t] + w @ s
        mem = v * (1.0 - s) if reset_zero else v - threshold * s
        return np.concatenate([syn2, a_mem * mem + syn2])

    def jvp(z: np.ndarray, _t: int, q: np.ndarray) -> np.ndarray:
        v = z[n:]
        s, ds_dv = soft(v)
        dsyn, dv = q[:n], q[n:]
        ds = ds_dv[:, None] * dv
        dsyn2 = a_syn[:, None] * dsyn + w @ ds
        if reset_zero:
            dmem = (1.0 - s)[:, None] * dv - v[:, None] * ds
        else:
            dmem = dv - threshold * ds
        return np.concatenate([dsyn2, a_mem[:, None] * dmem + dsyn2])

    return step, jvp


@dataclass
class Analysis:
    exponents: np.ndarray  # (k,) per step, largest first
    local: np.ndarray  # (n,) per-neuron local exponents (mean of the syn and v coordinates)
    rates: np.ndarray  # (n,) spike probability per step on the noise drive


def analyse(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool, smoothing: float, k: int, seed: int) -> Analysis:
    """Lyapunov spectrum, local exponents and firing rates of the network on ``drive``."""
    n = arrays.n
    step, jvp = smoothed_map(arrays, drive, threshold, reset_zero, smoothing)
    res = map_lyapunov_spectrum(
        step, jvp, np.zeros(2 * n), n_steps=len(drive.current) - drive.transient, k=min(k, 2 * n),
        transient=drive.transient, reorth=5, seed=seed,
    )
    local = 0.5 * (res.local[:n] + res.local[n:])
    return Analysis(res.exponents, local, spiking_rates(arrays, drive, threshold, reset_zero))
