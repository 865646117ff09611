"""The loop around a step graph: ``GraphSession`` runs an exported ONNX / TFLite step graph behind
the ``Session`` interface, keeping the encoder, state and counts in numpy; apart from
``stepgraph.py`` (the card and the operation counts the exporters share) to keep both short.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import bundle as fmt
from ..errors import DataError
from .encoders import Encoder
from .stepgraph import conv_synops, dense_synops, reach_masks


class GraphSession:
    """A step graph behind the ``Session`` interface (``start``/``step``/``run``/``result``),
    with the same outputs, spike counts and synaptic operations as the event runtime.

    ``graph`` is a backend adapter: ``graph.run(feeds) -> outputs`` (dicts of arrays by name)
    and ``graph.prepare(batch)``; ``card`` is the file's card.
    """

    def __init__(self, graph: Any, card: Dict[str, Any], batch: int = 1, record_spikes: bool = False) -> None:
        self.graph, self.card = graph, card
        self.record_spikes = record_spikes
        self.encoder_spec = fmt.encoder_from_json(card["encoder"])
        self.model = card["model"]
        self.output = card["output"]
        self.n_outputs = int(card["n_outputs"])
        self.state_spec = [(s["name"], tuple(s["shape"]), np.dtype(s["dtype"])) for s in card["state"]]
        if self.model == "hrsnn":
            self.layer_names = [l["name"] for l in card["layers"]]
            self.nnz = [(np.array(l["nnz_in"], np.int64), np.array(l["nnz_rec"], np.int64)) for l in card["layers"]]
        else:
            self._prepare_conv()
        self.start(batch)

    # -- conv geometry for the synaptic-operation counts
    def _prepare_conv(self) -> None:
        card = self.card
        self.input_shape = tuple(card["input_shape"])
        self.nhwc = card.get("layout") == "nhwc"
        self.plan: List[Tuple[str, Any]] = []
        self.layer_names = []
        for row in card["layers"]:
            if row["kind"] == "conv_lif":
                c, h, w = row["shape_in"]
                _, oh, ow = row["shape_out"]
                masks = reach_masks((h, w), tuple(row["kernel"]), row["stride"], row["padding"], (oh, ow))
                self.plan.append(("conv", (np.array(row["nnz"], np.float64), masks, row["spikes"], row["name"])))
            elif row["kind"] == "linear_lif":
                self.plan.append(("linear", (np.array(row["nnz"], np.int64), row["spikes"], row["name"])))
            elif row["kind"] == "maxpool":
                self.plan.append(("pool", row["size"]))
            else:
                self.plan.append(("flatten", None))
            if row["kind"] in ("conv_lif", "linear_lif"):
                self.layer_names.append(row["name"])
        ro = card["readout"]
        self.readout_name = ro["name"]
        self.readout_nnz = np.array(ro["nnz"], np.int64)
        self.acc_scale = np.array(ro["acc_scale"], np.float64)
        self.ro_bias = np.array(ro["bias"], np.float64)

    @property
    def steps_per_inference(self) -> Optional[int]:
        return int(self.card["time_steps"]) if self.model == "conv" else None

    @property
    def neurons(self) -> Dict[str, int]:
        if self.model == "hrsnn":
            return {l["name"]: int(l["n"]) for l in self.card["layers"]}
        return {r["name"]: int(np.prod(r["shape_out"])) for r in self.card["layers"] if r["kind"] in fmt.SPIKING_KINDS}

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.batch = batch
        self.graph.prepare(batch)
        self.encoder = Encoder(self.encoder_spec, batch)
        self.encoder.reset(first_frame)
        self.state = {name: np.zeros((batch,) + shape, dtype) for name, shape, dtype in self.state_spec}
        self.spike_counts = {name: 0 for name in self.layer_names}
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self.layer_names]
        self.synops = 0
        self.layer_synops: Dict[str, int] = {}  # conv graphs: per layer (measure.bench_record.mac_ops splits MACs/ACs by it)
        self.steps = 0
        self.total = np.zeros((batch, self.n_outputs), np.int64)

    clock: Any = None  # a ``measure.profile.PhaseClock`` while profiling: time per phase

    def step(self, x: np.ndarray) -> np.ndarray:
        if self.model == "conv":
            return self._conv_step(x)
        clock = self.clock
        if clock is not None:
            clock.start()
        x = np.asarray(x, np.float64)
        if x.size != self.batch * self.encoder_spec.n_inputs:
            raise DataError("the input has %d values per step and stream; the model takes %d" % (x.size // max(1, self.batch), self.encoder_spec.n_inputs))
        events = self.encoder(x.reshape(self.batch, -1))
        if clock is not None:
            clock.lap("encode")
        self.synops += dense_synops(events, self.nnz[0][0])  # later layers' inputs: after the step
        for i, (_, nnz_rec) in enumerate(self.nnz):
            self.synops += dense_synops(self.state["s%d" % i], nnz_rec)  # last step's spikes
        feeds = {"x": events.astype(np.float32)}
        feeds.update(self.state)
        out = self.graph.run(feeds)
        if clock is not None:
            clock.lap("graph")
        for name in self.state:
            self.state[name] = np.asarray(out[name + "_out"]).astype(self.state[name].dtype, copy=False)
        for i, name in enumerate(self.layer_names):
            s = self.state["s%d" % i]
            if i + 1 < len(self.layer_names):
                self.synops += dense_synops(s, self.nnz[i + 1][0])
            self.spike_counts[name] += int(np.count_nonzero(s))
            if self.record_spikes:
                self.spike_history[i].append(s != 0)
        self.steps += 1
        if clock is not None:
            clock.lap("bookkeeping")
        return np.asarray(out["y"], np.float64)

    def encode_image(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64).reshape((self.batch,) + self.input_shape)
        q = self.encoder(x.reshape(self.batch, -1)).reshape(x.shape)
        return q

    def _conv_step(self, x: np.ndarray, encoded: Optional[np.ndarray] = None) -> np.ndarray:
        clock = self.clock
        if clock is not None:
            clock.start()
        q = self.encode_image(x) if encoded is None else encoded
        feeds = {"x": (q.transpose(0, 2, 3, 1) if self.nhwc else q).astype(np.float32)}
        feeds.update(self.state)
        if clock is not None:
            clock.lap("encode")
        out = self.graph.run(feeds)
        if clock is not None:
            clock.lap("graph")
        for name in self.state:
            self.state[name] = np.asarray(out[name + "_out"]).astype(self.state[name].dtype, copy=False)
        h: np.ndarray = q
        k = 0
        for kind, info in self.plan:
            if kind == "pool":
                b, c, hh, ww = h.shape
                oh, ow = hh // info, ww // info
                h = h[:, :, : oh * info, : ow * info].reshape(b, c, oh, info, ow, info).max(axis=(3, 5))
                continue
            if kind == "flatten":
                h = h.reshape(h.shape[0], -1)
                continue
            if kind == "conv":
                nnz, masks, sname, lname = info
                ops = conv_synops(h, nnz, masks)
            else:
                nnz, sname, lname = info
                ops = dense_synops(h, nnz)
            self.synops += ops
            self.layer_synops[lname] = self.layer_synops.get(lname, 0) + ops
            s = np.asarray(out[sname])
            if self.nhwc and s.ndim == 4:
                s = s.transpose(0, 3, 1, 2)
            s = (s != 0).astype(np.uint8)
            self.spike_counts[lname] += int(np.count_nonzero(s))
            if self.record_spikes:
                self.spike_history[k].append(s.astype(bool))
            k += 1
            h = s
        ops = dense_synops(h.reshape(h.shape[0], -1), self.readout_nnz)
        self.synops += ops
        self.layer_synops[self.readout_name] = self.layer_synops.get(self.readout_name, 0) + ops
        self.total += np.rint(np.asarray(out["acc"], np.float64)).astype(np.int64)
        self.steps += 1
        values = self.readout_values()
        if clock is not None:
            clock.lap("bookkeeping")
        return values

    def get_state(self) -> Dict[str, np.ndarray]:
        """The state in the event runtime's form and units (``Session.get_state``,
        ``ConvSession.get_state``): NCHW membranes, int64 (a float32 graph's are rounded)."""
        out: Dict[str, np.ndarray] = {}
        for name, value in self.state.items():
            v = value.transpose(0, 3, 1, 2) if (self.model == "conv" and self.nhwc and value.ndim == 4) else value
            out[name] = np.rint(v).astype(np.int64)
        if self.model == "conv":
            out["total"] = self.total.copy()
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        for name, shape, dtype in self.state_spec:
            v = np.asarray(state[name])
            if self.model == "conv" and self.nhwc and v.ndim == 4:
                v = v.transpose(0, 2, 3, 1)
            self.state[name] = np.ascontiguousarray(v).astype(dtype)
        if self.model == "conv":
            self.total = np.asarray(state["total"]).astype(np.int64).copy()

    def readout_values(self) -> np.ndarray:
        return self.total.astype(np.float64) * self.acc_scale / max(1, self.steps) + self.ro_bias

    def run(self, xs: np.ndarray, steps: Optional[int] = None) -> Any:
        """As ``Session.run`` (recurrent: xs (batch, steps, inputs)) or ``ConvSession.run``
        (conv: images (batch, C, H, W), ``time_steps`` steps)."""
        from .engine import RunResult

        xs = np.asarray(xs, np.float64)
        if self.model == "conv":
            if xs.shape == self.input_shape:
                xs = xs[None]
            if xs.ndim == 2:
                xs = xs.reshape((xs.shape[0],) + self.input_shape)
            self.start(xs.shape[0])
            q = self.encode_image(xs)
            n = int(self.card["time_steps"]) if steps is None else steps
            outputs = np.empty((self.batch, n, self.n_outputs))
            for t in range(n):
                outputs[:, t] = self._conv_step(xs, encoded=q)
        else:
            if xs.ndim == 2:
                xs = xs[:, :, None]
            self.start(xs.shape[0], xs[:, 0, :])
            outputs = np.empty((self.batch, xs.shape[1], self.n_outputs))
            for t in range(xs.shape[1]):
                outputs[:, t] = self.step(xs[:, t])
        return RunResult(outputs=outputs, spike_counts=dict(self.spike_counts), synops=self.synops, steps=self.steps,
                         batch=self.batch, neurons=self.neurons)
