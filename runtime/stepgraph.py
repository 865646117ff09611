"""One time step of a bundle as a graph for another interpreter (onnxruntime, TFLite): the
contract between the exporters (``offline/export_onnx.py``, ``offline/export_tflite.py``) and
the runtime backends (``runtime/backends.py``).

A step graph is a pure function ``(inputs of step t, state) -> (outputs, new state)``; the time
loop, the encoder (rate and delta encoders are stateful and random) and the bookkeeping
(spike counts, synaptic operations, timing) stay here, in numpy, written once for every
backend. Every exported file carries a *card*: a small JSON object (ONNX: the metadata entry
``spikeedge``; TFLite: the model metadata entry ``spikeedge``) with what the loop needs and
the graph does not say: the encoder, the names and shapes of the state tensors, the layers
whose spikes are outputs, and per-source counts of non-zero weights for the synaptic
operations (the same definition as the event runtime: one operation per (non-zero input,
non-zero weight) pair).

Graph signature, by name (``B`` is the batch, free in every graph):

* recurrent (``model == "hrsnn"``): inputs ``x`` (B, channels) the encoded events as float32,
  and each state tensor ``<name>``; outputs ``y`` (B, n_out) the readout, ``<name>_out`` for
  each state tensor. The spikes of layer ``i`` are the state tensor ``s<i>`` (what the next
  step's recurrent accumulation reads).
* convolutional (``model == "conv"``): inputs ``x`` (B, C, H, W) the encoded image as float32
  and the membranes ``mem<i>``; outputs ``acc`` (B, n_out) the readout's accumulation of this
  step, ``mem<i>_out`` and the spikes ``s<i>`` of every spiking layer (layout in the card:
  ``nchw`` or ``nhwc``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import bundle as fmt
from .encoders import Encoder
from ..errors import DataError

CARD_KEY = "spikeedge"
CARD_VERSION = 1


# ----------------------------------------------------------------------------- synaptic operations


def column_nnz(w: fmt.SparseMatrix) -> List[int]:
    """Non-zero weights per source (column) of a sparse matrix."""
    return np.diff(w.indptr).astype(np.int64).tolist()


def reach_masks(in_hw: Tuple[int, int], kernel: Tuple[int, int], stride: int, padding: int, out_hw: Tuple[int, int]) -> np.ndarray:
    """(kh*kw, H, W) bool: input position (y, x) reaches an output through kernel offset k."""
    kh, kw = kernel
    h, w = in_hw
    oh, ow = out_hw
    ys, xs = np.arange(h), np.arange(w)
    out = np.zeros((kh * kw, h, w), bool)
    for k in range(kh * kw):
        ky, kx = divmod(k, kw)
        ny, nx = ys + padding - ky, xs + padding - kx
        vy = (ny >= 0) & (ny % stride == 0) & (ny // stride < oh)
        vx = (nx >= 0) & (nx % stride == 0) & (nx // stride < ow)
        out[k] = vy[:, None] & vx[None, :]
    return out


def conv_synops(x: np.ndarray, nnz: np.ndarray, masks: np.ndarray) -> int:
    """Operations of a conv layer on inputs ``x`` (B, C, H, W): each non-zero input at channel
    c reaching an output through offset k costs ``nnz[c, k]`` (the non-zero weights it meets)."""
    reached = np.einsum("bchw,khw->ck", (x != 0).astype(np.float64), masks.astype(np.float64))
    return int(round(float((reached * nnz).sum())))


def dense_synops(x: np.ndarray, nnz: np.ndarray) -> int:
    """Operations of a linear map on inputs ``x`` (B, n): non-zero inputs times their fan-out."""
    return int(np.count_nonzero(x, axis=0) @ nnz)


# ----------------------------------------------------------------------------- the card


def card_for(bundle: fmt.AnyBundle, backend: str, layout: str = "nchw", state_dtype: str = "int64") -> Dict[str, Any]:
    """The card of ``bundle``'s step graph for ``backend`` ("onnx" or "tflite")."""
    card: Dict[str, Any] = {
        "card_version": CARD_VERSION,
        "backend": backend,
        "bundle_sha256": bundle.sha256,
        "encoder": fmt.encoder_to_json(bundle.encoder),
        "output": bundle.output,
        "n_outputs": bundle.n_outputs,
        "provenance": bundle.provenance,
    }
    if getattr(bundle, "model", None) == "conv":
        return dict(card, **_conv_card(bundle, layout, state_dtype))
    layers = []
    state = []
    for i, layer in enumerate(bundle.layers):
        layers.append({"name": layer.name, "n": layer.n, "nnz_in": column_nnz(layer.w_in), "nnz_rec": column_nnz(layer.w_rec)})
        state += [{"name": "s%d" % i, "shape": [layer.n], "dtype": "float32"},
                  {"name": "syn%d" % i, "shape": [layer.n], "dtype": state_dtype},
                  {"name": "mem%d" % i, "shape": [layer.n], "dtype": state_dtype}]
    state.append({"name": "trace", "shape": [bundle.readout.n_in], "dtype": state_dtype})
    return dict(card, model="hrsnn", n_inputs=bundle.encoder.n_inputs, layers=layers, state=state)


def _conv_card(bundle: fmt.ConvBundle, layout: str, state_dtype: str) -> Dict[str, Any]:
    shapes = bundle.shapes()
    layers, state = [], []
    k = 0
    for layer, shape_in, shape_out in zip(bundle.layers, shapes[:-1], shapes[1:]):
        row: Dict[str, Any] = {"name": layer.name, "kind": layer.kind, "shape_in": list(shape_in), "shape_out": list(shape_out)}
        if layer.kind in ("conv_lif", "conv_stream"):
            o, c, kh, kw = layer.weight.shape
            row.update(kernel=[kh, kw], stride=layer.stride, padding=layer.padding,
                       nnz=np.count_nonzero(layer.weight.transpose(1, 2, 3, 0).reshape(c, kh * kw, o), axis=2).tolist())
        elif layer.kind == "linear_lif":
            row.update(nnz=np.count_nonzero(layer.weight, axis=0).tolist())
        elif layer.kind == "maxpool":
            row.update(size=layer.size)
        if layer.kind in fmt.SPIKING_KINDS:
            row["spikes"] = "s%d" % k
            shape = list(shape_out)
            if layout == "nhwc" and len(shape) == 3:
                shape = [shape[1], shape[2], shape[0]]
            state.append({"name": "mem%d" % k, "shape": shape, "dtype": state_dtype})
            row["spike_shape"] = shape
            k += 1
        layers.append(row)
    ro = bundle.readout
    return {"model": "conv", "input_shape": list(bundle.input_shape), "time_steps": bundle.time_steps, "layout": layout,
            "layers": layers, "state": state,
            "readout": {"name": ro.name, "nnz": np.count_nonzero(ro.weight, axis=0).tolist(),
                        "acc_scale": ro.acc_scale.tolist(), "bias": ro.bias.tolist()}}


def check_card(card: Any, source: str) -> Dict[str, Any]:
    """A card read from a file, checked enough that the loop cannot misread it."""
    if not isinstance(card, dict) or card.get("card_version") != CARD_VERSION:
        found = card.get("card_version") if isinstance(card, dict) else None
        raise ValueError("%s: step-graph card version %r, this runtime reads %d" % (source, found, CARD_VERSION))
    for key in ("model", "encoder", "state", "layers", "n_outputs", "output"):
        if key not in card:
            raise ValueError("%s: the step-graph card has no %r" % (source, key))
    if card["model"] not in ("hrsnn", "conv"):
        raise ValueError("%s: unknown model %r in the step-graph card" % (source, card["model"]))
    return card


# ----------------------------------------------------------------------------- the loop


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
        self.steps = 0
        self.total = np.zeros((batch, self.n_outputs), np.int64)

    clock: Any = None  # a ``runtime.profile.PhaseClock`` while profiling: time per phase

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
                self.synops += conv_synops(h, nnz, masks)
            else:
                nnz, sname, lname = info
                self.synops += dense_synops(h, nnz)
            s = np.asarray(out[sname])
            if self.nhwc and s.ndim == 4:
                s = s.transpose(0, 3, 1, 2)
            s = (s != 0).astype(np.uint8)
            self.spike_counts[lname] += int(np.count_nonzero(s))
            if self.record_spikes:
                self.spike_history[k].append(s.astype(bool))
            k += 1
            h = s
        self.synops += dense_synops(h.reshape(h.shape[0], -1), self.readout_nnz)
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

