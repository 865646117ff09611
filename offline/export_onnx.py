"""A bundle's time step as an ONNX graph (opset 17) that onnxruntime runs bit-exactly.

Built from the bundle, the single source of truth of the int8 model, with ``onnx.helper``: no
tracing of torch code, so the graph holds exactly the bundle's integers. What the graph does
(``runtime/stepgraph.py`` has the signature and the card; ``docs/export.md`` the reasons):

* Weights are int8 initializers: a product of spikes is ``MatMulInteger`` (spikes cast to
  uint8, int32 out, exact); convolutions and real-valued inputs read the int8 weights through
  ``DequantizeLinear`` (scale 1) and accumulate as float32 on integer values, exact while every
  partial sum stays below 2**24 (16-bit direct-current inputs are split into a high and a low
  byte, each accumulated exactly, and recombined in int64). The file holds int8: a quantized
  layer has no float weight tensor.
* The neuron update runs in int64 with the runtime's fixed-point rules: ``rs(x, k)``, the
  rounding arithmetic shift, is ``floor((x + 2**(k-1)) / 2**k)`` written with ``Div`` (which
  truncates) and a correction for negative remainders; saturation to int32 with Min/Max. The
  membrane and the threshold stay wide (int64, threshold 2**14 exactly), so the threshold never
  moves: the outputs equal the event runtime's bit for bit (``tests/test_conformance.py``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..runtime import bundle as fmt
from ..runtime.fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, REQUANT_BITS, THRESHOLD
from ..runtime.stepgraph import CARD_KEY, card_for

OPSET = 17
FLOAT32_EXACT = 1 << 24


class _Graph:
    """A small builder over ``onnx.helper``: named constants and single-output nodes."""

    def __init__(self, float_weights: bool = False) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.nh = onnx, helper, numpy_helper
        self.nodes: List[Any] = []
        self.inits: List[Any] = []
        self.inputs: List[Any] = []
        self.outputs: List[Any] = []
        self.float_weights = float_weights
        self._n = 0
        self._consts: Dict[Tuple[str, bytes, Tuple[int, ...]], str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return "%s_%d" % (hint, self._n)

    def const(self, value: Any, dtype: Any, hint: str = "c") -> str:
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        if key not in self._consts:
            name = self.name(hint)
            self.inits.append(self.nh.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def op(self, op_type: str, inputs: List[str], hint: Optional[str] = None, out: Optional[str] = None, **attrs: Any) -> str:
        name = out or self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [name], **attrs))
        return name

    def io(self, name: str, elem: int, shape: List[Any], output: bool = False) -> str:
        vi = self.helper.make_tensor_value_info(name, elem, shape)
        (self.outputs if output else self.inputs).append(vi)
        return name

    def model(self, name: str, card: Dict[str, Any]) -> Any:
        import json

        g = self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.inits)
        m = self.helper.make_model(g, opset_imports=[self.helper.make_opsetid("", OPSET)], producer_name="spikeedge")
        m.ir_version = 8  # readable by onnxruntime releases of the last years
        self.helper.set_model_props(m, {CARD_KEY: json.dumps(card, separators=(",", ":"))})
        self.onnx.checker.check_model(m)
        return m

    # -- integer helpers (int64 tensors)
    def rs(self, x: str, bits: int) -> str:
        """Rounding arithmetic right shift: floor((x + 2**(bits-1)) / 2**bits)."""
        num = self.op("Add", [x, self.const(1 << (bits - 1), np.int64)])
        d = self.const(1 << bits, np.int64)
        q = self.op("Div", [num, d])  # truncates toward zero
        r = self.op("Sub", [num, self.op("Mul", [q, d])])
        neg = self.op("Cast", [self.op("Less", [r, self.const(0, np.int64)])], to=self.onnx.TensorProto.INT64)
        return self.op("Sub", [q, neg])

    def sat32(self, x: str) -> str:
        return self.op("Max", [self.op("Min", [x, self.const(INT32_MAX, np.int64)]), self.const(INT32_MIN, np.int64)])

    def to_i64(self, x: str) -> str:
        return self.op("Cast", [x], to=self.onnx.TensorProto.INT64)

    def weight(self, w_int8: np.ndarray, hint: str) -> str:
        """int8 initializer -> float32 by DequantizeLinear (scale 1, zero point 0); with
        ``float_weights`` a float32 initializer of the same values (the float baseline)."""
        if self.float_weights:
            return self.const(np.asarray(w_int8, np.float32), np.float32, hint)
        q = self.const(np.asarray(w_int8, np.int8), np.int8, hint)
        return self.op("DequantizeLinear", [q, self.const(1.0, np.float32), self.const(0, np.int8)], hint=hint + "_f")

    def spike_matmul(self, x: str, w_int8: np.ndarray, hint: str) -> str:
        """int64 accumulation ``x @ w`` of 0/1 spikes ``x`` (float32) and int8 ``w`` as a true
        integer product: ``MatMulInteger`` (uint8 x int8 -> int32), exact; with
        ``float_weights``, the float product of the same values (the float baseline)."""
        if self.float_weights:
            return self.to_i64(self.op("MatMul", [x, self.weight(w_int8, hint)]))
        from onnx import TensorProto as TP

        xu8 = self.op("Cast", [x], to=TP.UINT8)
        w = self.const(np.asarray(w_int8, np.int8), np.int8, hint)
        return self.to_i64(self.op("MatMulInteger", [xu8, w]))

    def accumulate(self, x: str, make: Any, peak: int, fan_in: int) -> str:
        """int64 accumulation ``make(x_float32)`` of integer inputs up to ``peak`` in size,
        exact: directly when 128 * fan_in * peak < 2**24, else by bytes."""
        if 128 * fan_in * peak < FLOAT32_EXACT:
            return self.to_i64(make(x))
        if 128 * fan_in * 255 >= FLOAT32_EXACT:
            raise ValueError("fan-in %d is too large for an exact float32 accumulation of byte-split inputs" % fan_in)
        hi = self.op("Floor", [self.op("Div", [x, self.const(256.0, np.float32)])])
        lo = self.op("Sub", [x, self.op("Mul", [hi, self.const(256.0, np.float32)])])
        acc_hi = self.op("Mul", [self.to_i64(make(hi)), self.const(256, np.int64)])
        return self.op("Add", [acc_hi, self.to_i64(make(lo))])


def _spike(g: _Graph, v: str) -> Tuple[str, str]:
    """(spikes as int64 0/1, spikes as float32) of membrane ``v`` against the threshold."""
    fire = g.op("GreaterOrEqual", [v, g.const(THRESHOLD, np.int64)])
    return g.to_i64(fire), g.op("Cast", [fire], to=g.onnx.TensorProto.FLOAT)


def hrsnn_graph(bundle: fmt.Bundle, float_weights: bool = False) -> Any:
    """The recurrent model's step: ``x``, ``s<i>``, ``syn<i>``, ``mem<i>``, ``trace`` in;
    ``y`` and every state ``_out``."""
    from onnx import TensorProto as TP

    g = _Graph(float_weights)
    card = card_for(bundle, "onnx")
    card["float_weights"] = float_weights
    n_ch = bundle.layers[0].w_in.n_sources
    events = g.io("x", TP.FLOAT, ["batch", n_ch])
    peak = (1 << (bundle.encoder.bits - 1)) - 1 if bundle.encoder.kind == "encoder.direct" else 1
    for i, layer in enumerate(bundle.layers):
        s_prev = g.io("s%d" % i, TP.FLOAT, ["batch", layer.n])
        syn = g.io("syn%d" % i, TP.INT64, ["batch", layer.n])
        mem = g.io("mem%d" % i, TP.INT64, ["batch", layer.n])
        w_in_q = layer.w_in.to_dense().T  # (sources, n)
        if peak == 1:  # spikes (rate/delta encoders, or a previous layer): integer product
            acc_in = g.spike_matmul(events, w_in_q, "w_in%d" % i)
        else:  # real-valued direct current: exact float accumulation (by bytes when wide)
            w_in = g.weight(w_in_q, "w_in%d" % i)
            acc_in = g.accumulate(events, lambda t, w=w_in: g.op("MatMul", [t, w]), peak, layer.w_in.n_sources)
        acc_rec = g.spike_matmul(s_prev, layer.w_rec.to_dense().T, "w_rec%d" % i)
        terms = [
            g.rs(g.op("Mul", [syn, g.const(layer.a_syn, np.int64)]), DECAY_BITS),
            g.rs(g.op("Mul", [acc_in, g.const(layer.m_in, np.int64)]), REQUANT_BITS),
            g.rs(g.op("Mul", [acc_rec, g.const(layer.m_rec, np.int64)]), REQUANT_BITS),
            g.const(layer.bias, np.int64),
        ]
        total = terms[0]
        for t in terms[1:]:
            total = g.op("Add", [total, t])
        syn_new = g.sat32(total)
        v = g.sat32(g.op("Add", [g.rs(g.op("Mul", [mem, g.const(layer.a_mem, np.int64)]), DECAY_BITS), syn_new]))
        s_i, s_f = _spike(g, v)
        if layer.reset == "zero":
            mem_new = g.op("Mul", [v, g.op("Sub", [g.const(1, np.int64), s_i])])
        else:
            mem_new = g.op("Sub", [v, g.op("Mul", [s_i, g.const(THRESHOLD, np.int64)])])
        g.op("Identity", [s_f], out="s%d_out" % i)
        g.op("Identity", [syn_new], out="syn%d_out" % i)
        g.op("Identity", [mem_new], out="mem%d_out" % i)
        g.io("s%d_out" % i, TP.FLOAT, ["batch", layer.n], output=True)
        g.io("syn%d_out" % i, TP.INT64, ["batch", layer.n], output=True)
        g.io("mem%d_out" % i, TP.INT64, ["batch", layer.n], output=True)
        events, peak = s_f, 1
        last_i = s_i
    ro = bundle.readout
    trace = g.io("trace", TP.INT64, ["batch", ro.n_in])
    tr = g.op("Add", [g.rs(g.op("Mul", [trace, g.const(ro.a_trace, np.int64)]), DECAY_BITS),
                      g.op("Mul", [last_i, g.const(1 << ro.trace_bits, np.int64)])])
    tr = g.sat32(tr)
    g.op("Identity", [tr], out="trace_out")
    g.io("trace_out", TP.INT64, ["batch", ro.n_in], output=True)
    w_out = g.op("Cast", [g.weight(ro.w.T, "w_out")], to=TP.DOUBLE)
    acc = g.op("MatMul", [g.op("Cast", [tr], to=TP.DOUBLE), w_out])  # exact below 2**53
    scale = g.const(ro.w_scale / float(1 << ro.trace_bits), np.float64)
    g.op("Add", [g.op("Mul", [acc, scale]), g.const(ro.bias, np.float64)], out="y")
    g.io("y", TP.DOUBLE, ["batch", ro.n_out], output=True)
    return g.model("spikeedge_hrsnn_step", card)


def conv_graph(bundle: fmt.ConvBundle, float_weights: bool = False) -> Any:
    """The convolutional model's step: ``x`` (encoded image) and ``mem<i>`` in; ``acc``,
    ``s<i>`` and ``mem<i>_out`` out (NCHW)."""
    if any(layer.kind in fmt.STREAM_KINDS for layer in bundle.layers):
        raise ValueError("residual-stream layers (a ResNet) have no step graph yet")
    from onnx import TensorProto as TP

    g = _Graph(float_weights)
    card = card_for(bundle, "onnx")
    card["float_weights"] = float_weights
    c, h, w = bundle.input_shape
    x = g.io("x", TP.FLOAT, ["batch", c, h, w])
    peak = (1 << (bundle.encoder.bits - 1)) - 1
    k = 0
    for layer, shape in zip(bundle.layers, bundle.shapes()[1:]):
        if layer.kind == "maxpool":
            x = g.op("MaxPool", [x], kernel_shape=[layer.size, layer.size], strides=[layer.size, layer.size])
            continue
        if layer.kind == "flatten":
            x = g.op("Flatten", [x], axis=1)
            continue
        if layer.kind == "conv_lif":
            wf = g.weight(layer.weight, "w%d" % k)
            p = layer.padding

            def make(t: str, wf: str = wf, layer: Any = layer, p: int = p) -> str:
                return g.op("Conv", [t, wf], strides=[layer.stride, layer.stride], pads=[p, p, p, p])

            cshape: List[int] = [1, layer.out_channels, 1, 1]
        else:
            cshape = [1, layer.n_out]
        if layer.kind != "conv_lif" and peak == 1:
            acc = g.spike_matmul(x, layer.weight.T, "w%d" % k)
        elif layer.kind != "conv_lif":
            wf = g.weight(layer.weight.T, "w%d" % k)
            acc = g.accumulate(x, lambda t, wf=wf: g.op("MatMul", [t, wf]), peak, layer.fan_in)
        else:
            acc = g.accumulate(x, make, peak, layer.fan_in)
        mem = g.io("mem%d" % k, TP.INT64, ["batch"] + list(shape))
        m = g.const(np.asarray(layer.m, np.int64).reshape(cshape), np.int64)
        bias = g.const(np.asarray(layer.bias, np.int64).reshape(cshape), np.int64)
        leak = g.rs(g.op("Mul", [mem, g.const(layer.decay, np.int64)]), DECAY_BITS)
        v = g.sat32(g.op("Add", [g.op("Add", [leak, g.rs(g.op("Mul", [acc, m]), layer.shift)]), bias]))
        s_i, s_f = _spike(g, v)
        g.op("Mul", [v, g.op("Sub", [g.const(1, np.int64), s_i])], out="mem%d_out" % k)
        g.io("mem%d_out" % k, TP.INT64, ["batch"] + list(shape), output=True)
        g.op("Identity", [s_f], out="s%d" % k)
        g.io("s%d" % k, TP.FLOAT, ["batch"] + list(shape), output=True)
        x, peak = s_f, 1
        k += 1
    ro = bundle.readout
    if peak == 1:
        acc = g.spike_matmul(x, ro.weight.T, "w_readout")
    else:
        wf = g.weight(ro.weight.T, "w_readout")
        acc = g.accumulate(x, lambda t: g.op("MatMul", [t, wf]), peak, ro.n_in)
    g.op("Identity", [acc], out="acc")
    g.io("acc", TP.INT64, ["batch", ro.n_out], output=True)
    return g.model("spikeedge_conv_step", card)


def export_onnx(bundle: fmt.AnyBundle, path: Any, float_weights: bool = False) -> Dict[str, Any]:
    """Write ``bundle``'s step graph to ``path`` atomically; returns a summary."""
    from pathlib import Path

    build = conv_graph if getattr(bundle, "model", None) == "conv" else hrsnn_graph
    model = build(bundle, float_weights)
    blob = model.SerializeToString()
    fmt.write_atomic(Path(path), blob)
    return {"format": "onnx", "opset": OPSET, "bytes": len(blob), "float_weights": float_weights, "int8_weights": int8_weight_names(model)}


def int8_weight_names(model: Any) -> List[str]:
    from onnx import TensorProto as TP

    return sorted(t.name for t in model.graph.initializer if t.data_type == TP.INT8 and len(t.dims) >= 2)
