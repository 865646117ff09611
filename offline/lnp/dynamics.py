"""The HRSNN's dynamics as LNP analyses them: the spiking network and its smoothed twin.

Both are driven by the same task-agnostic input (``analysis.drive_of``): independent white noise
on every neuron (seeded, identical across iterations so that changes in the measures come from the
network, not the noise).

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
from typing import Optional, Tuple

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


def spiking_statistics(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool, record: Optional[list] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each neuron's spike probability per step after the transient on ``drive``, and the mean
    and standard deviation of its membrane potential ``v`` (before the spike test). With a list
    ``record``, each neuron's total input current per step (``(T, n)``, drive plus recurrent
    spikes) is appended to it: the input ``linear_response_gains`` replays."""
    w = sparse.csr_matrix(arrays.w_rec)
    a_syn, a_mem = decays(arrays.tau_syn), decays(arrays.tau_mem)
    n = arrays.n
    syn, mem, s = np.zeros(n), np.zeros(n), np.zeros(n)
    counts, v1, v2 = np.zeros(n), np.zeros(n), np.zeros(n)
    inputs = np.empty((len(drive.current), n)) if record is not None else None
    for t, cur in enumerate(drive.current):
        total = cur + w @ s
        if inputs is not None:
            inputs[t] = total
        syn = a_syn * syn + total
        v = a_mem * mem + syn
        s = (v >= threshold).astype(np.float64)
        mem = v * (1 - s) if reset_zero else v - threshold * s
        if t >= drive.transient:
            counts += s
            v1 += v
            v2 += v * v
    if record is not None:
        record.append(inputs)
    m = max(1, len(drive.current) - drive.transient)
    mean = v1 / m
    return counts / m, mean, np.sqrt(np.maximum(v2 / m - mean * mean, 0.0))


def spiking_rates(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool) -> np.ndarray:
    """Each neuron's spike probability per step after the transient, on ``drive``."""
    return spiking_statistics(arrays, drive, threshold, reset_zero)[0]


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


def linear_response_gains(arrays: HrsnnArrays, inputs: np.ndarray, transient: int, threshold: float, reset_zero: bool, smoothing: float) -> np.ndarray:
    """Each neuron's linear-response gain: ``d <s_i> / d I_i``, the change of its mean (smoothed)
    spike probability per unit of extra constant input current, with every neuron replaying its
    own recorded input ``inputs`` (``(T, n)``, what it received in the spiking network under its
    independent noise) through its own synaptic and membrane filters and reset.

    Computed exactly by forward-mode differentiation of the single neuron under the logistic
    spike of width ``w = smoothing * theta`` (the smoothed map's neuron)::

        dsyn_t = a_syn dsyn_{t-1} + 1,   dv_t = a_mem dmem_{t-1} + dsyn_t,   ds_t = s'(v_t) dv_t
        dmem_t = dv_t - theta ds_t   (reset "zero": (1 - s_t) dv_t - v_t ds_t)

    ``g_i`` = mean of ``ds_t`` after the transient. It includes the membrane's integration (a
    slow neuron sums a current over more steps) and the reset, and it is positive for a neuron
    that never crossed threshold on the trace (how close its membrane came), unlike the earlier
    ``r (1 - r) / w``, which was 0 for every silent neuron and left the covariance diagonal."""
    a_syn, a_mem = decays(arrays.tau_syn), decays(arrays.tau_mem)
    width = smoothing * threshold
    n = arrays.n
    syn, mem = np.zeros(n), np.zeros(n)
    dsyn, dmem = np.zeros(n), np.zeros(n)
    acc = np.zeros(n)
    for t, cur in enumerate(inputs):
        syn = a_syn * syn + cur
        dsyn = a_syn * dsyn + 1.0
        v = a_mem * mem + syn
        dv = a_mem * dmem + dsyn
        s = 0.5 * (1.0 + np.tanh(0.5 * (v - threshold) / width))
        ds = s * (1.0 - s) / width * dv
        if reset_zero:
            mem, dmem = v * (1.0 - s), (1.0 - s) * dv - v * ds
        else:
            mem, dmem = v - threshold * s, dv - threshold * ds
        if t >= transient:
            acc += ds
    return acc / max(1, len(inputs) - transient)


@dataclass
class Analysis:
    exponents: np.ndarray  # (k,) per step, largest first
    local: np.ndarray  # (n,) per-neuron local exponents (mean of the syn and v coordinates)
    rates: np.ndarray  # (n,) spike probability per step on the noise drive
    v_mean: np.ndarray  # (n,) membrane potential's mean on the noise drive
    v_std: np.ndarray  # (n,) and its standard deviation
    gains: np.ndarray  # (n,) linear-response gains (``linear_response_gains``)


def analyse(arrays: HrsnnArrays, drive: Drive, threshold: float, reset_zero: bool, smoothing: float, k: int, seed: int) -> Analysis:
    """Lyapunov spectrum, local exponents and firing rates of the network on ``drive``."""
    n = arrays.n
    step, jvp = smoothed_map(arrays, drive, threshold, reset_zero, smoothing)
    res = map_lyapunov_spectrum(
        step, jvp, np.zeros(2 * n), n_steps=len(drive.current) - drive.transient, k=min(k, 2 * n),
        transient=drive.transient, reorth=5, seed=seed,
    )
    local = 0.5 * (res.local[:n] + res.local[n:])
    record: list = []
    rates, v_mean, v_std = spiking_statistics(arrays, drive, threshold, reset_zero, record)
    gains = linear_response_gains(arrays, record[0], drive.transient, threshold, reset_zero, smoothing)
    return Analysis(res.exponents, local, rates, v_mean, v_std, gains)
