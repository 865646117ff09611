"""In-place, allocation-free forms of the integer neuron and trace steps, for the event runtime.

``runtime.neuron`` defines the integer dynamics as pure step functions (the specification, held
against torch and the offline integer reference). At a few microseconds per step, though, numpy's
cost is the number of calls and allocations, not arithmetic: ``lif_step_int`` makes about thirty
temporaries. The kernels here compute the same integers with a fixed set of ufunc calls into
preallocated buffers, in float64:

* every state value is an integer below 2**31 and every product ``a * x`` below 2**53, so float64
  holds them exactly;
* ``rs(a * x, 16) = floor((a / 2**16) * x + 1/2)`` exactly: ``a / 2**16`` is exact, the product
  ``a * x / 2**16`` is representable (an integer times a power of two) so IEEE rounding returns it
  unchanged, adding 1/2 is exact below 2**52, and ``floor`` is exact;
* saturation is ``minimum``/``maximum`` against the int32 limits.

Products of an accumulation with its Q16 multiplier must stay below 2**52: ``fits_float64``
checks a layer's worst case once, and the session keeps ``lif_step_int`` where it does not hold.
``tests/test_kernels.py`` holds the kernels to the step functions, saturation included.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, REQUANT_BITS, THRESHOLD
from .neuron import LifIntParams, LifState

FLOAT64_EXACT = float(1 << 52)
SAFE_BOUND = 0.99 * INT32_MAX  # a bound this far below 2**31 leaves room for its own rounding


def fits_float64(max_abs_acc: float, multiplier: np.ndarray) -> bool:
    """True when ``|acc * m|`` (and the rounding offset) stays exact in float64 for every neuron."""
    m = float(np.max(np.abs(np.asarray(multiplier, np.float64)))) if np.size(multiplier) else 0.0
    return max_abs_acc * m + (1 << REQUANT_BITS) < FLOAT64_EXACT


def _fixed_point_bound(drive: np.ndarray, decay: np.ndarray) -> float:
    """Largest ``|x|`` reachable by ``x' = rs(a * x, 16) + d`` with ``|d| <= drive`` from
    ``|x| <= bound``: ``bound = (drive + 1/2) / (1 - a)``, infinite when some ``a`` is 1."""
    a = np.asarray(decay, np.float64)
    if a.size == 0:
        return 0.0
    if float(a.max()) >= 1.0:
        return float("inf")
    return float(np.max((np.asarray(drive, np.float64) + 0.5) / (1.0 - a)))


class LifKernel:
    """The LIF step of ``runtime.neuron.lif_step_int`` for ``batch`` streams, in place.

    State lives in ``syn`` and ``mem`` (float64, integer values) and ``spikes`` (bool); ``step``
    reads the accumulations ``acc_in`` and ``acc_rec`` (float64, integer values) and updates all
    three. ``None`` for an accumulation means "all zero this step" and skips its term
    (``rs(0, 16) = 0``). With one stream the kernel works on 1-D views (broadcasting a 2-D
    array against per-neuron parameters costs numpy 60% more per call).

    Saturation is skipped when it provably never fires: with ``|acc| <= max_abs_acc`` and every
    decay below 1, ``|syn|`` and ``|mem|`` stay under fixed bounds from the resting state
    (``_fixed_point_bound``; a reset only moves ``mem`` towards 0), and where both bounds are
    below 2**31 the int32 clip is the identity. ``set`` turns the clip back on for a loaded
    state outside the bounds.
    """

    def __init__(self, p: LifIntParams, batch: int, max_abs_acc_in: float = float("inf"), max_abs_acc_rec: float = float("inf")) -> None:
        n = p.a_syn.shape[0]
        scale = 1.0 / (1 << DECAY_BITS)
        self.a_syn = p.a_syn.astype(np.float64) * scale
        self.a_mem = p.a_mem.astype(np.float64) * scale
        self.m_in = np.asarray(p.m_in, np.float64) * (1.0 / (1 << REQUANT_BITS))
        self.m_rec = np.asarray(p.m_rec, np.float64) * (1.0 / (1 << REQUANT_BITS))
        self.bias = np.asarray(p.bias, np.float64)
        self._half_bias = self.bias + 0.5
        self.reset_zero = p.reset_zero
        self.syn = np.zeros((batch, n))
        self.mem = np.zeros((batch, n))
        self.spikes = np.zeros((batch, n), bool)
        self._t = np.empty((batch, n))
        drive = np.abs(self.m_in) * max_abs_acc_in + np.abs(self.m_rec) * max_abs_acc_rec + 1.0 + np.abs(self.bias)
        self.syn_bound = _fixed_point_bound(drive, self.a_syn)
        self.mem_bound = _fixed_point_bound(np.full(n, self.syn_bound), self.a_mem)
        self.saturate = not max(self.syn_bound, self.mem_bound) < SAFE_BOUND
        one = batch == 1  # the 1-D views below are what step() works on
        self._v = tuple(a[0] if one else a for a in (self.syn, self.mem, self._t, self.spikes))

    def step(self, acc_in: Optional[np.ndarray], acc_rec: Optional[np.ndarray]) -> np.ndarray:
        """Advance one step (``acc_*`` shaped like the state, or its 1-D row for one stream);
        returns the spikes (a view of the kernel's own buffer)."""
        syn, mem, t, spikes = self._v
        np.multiply(syn, self.a_syn, out=syn)
        syn += self._half_bias  # rs(a * syn) + bias = floor(a * syn / 2**16 + 1/2 + bias): bias is an integer
        np.floor(syn, out=syn)
        if acc_in is not None:
            np.multiply(acc_in, self.m_in, out=t)
            t += 0.5
            np.floor(t, out=t)
            syn += t
        if acc_rec is not None:
            np.multiply(acc_rec, self.m_rec, out=t)
            t += 0.5
            np.floor(t, out=t)
            syn += t
        if self.saturate:
            np.clip(syn, INT32_MIN, INT32_MAX, out=syn)
        np.multiply(mem, self.a_mem, out=mem)
        mem += 0.5
        np.floor(mem, out=mem)
        mem += syn
        if self.saturate:
            np.clip(mem, INT32_MIN, INT32_MAX, out=mem)
        np.greater_equal(mem, THRESHOLD, out=spikes)
        if self.reset_zero:
            np.copyto(mem, 0.0, where=spikes)
        else:
            np.subtract(mem, THRESHOLD, out=mem, where=spikes)
        return spikes

    def get(self) -> LifState:
        """The state as ``runtime.neuron.LifState`` (int32 copies)."""
        return LifState(self.syn.astype(np.int32), self.mem.astype(np.int32))

    def set(self, state: LifState, spikes: np.ndarray) -> None:
        """Load a state (int32 values); the clip comes back on if it lies outside the bounds."""
        np.copyto(self.syn, np.asarray(state.syn).reshape(self.syn.shape).astype(np.int32).astype(np.float64))
        np.copyto(self.mem, np.asarray(state.mem).reshape(self.mem.shape).astype(np.int32).astype(np.float64))
        np.copyto(self.spikes, np.asarray(spikes).reshape(self.spikes.shape) != 0)
        if float(np.abs(self.syn).max(initial=0)) > self.syn_bound or float(np.abs(self.mem).max(initial=0)) > self.mem_bound:
            self.saturate = True


class TraceKernel:
    """``runtime.neuron.trace_step_int`` in place: ``tr = sat32(rs(a * tr, 16) + s * 2**bits)``,
    on a 1-D view for one stream, without the clip where it provably never fires (as above)."""

    def __init__(self, a_trace: np.ndarray, bits: int, batch: int) -> None:
        self.a = a_trace.astype(np.float64) * (1.0 / (1 << DECAY_BITS))
        self.add = float(1 << bits)
        self.trace = np.zeros((batch, a_trace.shape[0]))
        self.bound = _fixed_point_bound(np.full(a_trace.shape[0], self.add), self.a)
        self.saturate = not self.bound < SAFE_BOUND
        self._one = batch == 1
        self._v = self.trace[0] if self._one else self.trace

    def step(self, spikes: np.ndarray) -> np.ndarray:
        """``spikes`` (batch, n) bool; returns the traces (batch, n)."""
        tr = self._v
        if self._one:
            spikes = spikes[0]
        np.multiply(tr, self.a, out=tr)
        tr += 0.5
        np.floor(tr, out=tr)
        np.add(tr, self.add, out=tr, where=spikes)
        if self.saturate:
            np.clip(tr, INT32_MIN, INT32_MAX, out=tr)
        return self.trace

    def set(self, trace: np.ndarray) -> None:
        np.copyto(self.trace, np.asarray(trace).reshape(self.trace.shape).astype(np.int32).astype(np.float64))
        if float(np.abs(self.trace).max(initial=0)) > self.bound:
            self.saturate = True


__all__ = ["LifKernel", "TraceKernel", "fits_float64"]
