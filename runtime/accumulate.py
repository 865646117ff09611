"""Synaptic accumulation: ``out = events @ W.T`` for one weight matrix, work proportional to
the events, or a dense BLAS product where that is measured to be cheaper.

``EventColumns`` holds a matrix in the forms its paths need and picks a path per step from the
number of active sources; the paths give identical integers (tests), so the choice changes only
the time. The switch point is measured on the machine that runs the model (``calibrate``) and
reported by ``spikeedge profile``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import numpy as np

from .bundle import SparseMatrix


def accumulate_events(w: SparseMatrix, events: np.ndarray, out: np.ndarray) -> int:
    """``out += events @ W.T`` event by event: only columns of non-zero events are read.

    ``events`` (batch, n_sources) int32 (0/1 spikes or signed values), ``out`` (batch,
    n_targets) int32, zeroed by the caller. Returns the synaptic operations performed.
    """
    b_idx, src = np.nonzero(events)
    if src.size == 0:
        return 0
    starts = w.indptr[src].astype(np.int64)
    counts = w.indptr[src + 1].astype(np.int64) - starts
    total = int(counts.sum())
    if total == 0:
        return 0
    # Positions of every gathered weight: the concatenation of the active columns.
    first = np.cumsum(counts) - counts
    pos = np.repeat(starts - first, counts) + np.arange(total)
    targets = w.indices[pos].astype(np.int64) + np.repeat(b_idx * w.n_targets, counts)
    vals = w.values[pos].astype(np.int32)
    ev = events[b_idx, src]
    if not np.all(ev == 1):
        vals *= np.repeat(ev, counts).astype(np.int32)
    np.add.at(out.reshape(-1), targets, vals)
    return total


def source_rows(w: SparseMatrix) -> np.ndarray:
    """The matrix as dense int8 rows, one per source: ``(n_sources, n_targets)``."""
    rows = np.zeros((w.n_sources, w.n_targets), np.int8)
    rows[np.repeat(np.arange(w.n_sources), np.diff(w.indptr)), w.indices.astype(np.int64)] = w.values
    return rows


DENSE_ROWS_MAX_BYTES = 16 << 20  # above this a matrix stays sparse (the gather above)
HYBRID_MAX_BYTES = 4 << 20  # a float32 copy for the dense path is kept up to this size
INT16_MAX = (1 << 15) - 1
FLOAT32_EXACT = float(1 << 24)


class EventColumns:
    """One weight matrix ready for accumulation, its paths chosen by measurement
    (``benchmarks/runtime_speed.py``, ``docs/results/runtime.md``).

    *Event path* (spikes, 0/1): the matrix as dense int8 rows, one per source; the rows of the
    active sources are copied into a preallocated buffer (``np.take`` with ``mode="clip"``,
    which does not buffer: 2.4x faster than the default) and summed in int16, in chunks small
    enough that no int16 sum can overflow (``32767 // max|w|`` rows). That is 2.4x faster than
    summing int8 into int32 and 15-20x faster than ``np.add.at`` on the sparse columns; its cost
    is ``a + b * k`` for ``k`` active sources. Several streams are summed stream by stream.

    *Dense path* (the hybrid), for matrices whose float32 copy fits ``HYBRID_MAX_BYTES``: one
    BLAS product of the spikes with that copy, exact because every partial sum is an integer
    below 2**24. Its cost does not depend on activity; ``calibrate`` times both paths here and
    sets ``switch_k``, the number of active sources above which a stream takes the dense path
    (with several streams: when the summed event cost exceeds the dense product's). Small layers
    at high activity gain; large ones never switch (a 2,748 x 2,048 matrix: 320 us dense vs
    22 us event at 5%, 41 us at 20%).

    Signed values (a direct-current input): the rows weighted by the values in int64. Matrices
    above ``DENSE_ROWS_MAX_BYTES`` dense keep the sparse gather. Results go into the caller's
    buffer: float64 for the neuron kernels (``runtime.kernels``), exact on integer values.
    """

    def __init__(self, w: SparseMatrix, peak: int, hybrid: bool = True) -> None:
        self.w = w
        self.nnz = np.diff(w.indptr).astype(np.int64)  # non-zero weights per source
        self.dense = w.n_sources * w.n_targets <= DENSE_ROWS_MAX_BYTES
        self.rows = source_rows(w) if self.dense else None  # (sources, targets) int8
        wmax = int(np.abs(w.values.astype(np.int16)).max()) if w.values.size else 1
        self.chunk = max(1, INT16_MAX // max(1, wmax))  # rows per int16 partial sum
        per_target = np.bincount(w.indices.astype(np.int64), weights=np.abs(w.values.astype(np.float64)), minlength=w.n_targets)
        self.max_abs_acc = float(peak) * float(per_target.max()) if w.values.size else 0.0  # bound on |acc|
        if self.dense:
            self._buf = np.empty((min(self.chunk, w.n_sources), w.n_targets), np.int8)
            self._sum16 = np.empty(w.n_targets, np.int16)
        self._int32: Optional[np.ndarray] = None
        fits = 4 * w.n_sources * w.n_targets <= HYBRID_MAX_BYTES and float(w.n_sources) * 128 < FLOAT32_EXACT
        self.rows_f32 = self.rows.astype(np.float32) if hybrid and self.dense and fits else None
        self.switch_k = w.n_sources + 1  # event path for every k until calibrated; -1 forces the dense path
        self.cost: Dict[str, Any] = {}
        self.steps = {"event": 0, "dense": 0}
        self._dense_ms: Dict[int, float] = {}

    # ------------------------------------------------------------------ accumulation

    def accumulate(self, events: np.ndarray, out: np.ndarray) -> int:
        """``out = events @ W.T`` (overwritten; any numeric dtype); returns the synaptic
        operations, 0 exactly when no event arrived."""
        if not self.dense:
            if self._int32 is None or self._int32.shape != out.shape:
                self._int32 = np.zeros(out.shape, np.int32)
            acc = self._int32
            acc[...] = 0
            ops = accumulate_events(self.w, np.asarray(events, np.int32), acc)
            np.copyto(out, acc, casting="unsafe")
            return ops
        if events.dtype == np.bool_:
            if events.shape[0] == 1:  # one stream of spikes: the hot path
                active = events[0].nonzero()[0]  # (np.flatnonzero is 2x slower on a 1-D row)
                k = active.size
                if k == 0:
                    out.fill(0)
                    return 0
                if k > self.switch_k:
                    self._dense(events, out)
                else:
                    self._sum_rows(active, out[0])
                    self.steps["event"] += 1
                return int(self.nnz.take(active).sum())
            if self.rows_f32 is not None and self._dense_cheaper(events):
                self._dense(events, out)
                return int(np.count_nonzero(events, axis=0) @ self.nnz)
        ops = 0
        for b in range(events.shape[0]):
            ev = events[b]
            active = np.flatnonzero(ev)
            k = active.size
            if k == 0:
                out[b] = 0
                continue
            ops += int(self.nnz.take(active).sum())
            if ev.dtype == np.bool_ or bool(np.all(ev.take(active) == 1)):
                self._sum_rows(active, out[b])
            else:
                out[b] = (ev.take(active).astype(np.int64)[:, None] * self.rows.take(active, axis=0)).sum(axis=0)
        self.steps["event"] += 1
        return ops

    def _sum_rows(self, active: np.ndarray, out: np.ndarray) -> None:
        """``out = sum of rows[active]``, int16 partial sums of at most ``chunk`` rows."""
        buf, s16, c = self._buf, self._sum16, self.chunk
        for start in range(0, active.size, c):
            idx = active if active.size <= c else active[start : start + c]
            part = buf[: idx.size]
            np.take(self.rows, idx, axis=0, out=part, mode="clip")  # indices are valid; "raise" would buffer
            np.add.reduce(part, axis=0, dtype=np.int16, out=s16)
            if start == 0:
                np.copyto(out, s16, casting="unsafe")
            else:
                np.add(out, s16, out=out, casting="unsafe")

    def _dense(self, events: np.ndarray, out: np.ndarray) -> None:
        """The dense path: one BLAS product of the spikes with the float32 copy (exact)."""
        out[...] = np.dot(events.astype(np.float32), self.rows_f32)
        self.steps["dense"] += 1

    def _dense_cheaper(self, events: np.ndarray) -> bool:
        """Several streams: the dense product when the streams' summed event cost exceeds it."""
        if self.switch_k < 0:
            return True
        if not self.cost:
            return False
        b = events.shape[0]
        if b not in self._dense_ms:
            self._dense_ms[b] = _median_ms(lambda: np.dot(events.astype(np.float32), self.rows_f32))
        k = int(np.count_nonzero(events))
        event_ms = b * self.cost["event_fixed_ms"] + k * self.cost["event_ms_per_source"]
        return event_ms > self._dense_ms[b]

    # ------------------------------------------------------------------ the switch point

    def calibrate(self) -> Dict[str, Any]:
        """Time both paths on this machine and set ``switch_k`` (one stream); returns the costs.

        The event path is timed at 1 and at ``min(sources, chunk)`` active sources (its cost is
        linear in between; the runtime benchmark measures R^2 > 0.95), the dense product once;
        medians of a few repetitions, about a millisecond in all for a 1,000 x 1,000 matrix."""
        n = self.w.n_sources
        k2 = min(n, self.chunk)
        if self.rows_f32 is None or k2 < 2:
            self.cost = {}
            return self.report()
        out = np.empty(self.w.n_targets)
        t1 = _median_ms(lambda: self._sum_rows(np.arange(1), out))
        t2 = _median_ms(lambda: self._sum_rows(np.arange(k2), out))
        per = max(1e-9, (t2 - t1) / (k2 - 1))
        fixed = max(0.0, t1 - per)
        spikes = np.zeros((1, n), np.float32)
        dense = _median_ms(lambda: np.dot(spikes, self.rows_f32))
        self._dense_ms = {1: dense}
        self.switch_k = int(min(n + 1, max(0.0, (dense - fixed) / per)))
        self.cost = {"event_fixed_ms": fixed, "event_ms_per_source": per, "dense_ms": dense}
        return self.report()

    def report(self) -> Dict[str, Any]:
        """What ``spikeedge profile`` shows: the switch point as a fraction of the sources."""
        n = self.w.n_sources
        out: Dict[str, Any] = {"sources": n, "targets": self.w.n_targets, "hybrid": self.rows_f32 is not None,
                               "steps": dict(self.steps)}
        if self.cost:
            out.update(self.cost)
            out["switch_activity"] = None if self.switch_k > n else self.switch_k / n
        return out


def _median_ms(fn: Any, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


__all__ = ["EventColumns", "accumulate_events", "source_rows", "DENSE_ROWS_MAX_BYTES", "HYBRID_MAX_BYTES"]
