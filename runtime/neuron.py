"""The integer current-based LIF neuron: one pure step function, numpy.

Discrete equations (units: time steps; all values integers in state units, where the threshold
is ``THRESHOLD`` = 2**14; see ``docs/quantization.md``)::

    syn[t] = sat32( rs(a_syn * syn[t-1], 16) + rs(acc_in * m_in, 16) + rs(acc_rec * m_rec, 16) + bias )
    v      = sat32( rs(a_mem * mem[t-1], 16) + syn[t] )
    s[t]   = v >= THRESHOLD
    mem[t] = v - THRESHOLD * s[t]         (reset "subtract")
           = v * (1 - s[t])               (reset "zero")

``rs(x, k)`` is the rounding arithmetic right shift of ``runtime.fixedpoint``; ``acc_in`` and
``acc_rec`` are the int32 accumulations of int8 weights over the inputs and the neurons that
spiked at the previous step. The float twin is ``offline.neurons.lif_step``; the offline
integer reference re-implements these lines in torch, and the tests hold the three together.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from .fixedpoint import DECAY_BITS, REQUANT_BITS, THRESHOLD, rshift_round, saturate32


class LifState(NamedTuple):
    """Per-neuron state, int32, shape (batch, n)."""

    syn: np.ndarray
    mem: np.ndarray


class LifIntParams(NamedTuple):
    """Per-neuron integer parameters, shape (n,)."""

    a_syn: np.ndarray  # Q16 synaptic-current decay
    a_mem: np.ndarray  # Q16 membrane decay
    m_in: np.ndarray  # Q16 multiplier: input accumulation -> state units
    m_rec: np.ndarray  # Q16 multiplier: recurrent accumulation -> state units
    bias: np.ndarray  # constant current per step, state units
    reset_zero: bool  # True: reset to zero; False: subtract the threshold


def lif_state_zeros(batch: int, n: int) -> LifState:
    """The resting state (all zeros) for ``batch`` independent streams."""
    return LifState(np.zeros((batch, n), np.int32), np.zeros((batch, n), np.int32))


def lif_step_int(
    acc_in: np.ndarray, acc_rec: np.ndarray, state: LifState, p: LifIntParams
) -> Tuple[np.ndarray, LifState]:
    """Advance every neuron one step; returns (spikes as bool (batch, n), new state)."""
    syn = rshift_round(p.a_syn.astype(np.int64) * state.syn, DECAY_BITS)
    syn += rshift_round(acc_in.astype(np.int64) * p.m_in, REQUANT_BITS)
    syn += rshift_round(acc_rec.astype(np.int64) * p.m_rec, REQUANT_BITS)
    syn += p.bias
    syn = saturate32(syn)
    v = saturate32(rshift_round(p.a_mem.astype(np.int64) * state.mem, DECAY_BITS) + syn)
    spikes = v >= THRESHOLD
    if p.reset_zero:
        v[spikes] = 0
    else:
        v -= spikes * THRESHOLD
    return spikes, LifState(syn.astype(np.int32), v.astype(np.int32))


def trace_step_int(trace: np.ndarray, spikes: np.ndarray, a_trace: np.ndarray, bits: int) -> np.ndarray:
    """Exponential spike trace: ``tr = sat32(rs(a * tr, 16) + s * 2**bits)`` (int32)."""
    tr = rshift_round(a_trace.astype(np.int64) * trace, DECAY_BITS) + (spikes.astype(np.int64) << bits)
    return saturate32(tr).astype(np.int32)
