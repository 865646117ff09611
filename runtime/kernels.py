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

from typing import Optional, Tuple

import numpy as np

from .fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, REQUANT_BITS, THRESHOLD
from .neuron import LifIntParams, LifState

FLOAT64_EXACT = float(1 << 52)
# Float constants: a Python int beside a float64 array sends numpy through type resolution on
# every call (4x slower for a ``where=`` subtract).
THRESHOLD_F, INT32_MIN_F, INT32_MAX_F = float(THRESHOLD), float(INT32_MIN), float(INT32_MAX)
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

    def __init__(self, p: LifIntParams, batch: int, max_abs_acc_in: float = float("inf"), max_abs_acc_rec: float = float("inf"),
                 trace: Optional[Tuple[np.ndarray, int]] = None) -> None:
        n = p.a_syn.shape[0]
        one = batch == 1  # one stream: 1-D rows, below
        rows = 2 if trace is None else 3
        shape = (rows, n) if one else (rows, 1, n)
        scale = 1.0 / (1 << DECAY_BITS)
        self.a_syn = p.a_syn.astype(np.float64) * scale
        self.a_mem = p.a_mem.astype(np.float64) * scale
        self.m_in = np.asarray(p.m_in, np.float64) * (1.0 / (1 << REQUANT_BITS))
        self.m_rec = np.asarray(p.m_rec, np.float64) * (1.0 / (1 << REQUANT_BITS))
        self.bias = np.asarray(p.bias, np.float64)
        self.reset_zero = p.reset_zero
        # syn and mem decay together, as do the two accumulations: one call on (2, n) costs
        # less than two on (n,). The bias joins the decay's rounding offset:
        # rs(a * syn) + bias = floor(a * syn / 2**16 + 1/2 + bias), as bias is an integer.
        # With ``trace`` (the readout's (a_trace, bits)) the spike trace of these neurons is a
        # third row of the state: it decays in the same calls (trace_step_int, fused).
        decays, offsets = [self.a_syn, self.a_mem], [self.bias + 0.5, np.full(n, 0.5)]
        if trace is not None:
            decays.append(np.asarray(trace[0], np.float64) * scale)
            offsets.append(np.full(n, 0.5))
            self.trace_add = float(1 << trace[1])
            self.trace_bound = _fixed_point_bound(np.full(n, self.trace_add), decays[2])
            self.trace_saturate = not self.trace_bound < SAFE_BOUND
        self._decay = np.stack(decays).reshape(shape)
        self._offset = np.stack(offsets).reshape(shape)
        self._mult = np.stack([self.m_in, self.m_rec]).reshape((2,) + shape[1:])
        self.state = np.zeros((rows, batch, n))  # [syn, mem(, trace)]
        self.trace = self.state[2] if trace is not None else None
        kick = [-float(THRESHOLD)] + ([self.trace_add] if trace is not None else [])
        self._kick = np.array(kick).reshape((len(kick), 1) if one else (len(kick), 1, 1))  # spikes' effect on [mem(, trace)]
        self._keep = np.zeros((n,) if one else (batch, n), bool)
        self.acc = np.zeros((2, batch, n))  # [acc_in, acc_rec]: filled by the caller before step()
        self.syn, self.mem = self.state[0], self.state[1]
        self.acc_in, self.acc_rec = self.acc[0], self.acc[1]
        self.spikes = np.zeros((batch, n), bool)
        self._t = np.empty((2, batch, n))
        drive = np.abs(self.m_in) * max_abs_acc_in + np.abs(self.m_rec) * max_abs_acc_rec + 1.0 + np.abs(self.bias)
        self.syn_bound = _fixed_point_bound(drive, self.a_syn)
        self.mem_bound = _fixed_point_bound(np.full(n, self.syn_bound), self.a_mem)
        self.saturate = not max(self.syn_bound, self.mem_bound) < SAFE_BOUND
        views = (self.state, self.acc, self._t, self.spikes)
        self._v = tuple(a.reshape(a.shape[:1] + (n,) if a.ndim == 3 else (n,)) if one else a for a in views)

    def step(self, inputs: bool = True) -> np.ndarray:
        """Advance one step from the accumulations in ``acc`` (``inputs=False``: both are zero
        this step, and their terms, ``rs(0, 16) = 0``, are skipped); returns the spikes (the
        kernel's own buffer, (batch, n) bool)."""
        state, acc, t, spikes = self._v
        np.multiply(state, self._decay, out=state)
        state += self._offset
        np.floor(state, out=state)  # [rs(a_syn * syn) + bias, rs(a_mem * mem)]
        syn, mem = state[0], state[1]
        if inputs:
            np.multiply(acc, self._mult, out=t)
            t += 0.5
            np.floor(t, out=t)  # [rs(acc_in * m_in), rs(acc_rec * m_rec)]
            syn += t[0]
            syn += t[1]
        if self.saturate:
            np.clip(syn, INT32_MIN_F, INT32_MAX_F, out=syn)
        mem += syn
        if self.saturate:
            np.clip(mem, INT32_MIN_F, INT32_MAX_F, out=mem)
        np.greater_equal(mem, THRESHOLD_F, out=spikes)
        # Reset and trace without ``where=``: a masked ufunc branches per element, 5 ns each on
        # random spikes (10 us per 2,048 neurons at 40% activity); a product with the spikes is
        # branch-free. Subtract reset and trace share one call: state[1:] += spikes * [-T, 2**bits].
        if self.reset_zero:
            np.logical_not(spikes, out=self._keep)
            np.multiply(mem, self._keep, out=mem)
            if self.trace is not None:
                np.multiply(spikes, self.trace_add, out=t[0])
                state[2] += t[0]
        else:
            k = self._kick.shape[0]
            np.multiply(spikes, self._kick, out=t[:k])
            state[1 : 1 + k] += t[:k]
        if self.trace is not None and self.trace_saturate:
            np.clip(state[2], INT32_MIN_F, INT32_MAX_F, out=state[2])
        return self.spikes

    def set_trace(self, trace: np.ndarray) -> None:
        """Load the fused trace (int32 values); its clip comes back on outside its bound."""
        np.copyto(self.trace, np.asarray(trace).reshape(self.trace.shape).astype(np.int32).astype(np.float64))
        if float(np.abs(self.trace).max(initial=0)) > self.trace_bound:
            self.trace_saturate = True

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
        self._t = np.empty_like(self._v)

    def step(self, spikes: np.ndarray) -> np.ndarray:
        """``spikes`` (batch, n) bool; returns the traces (batch, n)."""
        tr = self._v
        if self._one:
            spikes = spikes[0]
        np.multiply(tr, self.a, out=tr)
        tr += 0.5
        np.floor(tr, out=tr)
        np.multiply(spikes, self.add, out=self._t)  # branch-free (see LifKernel.step)
        tr += self._t
        if self.saturate:
            np.clip(tr, INT32_MIN_F, INT32_MAX_F, out=tr)
        return self.trace

    def set(self, trace: np.ndarray) -> None:
        np.copyto(self.trace, np.asarray(trace).reshape(self.trace.shape).astype(np.int32).astype(np.float64))
        if float(np.abs(self.trace).max(initial=0)) > self.bound:
            self.saturate = True


class HardResetKernel:
    """``runtime.conv_ops.lif_hard_step_int`` in place, for one conv or linear LIF layer:
    ``v = sat32(rs(decay * mem, 16) + rs(acc * m, shift) + bias)``, spike where
    ``v >= THRESHOLD``, then ``mem = v * (1 - s)``. Float64 as above: exact while
    ``|acc| * m + 2**(shift-1) < 2**52`` (``exact``, checked here; the session keeps the integer
    step otherwise); the clip is skipped where the membrane provably stays below 2**31.
    ``m`` and ``bias`` broadcast over the state (per output channel)."""

    def __init__(self, state_shape: Tuple[int, ...], decay: int, m: np.ndarray, shift: int, bias: np.ndarray, max_abs_acc: float) -> None:
        m = np.asarray(m, np.float64)
        self.exact = max_abs_acc * float(np.max(np.abs(m), initial=0.0)) + 2.0 ** (shift - 1) < FLOAT64_EXACT
        # Else the caller may still pass the requantised current rs(acc * m, shift), computed in
        # int64, to step_current: exact while that current stays below 2**52.
        self.current_exact = max_abs_acc * float(np.max(np.abs(m), initial=0.0)) * 2.0 ** -shift + 2.0 < FLOAT64_EXACT
        self.decay = float(decay) / (1 << DECAY_BITS)
        self.m = m * 2.0 ** -shift  # exact: a power-of-two scaling
        # rs(decay * mem) + bias: one rounding offset, laid out as the state (adding a
        # per-channel (O, 1, 1) array broadcast over (B, O, H, W) costs numpy 2x more per call)
        self.offset = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.float64) + 0.5, state_shape))
        drive = max_abs_acc * float(np.max(np.abs(self.m), initial=0.0)) + 1.0 + float(np.max(np.abs(bias), initial=0.0))
        self.bound = _fixed_point_bound(np.array([drive]), np.array([self.decay]))
        self.saturate = not self.bound < SAFE_BOUND
        self.spikes = np.zeros(state_shape, bool)
        self._t = np.empty(state_shape)
        self._keep = np.empty(state_shape, bool)

    def step(self, acc: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """Advance ``mem`` (float64, integer values) in place; returns the spikes (own buffer)."""
        t = self._t
        np.multiply(acc, self.m, out=t)
        t += 0.5
        np.floor(t, out=t)  # rs(acc * m, shift)
        return self.step_current(t, mem)

    def current(self, acc: np.ndarray) -> np.ndarray:
        """``rs(acc * m, shift)`` for accumulations of any leading shape (several steps at once;
        requires ``exact``): a new float64 array."""
        t = np.multiply(acc, self.m)  # m broadcasts over the leading (batch or step x batch) axis
        t += 0.5
        return np.floor(t, out=t)

    def step_current(self, current: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """The same from the requantised current ``rs(acc * m, shift)`` (integer values)."""
        np.multiply(mem, self.decay, out=mem)
        mem += self.offset
        np.floor(mem, out=mem)
        mem += current
        if self.saturate:
            np.clip(mem, INT32_MIN_F, INT32_MAX_F, out=mem)
        np.greater_equal(mem, THRESHOLD_F, out=self.spikes)
        np.logical_not(self.spikes, out=self._keep)  # branch-free reset (see LifKernel.step)
        np.multiply(mem, self._keep, out=mem)
        return self.spikes

    def reset(self) -> None:
        """Back to the clip decision of construction (a new run starts from rest)."""
        self.saturate = not self.bound < SAFE_BOUND

    def check_loaded(self, mem: np.ndarray) -> None:
        """A membrane loaded from outside (``set_state``) beyond the bound turns the clip on."""
        if float(np.abs(mem).max(initial=0)) > self.bound:
            self.saturate = True


__all__ = ["LifKernel", "TraceKernel", "HardResetKernel", "fits_float64"]
