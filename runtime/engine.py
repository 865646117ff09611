"""Event-driven inference of a bundle, in numpy.

Per time step only the weights of the inputs and neurons that emitted an event are read
(``EventColumns``: the active sources' rows of a dense int8 copy, summed in int16 chunks; the
sparse gather of ``runtime.bundle.SparseMatrix`` columns for matrices too large to copy); the
neuron update is ``runtime.kernels``' allocation-free form of ``runtime.neuron``'s step. Several independent streams run side by side as a batch. The session counts
spikes per layer and the effective synaptic operations (NeuroBench Eff_ACs for spike inputs,
Eff_MACs for real-valued ones): one operation per (non-zero event, non-zero weight) pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .accumulate import EventColumns, accumulate_events
from .bundle import Bundle, LifRecurrentLayer
from .encoders import Encoder
from ..errors import DataError
from .fixedpoint import INT32_MAX
from .kernels import LifKernel, TraceKernel, fits_float64
from .neuron import LifIntParams, LifState, lif_state_zeros, lif_step_int


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
    """One layer's buffers for ``batch`` streams: accumulations and the neuron kernel (float64,
    integer values; ``runtime.kernels``), or the int32 state of ``lif_step_int`` when a product
    could leave float64's exact range."""

    def __init__(self, layer: LifRecurrentLayer, columns: Any, batch: int, trace: Any = None) -> None:
        self.layer = layer
        self.params = LifIntParams(layer.a_syn, layer.a_mem, layer.m_in, layer.m_rec, layer.bias, layer.reset == "zero")
        cols_in, cols_rec = columns
        exact = fits_float64(cols_in.max_abs_acc, layer.m_in) and fits_float64(cols_rec.max_abs_acc, layer.m_rec)
        self.kernel: Optional[LifKernel] = LifKernel(self.params, batch, cols_in.max_abs_acc, cols_rec.max_abs_acc, trace) if exact else None
        if self.kernel is not None:
            self.acc_in, self.acc_rec = self.kernel.acc_in, self.kernel.acc_rec
        else:
            self.acc_in, self.acc_rec = np.zeros((batch, layer.n), np.int32), np.zeros((batch, layer.n), np.int32)
        self.state: LifState = lif_state_zeros(batch, layer.n)
        self.spikes = self.kernel.spikes if self.kernel is not None else np.zeros((batch, layer.n), bool)

    def step(self, ops_in: int, ops_rec: int) -> np.ndarray:
        """The neuron update after accumulation; returns the layer's spikes (batch, n) bool."""
        if self.kernel is not None:
            return self.kernel.step(bool(ops_in or ops_rec))
        spikes, self.state = lif_step_int(self.acc_in, self.acc_rec, self.state, self.params)
        self.spikes = spikes
        return spikes

    def get(self) -> Any:
        return (self.kernel.get() if self.kernel is not None else self.state), self.spikes

    def set(self, state: LifState, spikes: np.ndarray) -> None:
        if self.kernel is not None:
            self.kernel.set(state, spikes)
        else:
            self.state = LifState(np.asarray(state.syn).astype(np.int32), np.asarray(state.mem).astype(np.int32))
            self.spikes = np.asarray(spikes) != 0


class _FusedTrace:
    """The readout trace kept by the last layer's kernel (``LifKernel(trace=...)``), behind the
    interface of ``TraceKernel``: the kernel's step already advanced it."""

    def __init__(self, kernel: LifKernel) -> None:
        self.kernel = kernel
        self.trace = kernel.trace

    def step(self, spikes: np.ndarray) -> np.ndarray:
        return self.trace

    def set(self, trace: np.ndarray) -> None:
        self.kernel.set_trace(trace)


class Session:
    """A loaded bundle ready to run independent streams as a batch, with preallocated state.

    The streaming API: ``start(batch)`` sets up the resting state; ``step(x)`` advances one time
    step (real-time input, closed-loop use such as autoregressive prediction); ``run(xs)`` runs a
    whole sequence. Counters accumulate from ``start``. With ``record_spikes`` every step's spikes
    are kept (for tests and profiling). A step allocates only the indices of the active sources:
    state, accumulations and outputs live in buffers made by ``start``.
    """

    core = "numpy"  # which core runs the session: "numpy" here, "compiled" (runtime.compiled)

    def __init__(self, bundle: Bundle, batch: int = 1, record_spikes: bool = False, core: Optional[str] = None) -> None:
        self.bundle = bundle
        self.record_spikes = record_spikes
        peak = (1 << (bundle.encoder.bits - 1)) - 1 if bundle.encoder.kind == "encoder.direct" else 1
        self.columns = []
        for layer in bundle.layers:
            pair = (EventColumns(layer.w_in, peak), EventColumns(layer.w_rec, 1))
            for cols in pair:
                if self.core == "numpy":  # the compiled core measures its own switch points
                    cols.calibrate()  # the hybrid's switch point, measured here (a few ms at most)
            self.columns.append(pair)
            peak = 1
        ro = bundle.readout
        self._taps = ro.taps
        # Readout sums of int32 traces times int8 weights: exact in float64 below 2**53 (BLAS).
        self._float_readout = ro.w.shape[1] * float(INT32_MAX) * 128 < 2.0**53
        self._w_out = ro.w.astype(np.float64 if self._float_readout else np.int64).T  # (n_in * taps, n_out)
        self._out_scale = ro.w_scale / float(1 << ro.trace_bits)
        self.start(batch)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        """Resting state for ``batch`` streams and zeroed counters (a delta encoder starts at
        ``first_frame``)."""
        self.batch = batch
        self.encoder = Encoder(self.bundle.encoder, batch)
        self.encoder.reset(first_frame)
        ro = self.bundle.readout
        last = len(self.bundle.layers) - 1
        self.layers = [_LayerState(layer, cols, batch, (ro.a_trace, ro.trace_bits) if i == last else None)
                       for i, (layer, cols) in enumerate(zip(self.bundle.layers, self.columns))]
        kernel = self.layers[-1].kernel
        self._trace = _FusedTrace(kernel) if kernel is not None else TraceKernel(ro.a_trace, ro.trace_bits, batch)
        self._acc_out = np.zeros((batch, ro.n_out), np.float64 if self._float_readout else np.int64)
        # A delayed readout's past traces: a ring of max(delay) + 1 steps (row ``_pos`` is now).
        self._history = np.zeros((max(self._taps) + 1, batch, ro.n_in), np.int32) if self._taps != (0,) else None
        self._pos = 0
        self._x_shape = (batch, self.bundle.encoder.n_inputs)
        self._n_x = batch * self.bundle.encoder.n_inputs
        self.spike_counts = {ls.layer.name: 0 for ls in self.layers}
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self.layers]
        for pair in self.columns:
            for cols in pair:
                cols.steps = {"event": 0, "dense": 0}
        self.synops = 0
        self.steps = 0

    clock: Any = None  # a ``measure.profile.PhaseClock`` while profiling: time per phase

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step for every stream: ``x`` (batch, n_inputs) -> outputs (batch, n_out)."""
        clock = self.clock
        if clock is not None:
            clock.start()
        x = np.asarray(x)
        if x.size != self._n_x:
            raise DataError("the input has %d values per step and stream; the model takes %d" % (
                x.size // max(1, self.batch), self.bundle.encoder.n_inputs))
        events = self.encoder.encode_into(x.reshape(self._x_shape))
        if clock is not None:
            clock.lap("encode")
        synops = 0
        for i, ls in enumerate(self.layers):
            cols_in, cols_rec = self.columns[i]
            ops_in = cols_in.accumulate(events, ls.acc_in)
            ops_rec = cols_rec.accumulate(ls.spikes, ls.acc_rec)
            synops += ops_in + ops_rec
            if clock is not None:
                clock.lap("accumulate")
            events = ls.step(ops_in, ops_rec)
            self.spike_counts[ls.layer.name] += int(np.count_nonzero(events))
            if self.record_spikes:
                self.spike_history[i].append(events.copy())
            if clock is not None:
                clock.lap("neuron")
        self.synops += synops
        self._trace.step(events)
        if self._history is not None:
            self._pos = (self._pos + 1) % len(self._history)
            self._history[self._pos] = self._trace.trace
        self.steps += 1
        out = self.readout_values()
        if clock is not None:
            clock.lap("readout")
        return out

    @property
    def trace(self) -> np.ndarray:
        """The readout traces (batch, n_in), int32."""
        return self._trace.trace.astype(np.int32)

    def accumulation_report(self) -> Dict[str, Any]:
        """Per layer and matrix: the hybrid's measured costs, switch point (fraction of the
        sources active above which the dense product is used; None: never) and steps per path."""
        return {ls.layer.name: {"input": ci.report(), "recurrent": cr.report()} for ls, (ci, cr) in zip(self.layers, self.columns)}

    def get_state(self) -> Dict[str, np.ndarray]:
        """The neuron state in integer units, by the step graphs' names (``runtime/stepgraph``):
        ``s<i>``, ``syn<i>``, ``mem<i>`` per layer and ``trace``; copies, int64."""
        out: Dict[str, np.ndarray] = {}
        for i, ls in enumerate(self.layers):
            state, spikes = ls.get()
            out["s%d" % i] = spikes.astype(np.int64)
            out["syn%d" % i] = state.syn.astype(np.int64)
            out["mem%d" % i] = state.mem.astype(np.int64)
        out["trace"] = self._trace.trace.astype(np.int64)
        if self._history is not None:  # past traces by lag: [0] is now, [k] k steps ago
            lags = (self._pos - np.arange(len(self._history))) % len(self._history)
            out["trace_history"] = self._history[lags].astype(np.int64)
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        """Load a state of ``get_state``'s form (open-loop comparisons start every step from
        the reference's state)."""
        for i, ls in enumerate(self.layers):
            ls.set(LifState(np.asarray(state["syn%d" % i]), np.asarray(state["mem%d" % i])), np.asarray(state["s%d" % i]))
        self._trace.set(np.asarray(state["trace"]))
        if self._history is not None:
            self._pos = 0
            hist = np.asarray(state["trace_history"])
            self._history[0] = hist[0]
            self._history[1:] = hist[1:][::-1]  # lag k sits k rows before ``_pos`` (mod the ring)

    def features(self) -> np.ndarray:
        """What the readout reads: the current traces, or with delays the taps side by side,
        (batch, n_in * taps) int32."""
        if self._history is None:
            return self._trace.trace
        ring = len(self._history)
        return np.concatenate([self._history[(self._pos - d) % ring] for d in self._taps], axis=1)

    def readout_values(self) -> np.ndarray:
        """The readout of the current traces: (batch, n_out) float64."""
        tr = self.features()
        if self._float_readout:
            np.dot(tr, self._w_out, out=self._acc_out)
        else:
            np.dot(tr.astype(np.int64), self._w_out, out=self._acc_out)
        return self._acc_out * self._out_scale + self.bundle.readout.bias

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
