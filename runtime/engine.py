"""Event-driven inference of a bundle, in numpy.

Per time step only the weights of the inputs and neurons that emitted an event are read
(``EventColumns``: the active sources' rows of a dense int8 copy, summed in int32, for one
stream; one exact BLAS product for several; the sparse gather of ``runtime.bundle.SparseMatrix``
columns for matrices too large to copy); the neuron update is the vectorised step of
``runtime.neuron``. Several independent streams run side by side as a batch. The session counts
spikes per layer and the effective synaptic operations (NeuroBench Eff_ACs for spike inputs,
Eff_MACs for real-valued ones): one operation per (non-zero event, non-zero weight) pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .bundle import Bundle, LifRecurrentLayer, SparseMatrix
from .encoders import Encoder
from .errors import DataError
from .neuron import LifIntParams, LifState, lif_state_zeros, lif_step_int, trace_step_int


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


DENSE_ROWS_MAX_BYTES = 16 << 20  # above this a matrix stays sparse (the gather above)
FLOAT32_EXACT = 1 << 24


class EventColumns:
    """One weight matrix ready for event accumulation, chosen by measurement
    (``benchmarks/runtime_speed.py``, ``docs/results/runtime.md``): its columns as dense int8
    rows, one per source. One stream: the rows of the active sources are gathered and summed in
    int32 (2-2.5x faster than the sparse gather with ``np.add.at`` at 1-20% activity on a
    2,048-neuron layer). Several streams: one BLAS product of the events with the rows, in
    float32 where every partial sum is an integer below 2**24, else float64; exact either way.
    Matrices above ``DENSE_ROWS_MAX_BYTES`` dense keep the sparse gather."""

    def __init__(self, w: SparseMatrix, peak: int) -> None:
        self.w = w
        self.nnz = np.diff(w.indptr).astype(np.int64)  # non-zero weights per source
        self.dense = w.n_sources * w.n_targets <= DENSE_ROWS_MAX_BYTES
        self.rows = np.ascontiguousarray(w.to_dense().T) if self.dense else None  # (sources, targets) int8
        self.float_dtype = np.float32 if 128 * w.n_sources * peak < FLOAT32_EXACT else np.float64
        self._rows_f: Optional[np.ndarray] = None

    def accumulate(self, events: np.ndarray, out: np.ndarray) -> int:
        """``out = events @ W.T`` (int32, overwritten); returns the synaptic operations."""
        if not self.dense:
            out[...] = 0
            return accumulate_events(self.w, events, out)
        if events.shape[0] == 1:
            active = np.flatnonzero(events[0])
            if active.size == 0:
                out[...] = 0
                return 0
            values = events[0, active]
            rows = self.rows[active]
            if np.all(values == 1):
                np.sum(rows, axis=0, dtype=np.int32, out=out[0])
            else:
                out[0] = (values.astype(np.int64)[:, None] * rows).sum(axis=0)
            return int(self.nnz[active].sum())
        if self._rows_f is None:
            self._rows_f = self.rows.astype(self.float_dtype)
        out[...] = events.astype(self.float_dtype) @ self._rows_f
        return int(np.count_nonzero(events, axis=0) @ self.nnz)


@dataclass
class RunResult:
    """What one run returns: outputs per step, spikes per layer, synaptic operations."""

    outputs: np.ndarray  # (batch, steps, n_out) float64
    spike_counts: Dict[str, int]  # total spikes per layer over the run and the batch
    synops: int  # effective synaptic operations over the run and the batch
    steps: int
    batch: int
    neurons: Dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """Per-step, per-stream figures (JSON-able)."""
        n = max(1, self.steps * self.batch)
        return {
            "steps": self.steps,
            "batch": self.batch,
            "spikes_per_step": {k: v / n for k, v in self.spike_counts.items()},
            "spike_rate": {k: self.spike_counts[k] / (n * self.neurons[k]) for k in self.spike_counts},
            "synops_per_step": self.synops / n,
        }


class _LayerState:
    def __init__(self, layer: LifRecurrentLayer, batch: int) -> None:
        self.layer = layer
        self.params = LifIntParams(layer.a_syn, layer.a_mem, layer.m_in, layer.m_rec, layer.bias, layer.reset == "zero")
        self.acc_in = np.zeros((batch, layer.n), np.int32)
        self.acc_rec = np.zeros((batch, layer.n), np.int32)
        self.state: LifState = lif_state_zeros(batch, layer.n)
        self.spikes = np.zeros((batch, layer.n), np.int32)


class Session:
    """A loaded bundle ready to run independent streams as a batch, with preallocated state.

    ``start(batch)`` sets up the resting state; ``step(x)`` advances one time step (for
    closed-loop use, e.g. autoregressive prediction); ``run(xs)`` runs a whole sequence.
    Counters accumulate from ``start``. With ``record_spikes`` every step's spikes are kept
    (for tests and profiling).
    """

    def __new__(cls, bundle: Any, *args: Any, **kwargs: Any) -> Any:
        """A convolutional bundle opens a ``runtime.conv.ConvSession`` (the same interface)."""
        if cls is Session and getattr(bundle, "model", None) == "conv":
            from .conv import ConvSession

            return ConvSession(bundle, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, bundle: Bundle, batch: int = 1, record_spikes: bool = False) -> None:
        self.bundle = bundle
        self.record_spikes = record_spikes
        peak = (1 << (bundle.encoder.bits - 1)) - 1 if bundle.encoder.kind == "encoder.direct" else 1
        self.columns = []
        for layer in bundle.layers:
            self.columns.append((EventColumns(layer.w_in, peak), EventColumns(layer.w_rec, 1)))
            peak = 1
        ro = bundle.readout
        self._w_out = ro.w.astype(np.int64).T  # (n_in, n_out)
        self._out_scale = ro.w_scale / float(1 << ro.trace_bits)
        self.start(batch)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        """Resting state for ``batch`` streams and zeroed counters (a delta encoder starts at
        ``first_frame``)."""
        self.batch = batch
        self.encoder = Encoder(self.bundle.encoder, batch)
        self.encoder.reset(first_frame)
        self.layers = [_LayerState(layer, batch) for layer in self.bundle.layers]
        self.trace = np.zeros((batch, self.bundle.readout.n_in), np.int32)
        self.spike_counts = {ls.layer.name: 0 for ls in self.layers}
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self.layers]
        self.synops = 0
        self.steps = 0

    clock: Any = None  # a ``runtime.profile.PhaseClock`` while profiling: time per phase

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step for every stream: ``x`` (batch, n_inputs) -> outputs (batch, n_out)."""
        clock = self.clock
        if clock is not None:
            clock.start()
        x = np.asarray(x, np.float64).reshape(self.batch, -1)
        if x.shape[1] != self.bundle.encoder.n_inputs:
            raise DataError("the input has %d values per step and stream; the model takes %d" % (x.shape[1], self.bundle.encoder.n_inputs))
        events = self.encoder(x)
        if clock is not None:
            clock.lap("encode")
        for i, ls in enumerate(self.layers):
            cols_in, cols_rec = self.columns[i]
            self.synops += cols_in.accumulate(events, ls.acc_in)
            self.synops += cols_rec.accumulate(ls.spikes, ls.acc_rec)
            if clock is not None:
                clock.lap("accumulate")
            spikes, ls.state = lif_step_int(ls.acc_in, ls.acc_rec, ls.state, ls.params)
            ls.spikes = spikes.astype(np.int32)
            self.spike_counts[ls.layer.name] += int(ls.spikes.sum())
            if self.record_spikes:
                self.spike_history[i].append(spikes)
            events = ls.spikes
            if clock is not None:
                clock.lap("neuron")
        ro = self.bundle.readout
        self.trace = trace_step_int(self.trace, events, ro.a_trace, ro.trace_bits)
        self.steps += 1
        out = self.readout_values()
        if clock is not None:
            clock.lap("readout")
        return out

    def get_state(self) -> Dict[str, np.ndarray]:
        """The neuron state in integer units, by the step graphs' names (``runtime/stepgraph``):
        ``s<i>``, ``syn<i>``, ``mem<i>`` per layer and ``trace``; copies, int64."""
        out: Dict[str, np.ndarray] = {}
        for i, ls in enumerate(self.layers):
            out["s%d" % i] = ls.spikes.astype(np.int64)
            out["syn%d" % i] = ls.state.syn.astype(np.int64)
            out["mem%d" % i] = ls.state.mem.astype(np.int64)
        out["trace"] = self.trace.astype(np.int64)
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        """Load a state of ``get_state``'s form (open-loop comparisons start every step from
        the reference's state)."""
        for i, ls in enumerate(self.layers):
            ls.spikes = np.asarray(state["s%d" % i]).astype(np.int32)
            ls.state = LifState(np.asarray(state["syn%d" % i]).astype(np.int32), np.asarray(state["mem%d" % i]).astype(np.int32))
        self.trace = np.asarray(state["trace"]).astype(np.int32)

    def readout_values(self) -> np.ndarray:
        """The readout of the current traces: (batch, n_out) float64."""
        acc = self.trace.astype(np.int64) @ self._w_out
        return acc.astype(np.float64) * self._out_scale + self.bundle.readout.bias

    def run(self, xs: np.ndarray) -> RunResult:
        """Run a sequence ``xs`` (batch, steps, n_inputs) from the resting state; a delta
        encoder takes the first frame as its reference level."""
        xs = np.asarray(xs, np.float64)
        if xs.ndim == 2:
            xs = xs[:, :, None]
        self.start(xs.shape[0], xs[:, 0, :])
        outputs = np.empty((self.batch, xs.shape[1], self.bundle.n_outputs))
        for t in range(xs.shape[1]):
            outputs[:, t] = self.step(xs[:, t])
        return self.result(outputs)

    def result(self, outputs: np.ndarray) -> RunResult:
        return RunResult(
            outputs=outputs,
            spike_counts=dict(self.spike_counts),
            synops=self.synops,
            steps=self.steps,
            batch=self.batch,
            neurons={ls.layer.name: ls.layer.n for ls in self.layers},
        )


__all__: List[str] = ["Session", "RunResult", "EventColumns", "accumulate_events"]
