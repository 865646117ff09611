"""The session that runs a recurrent bundle on the compiled core (``runtime.cores`` chooses).

The numpy runtime (``runtime.engine.Session``) is the reference and the fallback; the compiled
core (``runtime/_core.c``, built by ``setup.py`` where a C compiler exists) computes the same
integers with one C call per ``run`` and one per ``step``, because at a few microseconds per
step numpy's cost is its calls, not the work (``docs/results/runtime.md``).

Every session says which core ran in ``session.core``; ``info``, ``profile`` and ``bench``
record it.

All state lives in numpy arrays made here, once per ``start``; the C object holds their
buffers and checks every length and index when it is built, so ``get_state``/``set_state`` are
plain array copies.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .accumulate import INT16_MAX
from .cores import ENCODERS, LOAD_ERROR, _core, _qmax
from .cores import ENV, CoreUnavailable, choose, requested, unsupported  # noqa: F401  (re-exported: the core choice)
from .engine import RunResult, Session
from ..errors import DataError


_empty = np.empty  # `step`'s one allocation, without the module lookup


def _i32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a).astype(np.int32))


class CompiledSession(Session):
    """``runtime.engine.Session`` on the compiled core: the same interface, counters and results.

    Made by ``Session(bundle, ...)`` when ``choose`` says ``compiled``. The numpy side's
    accumulation tables (``self.columns``) are built by ``Session.__init__`` and shared: their
    dense int8 rows are the C core's rows. Per matrix the C core takes the dense rows when more
    than ``switch_k`` sources are active, else the index scatter: ``switch_k`` is measured here
    by the numpy runtime's rule (both paths timed at 1 and at ``chunk`` sources, cost linear in
    between), or forced with ``force_path``.
    """

    core = "compiled"

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        """Resting state for ``batch`` streams, zeroed counters (a delta encoder starts at
        ``first_frame``); the C object is rebuilt only when the batch size changes."""
        if getattr(self, "_tables", None) is None:
            self._tables = [self._matrix_tables(layer, cols) for layer, cols in zip(self.bundle.layers, self.columns)]
            self._forced: Optional[str] = None
        if getattr(self, "batch", None) != batch or getattr(self, "_c", None) is None:
            self._build(batch)
        for layer_state in self._state:
            for arr in layer_state.values():
                arr.fill(0)
        self._trace_arr.fill(0)
        self._counters.fill(0)
        enc = self.bundle.encoder
        if enc.kind == "encoder.rate":  # numpy's default_rng(seed): the PCG64 state the numpy encoder starts from
            st = np.random.default_rng(enc.seed).bit_generator.state["state"]
            self._rng[:] = [st["state"] >> 64, st["state"] & (2**64 - 1), st["inc"] >> 64, st["inc"] & (2**64 - 1)]
        elif enc.kind == "encoder.delta":
            self._ref[...] = 0.0 if first_frame is None else np.asarray(first_frame, np.float64).reshape(self._ref.shape)
        self._c.sync()
        self.spike_history = [[] for _ in self.bundle.layers]
        if self._forced is None and not getattr(self, "_calibrated", False):
            self._calibrate()

    # ------------------------------------------------------------------ the C object and its buffers

    @staticmethod
    def _matrix_tables(layer: Any, columns: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        out = []
        for w, cols in zip((layer.w_in, layer.w_rec), columns):
            out.append({"indptr": _i32(w.indptr), "indices": _i32(w.indices), "values": np.ascontiguousarray(w.values, np.int8),
                        "rows": cols.rows, "chunk": int(min(INT16_MAX, cols.chunk)), "switch_k": w.n_sources + 1})
        return out[0], out[1]

    def _build(self, batch: int) -> None:
        b = self.bundle
        enc = b.encoder
        self.batch = batch
        self._state = [{"syn": np.zeros(batch * layer.n, np.int32), "mem": np.zeros(batch * layer.n, np.int32),
                        "spk": np.zeros(batch * layer.n, np.uint8)} for layer in b.layers]
        ro = b.readout
        self._trace_arr = np.zeros(batch * ro.n_in, np.int32)
        self._counters = np.zeros(2 + 5 * len(b.layers), np.int64)
        self._rng = np.zeros(4, np.uint64)
        self._ref = np.zeros((batch, enc.n_inputs))
        layers = []
        for layer, (w_in, w_rec), st in zip(b.layers, self._tables, self._state):
            layers.append(dict(st, n=layer.n, reset_zero=int(layer.reset == "zero"), w_in=w_in, w_rec=w_rec, a_syn=_i32(layer.a_syn),
                               a_mem=_i32(layer.a_mem), m_in=_i32(layer.m_in), m_rec=_i32(layer.m_rec), bias=_i32(layer.bias)))
        spec = dict(batch=batch, encoder=ENCODERS[enc.kind], n_inputs=enc.n_inputs, layers=layers, counters=self._counters,
                    n_out=ro.n_out, trace_bits=ro.trace_bits, w_out=np.ascontiguousarray(ro.w, np.int8), a_trace=_i32(ro.a_trace),
                    out_scale=np.ascontiguousarray(ro.w_scale / float(1 << ro.trace_bits), np.float64),
                    out_bias=np.ascontiguousarray(ro.bias, np.float64), trace=self._trace_arr)
        if enc.kind == "encoder.direct":
            spec.update(scale=float(enc.scale), qmax=_qmax(enc))
        elif enc.kind == "encoder.rate":
            spec.update(gain=float(enc.gain), rng=self._rng)
        else:
            spec.update(threshold=float(enc.threshold), ref=self._ref)
        self._spec = spec  # kept for the tests of the C side's checks
        self._c = _core.Recurrent(spec)
        self._c_step = self._c.step  # bound once: `step` looks up nothing else
        self._n_x = batch * enc.n_inputs
        self._out_shape = (batch, ro.n_out)
        self.layers = [SimpleNamespace(layer=layer) for layer in b.layers]  # what runtime.bench reads: names, sizes

    # ------------------------------------------------------------------ accumulation paths

    def force_path(self, path: Optional[str]) -> None:
        """``rows`` or ``scatter`` for every matrix (tests, comparisons); None: measure again."""
        self._forced = path
        if path is None:
            self._calibrate()
            return
        for pair in self._tables:
            for t in pair:
                n = t["indptr"].size - 1
                t["switch_k"] = -1 if path == "rows" and t["rows"] is not None else n + 1
        self._set_switches()

    def _calibrate(self) -> None:
        """Per matrix: both paths timed in C at 1 and ``chunk`` sources (best of 5); the rows
        are taken above the crossing of the two lines, as ``EventColumns.calibrate`` does."""
        self._calibrated = True
        self._cost: List[Dict[str, Any]] = []
        for i, pair in enumerate(self._tables):
            for rec, t in enumerate(pair):
                n = t["indptr"].size - 1
                k2 = min(n, t["chunk"])
                if t["rows"] is None or k2 < 2:
                    self._cost.append({})
                    continue
                line = {}
                for rows in (0, 1):
                    t1, t2 = (self._c.bench(i, rec, rows, k, 5) for k in (1, k2))
                    per = max(1e-12, (t2 - t1) / (k2 - 1))
                    line[rows] = (max(0.0, t1 - per), per)
                (a_s, b_s), (a_r, b_r) = line[0], line[1]
                switch = n + 1 if b_s <= b_r else int(min(n + 1, max(-1.0, (a_r - a_s) / (b_s - b_r))))
                t["switch_k"] = switch
                self._cost.append({"scatter_us_per_source": 1e6 * b_s, "rows_us_per_source": 1e6 * b_r,
                                   "switch_activity": None if switch > n else max(0, switch) / n})
        self._set_switches()

    def _set_switches(self) -> None:
        for i, pair in enumerate(self._tables):
            for rec, t in enumerate(pair):
                self._c.set_switch(i, rec, t["switch_k"])

    def accumulation_report(self) -> Dict[str, Any]:
        """Per layer and matrix: the compiled core's path choice and steps per path."""
        out: Dict[str, Any] = {}
        cost = getattr(self, "_cost", [])
        for i, layer in enumerate(self.bundle.layers):
            entry = {}
            for j, name in enumerate(("input", "recurrent")):
                t = self._tables[i][j]
                c = self._counters[2 + 5 * i + 1 + 2 * j : 2 + 5 * i + 3 + 2 * j]
                entry[name] = dict(cost[2 * i + j] if len(cost) > 2 * i + j else {}, core="compiled", sources=t["indptr"].size - 1,
                                   targets=layer.n, switch_k=t["switch_k"], forced=self._forced, steps={"rows": int(c[0]), "scatter": int(c[1])})
            out[layer.name] = entry
        return out

    # ------------------------------------------------------------------ the streaming API

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step for every stream: ``x`` (batch, n_inputs) -> outputs (batch, n_out).

        The C side checks ``x`` itself (type, contiguity, length) and raises ``BufferError``
        when it is not a float64 buffer of the right size: only then is it converted here, so
        the usual call costs one C call and the output array."""
        out = _empty(self._out_shape)
        if self.clock is None:
            try:
                self._c_step(x, out)
            except BufferError:
                self._c_step(self._as_input(x), out)
        else:
            self._timed(self.clock, self._c_step, self._as_input(x), out)
        if self.record_spikes:
            for hist, st, layer in zip(self.spike_history, self._state, self.bundle.layers):
                hist.append(st["spk"].reshape(self.batch, layer.n).astype(bool))
        return out

    def _as_input(self, x: Any) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float64)
        if x.size != self._n_x:
            raise DataError("the input has %d values per step and stream; the model takes %d" % (
                x.size // max(1, self.batch), self.bundle.encoder.n_inputs))
        return x

    PHASES = ("encode", "accumulate", "neuron", "readout")

    def _timed(self, clock: Any, call: Any, *args: Any) -> None:
        """``call`` with the C core timing its phases (``spikeedge profile``: the same phases as
        the numpy core's ``PhaseClock``, measured inside C per stream and step)."""
        phases = np.zeros(4)
        self._c.set_phases(phases)
        try:
            call(*args)
        finally:
            self._c.set_phases(None)
        for name, sec in zip(self.PHASES, phases):
            clock.seconds[name] = clock.seconds.get(name, 0.0) + float(sec)

    def run(self, xs: np.ndarray) -> RunResult:
        """A whole sequence ``xs`` (batch, steps, n_inputs) from rest, in one C call."""
        xs = np.ascontiguousarray(xs, np.float64)
        if xs.ndim == 2:
            xs = xs[:, :, None]
        if xs.shape[2] != self.bundle.encoder.n_inputs:
            raise DataError("the input has %d values per step and stream; the model takes %d" % (xs.shape[2], self.bundle.encoder.n_inputs))
        self.start(xs.shape[0], xs[:, 0, :])
        steps = xs.shape[1]
        outputs = np.empty((self.batch, steps, self.bundle.n_outputs))
        record = tuple(np.zeros((steps, self.batch, layer.n), np.uint8) for layer in self.bundle.layers) if self.record_spikes else None
        if self.clock is None:
            self._c.run(xs, outputs, record)
        else:
            self._timed(self.clock, self._c.run, xs, outputs, record)
        if record is not None:
            for hist, r in zip(self.spike_history, record):
                hist.extend(r.view(bool))
        return self.result(outputs)

    steps = property(lambda self: int(self._counters[0]))  # the C core's counters, as the numpy session's attributes
    synops = property(lambda self: int(self._counters[1]))

    @property
    def spike_counts(self) -> Dict[str, int]:
        return {layer.name: int(self._counters[2 + 5 * i]) for i, layer in enumerate(self.bundle.layers)}

    @property
    def trace(self) -> np.ndarray:
        return self._trace_arr.reshape(self.batch, -1).copy()

    def readout_values(self) -> np.ndarray:
        ro = self.bundle.readout
        acc = self.trace.astype(np.int64) @ ro.w.astype(np.int64).T
        return acc.astype(np.float64) * (ro.w_scale / float(1 << ro.trace_bits)) + ro.bias

    def get_state(self) -> Dict[str, np.ndarray]:
        out: Dict[str, np.ndarray] = {}
        for i, (st, layer) in enumerate(zip(self._state, self.bundle.layers)):
            for key, name in (("spk", "s%d"), ("syn", "syn%d"), ("mem", "mem%d")):
                out[name % i] = st[key].reshape(self.batch, layer.n).astype(np.int64)
        out["trace"] = self._trace_arr.reshape(self.batch, -1).astype(np.int64)
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        for i, st in enumerate(self._state):
            for key, name in (("spk", "s%d"), ("syn", "syn%d"), ("mem", "mem%d")):
                v = np.asarray(state[name % i]).reshape(-1)
                st[key][...] = (v != 0) if key == "spk" else v.astype(np.int32)
        self._trace_arr[...] = np.asarray(state["trace"]).reshape(-1).astype(np.int32)
        self._c.sync()


__all__ = ["CompiledSession", "CoreUnavailable", "choose", "requested", "unsupported", "LOAD_ERROR", "ENV"]
