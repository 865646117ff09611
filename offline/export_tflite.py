"""A bundle's time step as a TFLite model, written with the TFLite schema's own object API.

Why not a converter (``docs/export.md`` has the measurements): TensorFlow's ``TFLiteConverter``
(1.3 GB of TensorFlow installed) leaves weight tensors under 1,024 elements in float under
dynamic-range quantization and quantizes activations on the fly, and ``litert-torch``
(about 2 GB) only quantizes ``F.linear``. Our step graph is a dozen builtin operators over
tensors we already hold as int8, so it is built directly from the bundle with the generated
schema classes (``schema_py_generated``, shipped with ai-edge-litert) and ``flatbuffers``:
the file holds exactly the bundle's int8 weights, nothing is re-quantized.

What the graph computes (float32 throughout; TFLite kernels have no int64 arithmetic worth
relying on): int8 weights -> ``DEQUANTIZE`` -> float ``FULLY_CONNECTED``/``CONV_2D`` on integer
values (exact below 2**24: 16-bit inputs are split into bytes as in the ONNX graph), then the
fixed-point neuron update with ``rs(x, k)`` as ``floor(x * 2**-k + 0.5)`` in float32. The
membrane and threshold stay wide (float32, threshold 2**14 exactly); products of large states
round in float32, so results match the event runtime within tolerances, not bit for bit.
Convolutions run in NHWC (TFLite's layout); flattening transposes back to channel-major.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..runtime import bundle as fmt
from ..runtime.fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, REQUANT_BITS, THRESHOLD
from ..runtime.stepgraph import CARD_KEY, card_for

FLOAT32_EXACT = 1 << 24
_TYPES = {np.dtype(np.float32): "FLOAT32", np.dtype(np.int32): "INT32", np.dtype(np.int8): "INT8", np.dtype(np.bool_): "BOOL"}
# operator versions: the lowest that covers what we use (older interpreters accept them)
_VERSIONS = {"DEQUANTIZE": 2}


class _Tfl:
    """Tensors, buffers and operators of one subgraph, packed by the schema's object API."""

    def __init__(self, float_weights: bool = False) -> None:
        import ai_edge_litert.schema_py_generated as s  # the interpreter package ships the schema

        self.s = s
        self.float_weights = float_weights
        self.buffers: List[Any] = [s.BufferT()]  # buffer 0: the empty buffer of every non-constant tensor
        self.tensors: List[Any] = []
        self.ops: List[Any] = []
        self.codes: Dict[str, int] = {}
        self.inputs: List[int] = []
        self.outputs: List[int] = []
        self.shapes: Dict[int, List[int]] = {}
        self._consts: Dict[Any, int] = {}

    def tensor(self, shape: Sequence[int], dtype: Any = np.float32, name: str = "", data: Optional[np.ndarray] = None,
               quant: Optional[Any] = None) -> int:
        s = self.s
        t = s.TensorT()
        shape = [int(v) for v in shape]
        t.shape = [1 if v < 0 else v for v in shape]
        if any(v < 0 for v in shape):
            t.shapeSignature = shape
        t.type = getattr(s.TensorType, _TYPES[np.dtype(dtype)])
        t.name = name or "t%d" % len(self.tensors)
        t.buffer = 0
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype).tobytes(), np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        t.quantization = quant
        self.tensors.append(t)
        idx = len(self.tensors) - 1
        self.shapes[idx] = shape
        return idx

    def const(self, value: Any, dtype: Any = np.float32, name: str = "") -> int:
        arr = np.ascontiguousarray(np.asarray(value, dtype))
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(arr.shape, dtype, name or "const%d" % len(self.tensors), data=arr)
        return self._consts[key]

    def weight(self, w_int8: np.ndarray, name: str) -> int:
        """int8 constant (scale 1, zero point 0) -> float32 by DEQUANTIZE; with
        ``float_weights`` a float32 constant of the same values (the float baseline)."""
        if self.float_weights:
            return self.const(np.asarray(w_int8, np.float32), np.float32, name)
        q = self.s.QuantizationParametersT()
        q.scale, q.zeroPoint = [1.0], [0]
        wq = self.tensor(w_int8.shape, np.int8, name, data=np.asarray(w_int8, np.int8), quant=q)
        return self.op("DEQUANTIZE", [wq], list(w_int8.shape))

    def op(self, code: str, inputs: List[int], out_shape: Sequence[int], dtype: Any = np.float32, options: Any = None,
           options_type: str = "", name: str = "") -> int:
        s = self.s
        if code not in self.codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = getattr(s.BuiltinOperator, code)
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
            oc.version = _VERSIONS.get(code, 1)
            self.codes[code] = len(self.codes)
        out = self.tensor(out_shape, dtype, name)
        o = s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs, o.outputs = list(inputs), [out]
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.ops.append(o)
        return out

    # -- arithmetic on float32 tensors (broadcasting like numpy)
    def bin(self, code: str, a: int, b: int, name: str = "") -> int:
        sa, sb = self.shapes[a], self.shapes[b]
        shape = list(np.broadcast_shapes(tuple(max(v, 1) for v in sa), tuple(max(v, 1) for v in sb)))
        if shape and any(len(t) == len(shape) and t[0] < 0 for t in (sa, sb)):
            shape[0] = -1  # the free batch dimension
        opts = {"ADD": self.s.AddOptionsT, "SUB": self.s.SubOptionsT, "MUL": self.s.MulOptionsT}.get(code)
        kind = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "MINIMUM": "MaximumMinimumOptions",
                "MAXIMUM": "MaximumMinimumOptions", "GREATER_EQUAL": "GreaterEqualOptions"}[code]
        options = opts() if opts else ({"MINIMUM": self.s.MaximumMinimumOptionsT, "MAXIMUM": self.s.MaximumMinimumOptionsT,
                                          "GREATER_EQUAL": self.s.GreaterEqualOptionsT}[code]())
        return self.op(code, [a, b], shape, np.bool_ if code == "GREATER_EQUAL" else np.float32, options, kind, name)

    def floor(self, a: int) -> int:
        return self.op("FLOOR", [a], self.shapes[a])

    def rs(self, x: int, scale: Any) -> int:
        """round(x * scale) as floor(x * scale + 0.5): the runtime's rounding shift in float."""
        return self.floor(self.bin("ADD", self.bin("MUL", x, self.const(scale)), self.const(0.5)))

    def sat32(self, x: int) -> int:
        return self.bin("MAXIMUM", self.bin("MINIMUM", x, self.const(float(INT32_MAX))), self.const(float(INT32_MIN)))

    def spike(self, v: int) -> int:
        ge = self.bin("GREATER_EQUAL", v, self.const(float(THRESHOLD)))
        opts = self.s.CastOptionsT()
        opts.inDataType, opts.outDataType = self.s.TensorType.BOOL, self.s.TensorType.FLOAT32
        return self.op("CAST", [ge], self.shapes[v], np.float32, opts, "CastOptions")

    def fc(self, x: int, w: int, n_out: int) -> int:
        opts = self.s.FullyConnectedOptionsT()
        return self.op("FULLY_CONNECTED", [x, w, -1], [-1, n_out], np.float32, opts, "FullyConnectedOptions")

    def accumulate(self, x: int, make: Any, peak: int, fan_in: int) -> int:
        """Exact float32 accumulation of integer inputs (by bytes when they are wide)."""
        if 128 * fan_in * peak < FLOAT32_EXACT:
            return make(x)
        if 128 * fan_in * 255 >= FLOAT32_EXACT:
            raise ValueError("fan-in %d is too large for an exact float32 accumulation of byte-split inputs" % fan_in)
        hi = self.floor(self.bin("MUL", x, self.const(1.0 / 256)))
        lo = self.bin("SUB", x, self.bin("MUL", hi, self.const(256.0)))
        return self.bin("ADD", self.bin("MUL", make(hi), self.const(256.0)), make(lo))

    def io_input(self, name: str, shape: Sequence[int]) -> int:
        idx = self.tensor(shape, np.float32, name)
        self.inputs.append(idx)
        return idx

    def io_output(self, idx: int, name: str) -> None:
        self.tensors[idx].name = name
        self.outputs.append(idx)

    def pack(self, card: Dict[str, Any]) -> bytes:
        import flatbuffers

        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = self.tensors, self.inputs, self.outputs, self.ops, "step"
        m = s.ModelT()
        m.version = 3
        m.description = "spikeedge step graph"
        codes = sorted(self.codes.items(), key=lambda kv: kv[1])
        m.operatorCodes = []
        for code, _ in codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = getattr(s.BuiltinOperator, code)
            oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
            oc.version = _VERSIONS.get(code, 1)
            m.operatorCodes.append(oc)
        m.subgraphs = [sg]
        meta_buf = s.BufferT()
        meta_buf.data = np.frombuffer(json.dumps(card, separators=(",", ":")).encode("utf-8"), np.uint8)
        m.buffers = self.buffers + [meta_buf]
        md = s.MetadataT()
        md.name, md.buffer = CARD_KEY, len(m.buffers) - 1
        m.metadata = [md]
        b = flatbuffers.Builder(1 << 16)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def hrsnn_tflite(bundle: fmt.Bundle, float_weights: bool = False) -> bytes:
    g = _Tfl(float_weights)
    card = card_for(bundle, "tflite", state_dtype="float32")
    card["float_weights"] = float_weights
    n_ch = bundle.layers[0].w_in.n_sources
    events = g.io_input("x", [-1, n_ch])
    peak = (1 << (bundle.encoder.bits - 1)) - 1 if bundle.encoder.kind == "encoder.direct" else 1
    q16, rq = 1.0 / (1 << DECAY_BITS), 1.0 / (1 << REQUANT_BITS)
    outs = []
    for i, layer in enumerate(bundle.layers):
        n = layer.n
        s_prev, syn, mem = g.io_input("s%d" % i, [-1, n]), g.io_input("syn%d" % i, [-1, n]), g.io_input("mem%d" % i, [-1, n])
        w_in, w_rec = g.weight(layer.w_in.to_dense(), "w_in%d" % i), g.weight(layer.w_rec.to_dense(), "w_rec%d" % i)
        acc_in = g.accumulate(events, lambda t, w=w_in: g.fc(t, w, n), peak, layer.w_in.n_sources)
        acc_rec = g.accumulate(s_prev, lambda t, w=w_rec: g.fc(t, w, n), 1, n)
        total = g.bin("ADD", g.rs(syn, layer.a_syn.astype(np.float64) * q16), g.rs(acc_in, layer.m_in.astype(np.float64) * rq))
        total = g.bin("ADD", total, g.rs(acc_rec, layer.m_rec.astype(np.float64) * rq))
        syn_new = g.sat32(g.bin("ADD", total, g.const(layer.bias.astype(np.float64))))
        v = g.sat32(g.bin("ADD", g.rs(mem, layer.a_mem.astype(np.float64) * q16), syn_new))
        s_f = g.spike(v)
        if layer.reset == "zero":
            mem_new = g.bin("MUL", v, g.bin("SUB", g.const(1.0), s_f))
        else:
            mem_new = g.bin("SUB", v, g.bin("MUL", s_f, g.const(float(THRESHOLD))))
        outs += [(s_f, "s%d_out" % i), (syn_new, "syn%d_out" % i), (mem_new, "mem%d_out" % i)]
        events, peak = s_f, 1
    ro = bundle.readout
    trace = g.io_input("trace", [-1, ro.n_in])
    tr = g.sat32(g.bin("ADD", g.rs(trace, ro.a_trace.astype(np.float64) * q16), g.bin("MUL", events, g.const(float(1 << ro.trace_bits)))))
    acc = g.fc(tr, g.weight(ro.w, "w_out"), ro.n_out)
    y = g.bin("ADD", g.bin("MUL", acc, g.const(ro.w_scale / float(1 << ro.trace_bits))), g.const(ro.bias))
    for idx, name in outs + [(tr, "trace_out"), (y, "y")]:
        g.io_output(idx, name)
    return g.pack(card)


def conv_tflite(bundle: fmt.ConvBundle, float_weights: bool = False) -> bytes:
    g = _Tfl(float_weights)
    card = card_for(bundle, "tflite", layout="nhwc", state_dtype="float32")
    card["float_weights"] = float_weights
    c, h, w = bundle.input_shape
    x = g.io_input("x", [-1, h, w, c])
    peak = (1 << (bundle.encoder.bits - 1)) - 1
    q16 = 1.0 / (1 << DECAY_BITS)
    outs = []
    k = 0
    s = g.s
    for layer, shape in zip(bundle.layers, bundle.shapes()[1:]):
        if layer.kind == "maxpool":
            opts = s.Pool2DOptionsT()
            opts.padding, opts.strideW, opts.strideH, opts.filterWidth, opts.filterHeight = s.Padding.VALID, layer.size, layer.size, layer.size, layer.size
            x = g.op("MAX_POOL_2D", [x], [-1, shape[1], shape[2], shape[0]], np.float32, opts, "Pool2DOptions")
            continue
        if layer.kind == "flatten":
            perm = g.const(np.array([0, 3, 1, 2], np.int32), np.int32)
            ib = g.shapes[x]
            x = g.op("TRANSPOSE", [x, perm], [-1, ib[3], ib[1], ib[2]], np.float32, s.TransposeOptionsT(), "TransposeOptions")
            opts = s.ReshapeOptionsT()
            opts.newShape = [-1, shape[0]]
            x = g.op("RESHAPE", [x, g.const(np.array([-1, shape[0]], np.int32), np.int32)], [-1, shape[0]], np.float32, opts, "ReshapeOptions")
            continue
        if layer.kind == "conv_lif":
            wf = g.weight(layer.weight.transpose(0, 2, 3, 1), "w%d" % k)  # OHWI
            zero_bias = g.const(np.zeros(layer.out_channels, np.float32))
            p = layer.padding
            out_shape = [-1, shape[1], shape[2], shape[0]]

            def make(t: int, wf: int = wf, layer: Any = layer, p: int = p, out_shape: List[int] = out_shape, zb: int = zero_bias) -> int:
                if p:
                    ib = g.shapes[t]
                    pads = g.const(np.array([[0, 0], [p, p], [p, p], [0, 0]], np.int32), np.int32)
                    t = g.op("PAD", [t, pads], [-1, ib[1] + 2 * p, ib[2] + 2 * p, ib[3]], np.float32, s.PadOptionsT(), "PadOptions")
                opts = s.Conv2DOptionsT()
                opts.padding, opts.strideW, opts.strideH = s.Padding.VALID, layer.stride, layer.stride
                opts.dilationWFactor = opts.dilationHFactor = 1
                return g.op("CONV_2D", [t, wf, zb], out_shape, np.float32, opts, "Conv2DOptions")
        else:
            wf = g.weight(layer.weight, "w%d" % k)

            def make(t: int, wf: int = wf, n: int = layer.n_out) -> int:
                return g.fc(t, wf, n)

        acc = g.accumulate(x, make, peak, layer.fan_in)
        sshape = [-1, shape[1], shape[2], shape[0]] if len(shape) == 3 else [-1, shape[0]]
        mem = g.io_input("mem%d" % k, sshape)
        leak = g.rs(mem, float(layer.decay) * q16)
        cur = g.rs(acc, np.asarray(layer.m, np.float64) / float(2 ** layer.shift))
        v = g.sat32(g.bin("ADD", g.bin("ADD", leak, cur), g.const(np.asarray(layer.bias, np.float64))))
        s_f = g.spike(v)
        mem_new = g.bin("MUL", v, g.bin("SUB", g.const(1.0), s_f))
        outs += [(mem_new, "mem%d_out" % k), (s_f, "s%d" % k)]
        x, peak = s_f, 1
        k += 1
    ro = bundle.readout
    wf = g.weight(ro.weight, "w_readout")
    acc = g.accumulate(x, lambda t: g.fc(t, wf, ro.n_out), peak, ro.n_in)
    for idx, name in outs + [(acc, "acc")]:
        g.io_output(idx, name)
    return g.pack(card)


def export_tflite(bundle: fmt.AnyBundle, path: Any, float_weights: bool = False) -> Dict[str, Any]:
    """Write ``bundle``'s step graph as TFLite to ``path`` atomically; returns a summary."""
    if any(layer.kind in fmt.STREAM_KINDS for layer in bundle.layers):
        raise ValueError("residual-stream layers (a ResNet) have no step graph yet")
    build = conv_tflite if getattr(bundle, "model", None) == "conv" else hrsnn_tflite
    blob = build(bundle, float_weights)
    fmt.write_atomic(Path(path), blob)
    return {"format": "tflite", "bytes": len(blob), "float_weights": float_weights, "int8_weights": int8_weight_names(blob)}


def int8_weight_names(blob: bytes) -> List[str]:
    """Names of the int8 tensors of rank >= 2 in a TFLite file (read back with the schema)."""
    import ai_edge_litert.schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(blob, 0)
    return sorted(t.name.decode() if isinstance(t.name, bytes) else t.name
                  for t in m.subgraphs[0].tensors if t.type == s.TensorType.INT8 and len(t.shape) >= 2)
