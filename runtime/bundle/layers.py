"""The bundle's records for the recurrent model (``Bundle``'s parts), and the field declaration and
consistency-rule helpers every record kind uses (the conv records in ``conv_layers.py`` share them).

Each record is a frozen dataclass with a ``kind``; scalar fields go to the manifest, fields declared
with ``_array`` to the array table; ``check()`` raises ``_Invalid`` (never asserts) and the container
turns that into a ``BundleError`` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Type, Union

import numpy as np


def _array(dtype: str, ndim: int, optional: bool = False) -> Any:
    """Declare an array field: stored in the array table, checked for dtype and rank on load."""
    meta = {"array": True, "dtypes": dtype.split("|"), "ndim": ndim, "optional": optional}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


# ----------------------------------------------------------------------------- validation helpers


class _Invalid(Exception):
    """Internal: a consistency rule failed; turned into a BundleError naming the file."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _Invalid(message)


MAX_OUTPUT_SCALE = 1e30  # a readout scale beyond this turns integer sums into inf outputs
MAX_READOUT_DELAY = 4096  # a trace readout keeps this many past steps at most (its history buffer)


def _require_scale(value: Any, name: str, limit: float = float("inf")) -> None:
    arr = np.asarray(value, dtype=np.float64)
    _require(bool(np.all(np.isfinite(arr))) and bool(np.all(arr > 0)), "%s must be finite and > 0" % name)
    _require(bool(np.all(arr <= limit)), "%s must be at most %g" % (name, limit))


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SparseMatrix:
    """Weights ``W[target, source]`` stored source-major (compressed sparse columns).

    For event-driven inference: when source ``j`` emits an event, its targets are
    ``indices[indptr[j]:indptr[j+1]]`` with int8 weights ``values[...]`` - one contiguous block.
    """

    kind = "sparse"
    n_targets: int  # rows of W
    n_sources: int  # columns of W
    indptr: np.ndarray = _array("int32|int64", 1)  # (n_sources + 1,), start of each column
    indices: np.ndarray = _array("uint16|int32", 1)  # (nnz,), target of each weight
    values: np.ndarray = _array("int8", 1)  # (nnz,), int8 weights

    def check(self) -> None:
        _require(self.indptr.shape == (self.n_sources + 1,), "indptr has shape %s, expected (%d,)" % (self.indptr.shape, self.n_sources + 1))
        _require(self.indices.shape == self.values.shape, "indices and values differ in length")
        _require(int(self.indptr[0]) == 0 and int(self.indptr[-1]) == self.values.size, "indptr does not span the stored weights")
        _require(bool(np.all(np.diff(self.indptr) >= 0)), "indptr is not non-decreasing")
        if self.indices.size:
            _require(int(self.indices.min()) >= 0 and int(self.indices.max()) < self.n_targets, "a weight targets a neuron out of range")
            cols = np.repeat(np.arange(self.n_sources, dtype=np.int64), np.diff(self.indptr.astype(np.int64)))
            order = np.lexsort((self.indices, cols))
            rows, cols = self.indices[order], cols[order]
            twice = np.flatnonzero((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1]))
            _require(not twice.size, "source %d names target %d twice (one weight per pair)" % (
                (int(cols[twice[0]]), int(rows[twice[0]])) if twice.size else (0, 0)))

    def max_abs_acc(self, peak: int) -> int:
        """The largest ``|sum over sources of W[t, s] * x[s]|`` for inputs ``|x| <= peak``."""
        if not self.values.size:
            return 0
        per_target = np.bincount(self.indices.astype(np.int64), weights=np.abs(self.values.astype(np.float64)), minlength=self.n_targets)
        return int(per_target.max()) * int(peak)

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    def to_dense(self) -> np.ndarray:
        """Dense int8 ``(n_targets, n_sources)``: for references and tests, not for inference."""
        dense = np.zeros((self.n_targets, self.n_sources), np.int8)
        cols = np.repeat(np.arange(self.n_sources), np.diff(self.indptr))
        dense[self.indices.astype(np.int64), cols] = self.values
        return dense

    @classmethod
    def from_dense(cls, w: np.ndarray) -> "SparseMatrix":
        """Pack a dense int8 ``(n_targets, n_sources)`` matrix, dropping zeros."""
        w = np.asarray(w, np.int8)
        tgt, src = np.nonzero(w.T)  # source-major order
        counts = np.bincount(tgt, minlength=w.shape[1])
        idx_dtype = np.uint16 if w.shape[0] <= 65536 else np.int32
        ptr_dtype = np.int32 if len(src) < 2**31 else np.int64
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(ptr_dtype)
        return cls(w.shape[0], w.shape[1], indptr, src.astype(idx_dtype), w.T[tgt, src])


@dataclass(frozen=True)
class DirectEncoder:
    """Real inputs fed as currents: ``round(x / scale)`` as a signed ``bits``-bit integer."""

    kind = "encoder.direct"
    n_inputs: int
    scale: float  # input units per integer step
    bits: int  # 8 or 16

    def check(self) -> None:
        _require(self.n_inputs >= 1, "n_inputs must be >= 1")
        _require_scale(self.scale, "scale")
        _require(self.bits in (8, 16), "bits must be 8 or 16")


@dataclass(frozen=True)
class RateEncoder:
    """Bernoulli spikes with probability ``clip(gain * x, 0, 1)``; ``seed`` fixes the trains."""

    kind = "encoder.rate"
    n_inputs: int
    gain: float
    seed: int

    def check(self) -> None:
        _require(self.n_inputs >= 1, "n_inputs must be >= 1")
        _require_scale(self.gain, "gain")


@dataclass(frozen=True)
class DeltaEncoder:
    """Level-crossing spikes, an up and a down channel per input, every ``threshold``."""

    kind = "encoder.delta"
    n_inputs: int
    threshold: float

    def check(self) -> None:
        _require(self.n_inputs >= 1, "n_inputs must be >= 1")
        _require_scale(self.threshold, "threshold")


@dataclass(frozen=True)
class LifRecurrentLayer:
    """A recurrent layer of current-based LIF neurons in integer form (``runtime/neuron.py``)."""

    kind = "lif_recurrent"
    name: str
    n: int
    reset: str  # "subtract" or "zero"
    w_in: SparseMatrix  # (n, input channels)
    w_rec: SparseMatrix  # (n, n)
    a_syn: np.ndarray = _array("int32", 1)  # Q16 synaptic decay per neuron
    a_mem: np.ndarray = _array("int32", 1)  # Q16 membrane decay per neuron
    m_in: np.ndarray = _array("int64", 1)  # Q16 requantisation of input accumulations
    m_rec: np.ndarray = _array("int64", 1)  # Q16 requantisation of recurrent accumulations
    bias: np.ndarray = _array("int32", 1)  # constant current per step, state units
    w_in_scale: np.ndarray = _array("float64", 1)  # float weight per int8 step, per neuron
    w_rec_scale: np.ndarray = _array("float64", 1)

    def check(self) -> None:
        _require(self.n >= 1, "n must be >= 1 (a layer without neurons)")
        _require(self.reset in ("subtract", "zero"), "reset must be 'subtract' or 'zero'")
        _require(self.w_in.n_targets == self.n and self.w_rec.n_targets == self.n, "weights do not target %d neurons" % self.n)
        _require(self.w_rec.n_sources == self.n, "recurrent weights are not square")
        for name in ("a_syn", "a_mem", "m_in", "m_rec", "bias", "w_in_scale", "w_rec_scale"):
            _require(getattr(self, name).shape == (self.n,), "%s does not have %d entries" % (name, self.n))
        for name in ("a_syn", "a_mem"):
            arr = getattr(self, name)
            _require(bool(np.all((arr >= 0) & (arr <= 1 << 16))), "%s is outside [0, 65536]" % name)
        for name in ("w_in_scale", "w_rec_scale"):
            _require_scale(getattr(self, name), name)
        for name in ("m_in", "m_rec"):  # keeps acc * m inside int64 for any int32 accumulation
            arr = getattr(self, name)
            _require(bool(np.all((arr >= 0) & (arr < 1 << 31))), "%s is outside [0, 2**31)" % name)


@dataclass(frozen=True)
class TraceReadout:
    """Dense readout of exponential spike traces: ``y = (w @ trace) * w_scale / 2**trace_bits + bias``.

    ``delays`` (optional; absent means ``[0]``): the readout also reads the traces as they were
    ``d`` steps ago, one tap per entry, so that a reservoir whose neurons forget within a few
    steps can be read over a longer past (a tapped delay line on the traces: a forecast of
    Mackey-Glass needs about 40 steps of it). The feature vector is the taps side by side,
    ``[trace(t - delays[0]), trace(t - delays[1]), ...]`` (traces before the start are 0), so
    ``w`` has ``n_in * len(delays)`` columns.
    """

    kind = "trace_readout"
    name: str
    n_in: int
    n_out: int
    trace_bits: int
    a_trace: np.ndarray = _array("int32", 1)  # Q16 trace decay per input neuron
    w: np.ndarray = _array("int8", 2)  # (n_out, n_in)
    w_scale: np.ndarray = _array("float64", 1)  # per output
    bias: np.ndarray = _array("float64", 1)  # per output, in output units
    delays: Optional[np.ndarray] = _array("int32", 1, optional=True)  # steps back of each tap (None: [0])

    @property
    def taps(self) -> Tuple[int, ...]:
        """The delays of the readout's taps, in steps (``(0,)`` without ``delays``)."""
        return (0,) if self.delays is None else tuple(int(d) for d in self.delays)

    def check(self) -> None:
        _require(self.n_out >= 1, "n_out must be >= 1")
        if self.delays is not None:
            d = self.delays
            _require(d.size >= 1 and bool(np.all(d >= 0)) and bool(np.all(d <= MAX_READOUT_DELAY)),
                     "delays must be 1 or more steps in [0, %d]" % MAX_READOUT_DELAY)
            _require(bool(np.all(np.diff(d.astype(np.int64)) > 0)), "delays must be increasing")
        cols = self.n_in * len(self.taps)
        _require(self.w.shape == (self.n_out, cols), "w has shape %s, expected (%d, %d)" % (self.w.shape, self.n_out, cols))
        _require(self.a_trace.shape == (self.n_in,), "a_trace does not have %d entries" % self.n_in)
        _require(bool(np.all((self.a_trace >= 0) & (self.a_trace <= 1 << 16))), "a_trace is outside [0, 65536]")
        _require(self.bias.shape == (self.n_out,) and bool(np.all(np.isfinite(self.bias))), "bias is not %d finite values" % self.n_out)
        _require_scale(self.w_scale, "w_scale", MAX_OUTPUT_SCALE)
        _require(self.w_scale.shape == (self.n_out,), "w_scale does not have %d entries" % self.n_out)
        _require(0 <= self.trace_bits <= 16, "trace_bits must be in [0, 16]")


Encoder = Union[DirectEncoder, RateEncoder, DeltaEncoder]
REGISTRY: Dict[str, Type[Any]] = {
    cls.kind: cls for cls in (SparseMatrix, DirectEncoder, RateEncoder, DeltaEncoder, LifRecurrentLayer, TraceReadout)
}
