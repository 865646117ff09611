"""The spikeedge bundle (``.seb``): the single source of truth for the deployable model format.

A bundle is one file::

    magic        8 bytes   b"\\x89SEB\\r\\n\\x1a\\n"
    length       4 bytes   little-endian uint32: size of the manifest in bytes
    manifest     JSON      schema version, model records, array table, provenance
    arrays       raw       little-endian numpy arrays, each at a 16-byte aligned offset
    sha256       32 bytes  digest of everything before it

Model records are frozen dataclasses registered by ``kind``; scalar fields live in the manifest,
array fields in the array table (``dtype``, ``shape``, ``offset``, ``nbytes``). Loading checks, in
order: magic, checksum, manifest length, schema version, array table, every record's fields and types,
then each record's own consistency rules. Any failure is a one-line ``BundleError`` naming the
file; nothing half-valid is ever returned. No pickle anywhere. ``docs/bundle.md`` documents the
format; a change to it means a new ``SCHEMA_VERSION`` and a migration in ``MIGRATIONS``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

import numpy as np

from ..errors import BundleError

MAGIC = b"\x89SEB\r\n\x1a\n"
SCHEMA_VERSION = 1
FORMAT_NAME = "spikeedge-bundle"
ALIGN = 16
DIGEST_BYTES = 32
MAX_MANIFEST_BYTES = 64 << 20
ALLOWED_DTYPES = ("int8", "uint8", "uint16", "int32", "int64", "float32", "float64")

# Migrations from older schema versions: {old_version: function(manifest) -> manifest of old+1}.
MIGRATIONS: Dict[int, Callable[[dict], dict]] = {}


def _array(dtype: str, ndim: int, optional: bool = False) -> Any:
    """Declare an array field: stored in the array table, checked for dtype and rank on load."""
    meta = {"array": True, "dtypes": dtype.split("|"), "ndim": ndim, "optional": optional}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


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
        _require_scale(self.gain, "gain")


@dataclass(frozen=True)
class DeltaEncoder:
    """Level-crossing spikes, an up and a down channel per input, every ``threshold``."""

    kind = "encoder.delta"
    n_inputs: int
    threshold: float

    def check(self) -> None:
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
    """Dense readout of exponential spike traces: ``y = (w @ trace) * w_scale / 2**trace_bits + bias``."""

    kind = "trace_readout"
    name: str
    n_in: int
    n_out: int
    trace_bits: int
    a_trace: np.ndarray = _array("int32", 1)  # Q16 trace decay per input neuron
    w: np.ndarray = _array("int8", 2)  # (n_out, n_in)
    w_scale: np.ndarray = _array("float64", 1)  # per output
    bias: np.ndarray = _array("float64", 1)  # per output, in output units

    def check(self) -> None:
        _require(self.w.shape == (self.n_out, self.n_in), "w has shape %s, expected (%d, %d)" % (self.w.shape, self.n_out, self.n_in))
        _require(self.a_trace.shape == (self.n_in,), "a_trace does not have %d entries" % self.n_in)
        _require(bool(np.all((self.a_trace >= 0) & (self.a_trace <= 1 << 16))), "a_trace is outside [0, 65536]")
        _require(self.bias.shape == (self.n_out,) and bool(np.all(np.isfinite(self.bias))), "bias is not %d finite values" % self.n_out)
        _require_scale(self.w_scale, "w_scale")
        _require(self.w_scale.shape == (self.n_out,), "w_scale does not have %d entries" % self.n_out)
        _require(0 <= self.trace_bits <= 16, "trace_bits must be in [0, 16]")


# ----------------------------------------------------------------------------- conv model records
#
# A convolutional SNN (``ConvBundle``) is a plain sequence of layers run for ``time_steps`` steps on
# the same directly encoded image (``docs/bundle.md``, integer model in ``docs/quantization.md``).
# Its kinds live in their own registry so that each model family's test factory covers its own.

MAX_ACC = (1 << 31) - 1  # an int32 accumulation must fit: 128 * fan-in * largest input <= MAX_ACC


def _require_int8_layer_arrays(layer: Any, n_out: int) -> None:
    for name in ("m", "bias", "w_scale"):
        _require(getattr(layer, name).shape == (n_out,), "%s does not have %d entries" % (name, n_out))
    _require(bool(np.all((layer.m >= 0) & (layer.m < 1 << 31))), "m is outside [0, 2**31)")
    _require(1 <= layer.shift <= 62, "shift must be in [1, 62]")
    _require(layer.decay <= 1 << 16, "decay is outside [0, 65536]")
    _require_scale(layer.w_scale, "w_scale")


def _require_conv_geometry(layer: Any) -> None:
    """The checks every 2-D convolution record shares (``conv_lif``, ``conv_stream``)."""
    expected = (layer.out_channels, layer.in_channels, layer.kernel_h, layer.kernel_w)
    _require(layer.weight.shape == expected, "weight has shape %s, expected %s" % (layer.weight.shape, expected))
    _require(min(expected) >= 1, "channels and kernel sizes must be >= 1")
    _require(layer.stride >= 1, "stride must be >= 1")
    _require(layer.padding < min(layer.kernel_h, layer.kernel_w), "padding must be smaller than the kernel")


class _Conv2d:
    """Geometry shared by the 2-D convolution records (``conv_lif``, ``conv_stream``), from
    their fields ``in_channels``, ``out_channels``, ``kernel_h``, ``kernel_w``, ``stride`` and
    ``padding`` (a plain base: the dataclasses declare the fields themselves)."""

    in_channels: Any
    out_channels: Any
    kernel_h: Any
    kernel_w: Any
    stride: Any
    padding: Any

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_h * self.kernel_w

    def out_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int, int]:
        """Output (C, H, W) for an input (C, H, W)."""
        _, h, w = shape
        return (self.out_channels, (h + 2 * self.padding - self.kernel_h) // self.stride + 1, (w + 2 * self.padding - self.kernel_w) // self.stride + 1)


@dataclass(frozen=True)
class ConvLifLayer(_Conv2d):
    """2-D convolution of int8 kernels, then integer LIF neurons with hard reset (``runtime/conv_ops.py, runtime/conv_session.py``)."""

    kind = "conv_lif"
    name: str
    in_channels: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride: int  # the same in both directions, >= 1
    padding: int  # zeros on every side
    decay: int  # Q16 membrane decay per step, in [0, 65536] (65536: IF)
    shift: int  # requantisation: current = rs(acc * m, shift) + bias, shift in [1, 62]
    weight: np.ndarray = _array("int8", 4)  # (out_channels, in_channels, kernel_h, kernel_w)
    m: np.ndarray = _array("int64", 1)  # per output channel, in [0, 2**31)
    bias: np.ndarray = _array("int32", 1)  # per output channel, state units per step
    w_scale: np.ndarray = _array("float64", 1)  # float weight of one int8 step, per output channel

    def check(self) -> None:
        _require_conv_geometry(self)
        _require_int8_layer_arrays(self, self.out_channels)


@dataclass(frozen=True)
class MaxPoolLayer:
    """Max pooling of spikes, ``size`` x ``size`` windows with stride ``size`` (an OR; floor mode)."""

    kind = "maxpool"
    name: str
    size: int

    def check(self) -> None:
        _require(self.size >= 1, "size must be >= 1")


@dataclass(frozen=True)
class FlattenLayer:
    """(C, H, W) -> C*H*W, channel-major (torch's ``flatten`` order)."""

    kind = "flatten"
    name: str

    def check(self) -> None:
        pass


@dataclass(frozen=True)
class LinearLifLayer:
    """Dense int8 weights, then integer LIF neurons with hard reset (same step as ``conv_lif``)."""

    kind = "linear_lif"
    name: str
    n_in: int
    n_out: int
    decay: int  # Q16 membrane decay per step, in [0, 65536]
    shift: int  # requantisation shift, in [1, 62]
    weight: np.ndarray = _array("int8", 2)  # (n_out, n_in)
    m: np.ndarray = _array("int64", 1)  # per output, in [0, 2**31)
    bias: np.ndarray = _array("int32", 1)  # per output, state units per step
    w_scale: np.ndarray = _array("float64", 1)  # float weight of one int8 step, per output

    def check(self) -> None:
        _require(self.weight.shape == (self.n_out, self.n_in), "weight has shape %s, expected (%d, %d)" % (self.weight.shape, self.n_out, self.n_in))
        _require(self.n_out >= 1, "n_out must be >= 1")
        _require_int8_layer_arrays(self, self.n_out)

    @property
    def fan_in(self) -> int:
        return self.n_in


@dataclass(frozen=True)
class ConvStreamLayer(_Conv2d):
    """2-D convolution of int8 kernels into the residual stream of a ResNet (no neuron).

    ``acc = conv2d(x, weight)``; ``y = rs(acc * m, shift)`` (int64, per output channel: the
    stream's scale); the stream becomes ``sat32(y)`` (``mode`` "set": the stem, a transition) or
    ``sat32(stream + y)`` ("add": a block's last conv). The next layer sees the stream.
    """

    kind = "conv_stream"
    name: str
    in_channels: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride: int
    padding: int
    mode: str  # "set" or "add"
    shift: int  # in [1, 62]
    weight: np.ndarray = _array("int8", 4)  # (out_channels, in_channels, kernel_h, kernel_w)
    m: np.ndarray = _array("int64", 1)  # per output channel, in [0, 2**31)
    w_scale: np.ndarray = _array("float64", 1)  # float weight of one int8 step, per output channel

    def check(self) -> None:
        _require_conv_geometry(self)
        _require(self.mode in ("set", "add"), "mode must be 'set' or 'add'")
        _require(self.m.shape == (self.out_channels,) and self.w_scale.shape == (self.out_channels,), "m and w_scale need %d entries" % self.out_channels)
        _require(bool(np.all((self.m >= 0) & (self.m < 1 << 31))), "m is outside [0, 2**31)")
        _require(1 <= self.shift <= 62, "shift must be in [1, 62]")
        _require_scale(self.w_scale, "w_scale")


@dataclass(frozen=True)
class StreamLifLayer:
    """Integer LIF neurons with hard reset driven by the residual stream, the pre-activation
    BatchNorm folded in: ``v = sat32(rs(decay * mem, 16) + rs(stream * m, shift) + bias)``
    (``conv_lif``'s step with the stream as its accumulation; ``m`` may be negative, a
    BatchNorm scale can be). The stream stays for the next ``conv_stream`` "add"."""

    kind = "stream_lif"
    name: str
    channels: int
    decay: int  # Q16, in [0, 65536]
    shift: int  # in [1, 62]
    m: np.ndarray = _array("int64", 1)  # per channel, |m| < 2**31
    bias: np.ndarray = _array("int32", 1)  # per channel, state units per step

    def check(self) -> None:
        _require(self.channels >= 1, "channels must be >= 1")
        _require(self.m.shape == (self.channels,) and self.bias.shape == (self.channels,), "m and bias need %d entries" % self.channels)
        _require(bool(np.all(np.abs(self.m) < 1 << 31)), "m is outside (-2**31, 2**31)")
        _require(1 <= self.shift <= 62, "shift must be in [1, 62]")
        _require(self.decay <= 1 << 16, "decay is outside [0, 65536]")


@dataclass(frozen=True)
class GlobalSumPoolLayer:
    """Spike counts over H and W: (C, H, W) -> (C,), integers up to H * W (a global average pool
    whose 1 / (H * W) the readout's ``acc_scale`` carries)."""

    kind = "global_sum_pool"
    name: str

    def check(self) -> None:
        pass


@dataclass(frozen=True)
class LinearReadout:
    """Non-spiking dense int8 readout; its currents are averaged over the steps (the logits).

    Output after step t: ``float64(sum over steps of weight @ x) * acc_scale / t + bias``.
    """

    kind = "linear_readout"
    name: str
    n_in: int
    n_out: int
    weight: np.ndarray = _array("int8", 2)  # (n_out, n_in)
    acc_scale: np.ndarray = _array("float64", 1)  # output units of one accumulation step, per output
    bias: np.ndarray = _array("float64", 1)  # per output, output units

    def check(self) -> None:
        _require(self.weight.shape == (self.n_out, self.n_in), "weight has shape %s, expected (%d, %d)" % (self.weight.shape, self.n_out, self.n_in))
        _require(self.n_out >= 1, "n_out must be >= 1")
        _require(self.acc_scale.shape == (self.n_out,) and self.bias.shape == (self.n_out,), "acc_scale and bias need %d entries" % self.n_out)
        _require_scale(self.acc_scale, "acc_scale")
        _require(bool(np.all(np.isfinite(self.bias))), "bias is not finite")

    @property
    def fan_in(self) -> int:
        return self.n_in


ConvLayer = Union[ConvLifLayer, MaxPoolLayer, FlattenLayer, LinearLifLayer, ConvStreamLayer, StreamLifLayer, GlobalSumPoolLayer]
CONV_REGISTRY: Dict[str, Type[Any]] = {
    cls.kind: cls for cls in (ConvLifLayer, MaxPoolLayer, FlattenLayer, LinearLifLayer, ConvStreamLayer, StreamLifLayer, GlobalSumPoolLayer, LinearReadout)
}
CONV_LAYER_KINDS = ("conv_lif", "maxpool", "flatten", "linear_lif", "conv_stream", "stream_lif", "global_sum_pool")
SPIKING_KINDS = ("conv_lif", "linear_lif", "stream_lif")  # layers with neurons: membrane state, spikes
STREAM_KINDS = ("conv_stream", "stream_lif")  # residual networks (no ONNX / TFLite step graph yet)


Encoder = Union[DirectEncoder, RateEncoder, DeltaEncoder]
REGISTRY: Dict[str, Type[Any]] = {
    cls.kind: cls for cls in (SparseMatrix, DirectEncoder, RateEncoder, DeltaEncoder, LifRecurrentLayer, TraceReadout)
}


@dataclass(frozen=True)
class Bundle:
    """A whole deployable model: encoder, recurrent layers, readout, and where it came from.

    ``output``: "sequence" (one output per step: regression, prediction) or "last" (the output
    at the last step is the answer: classification). ``provenance`` records the training,
    pruning and quantization that made the model (plain JSON, shown by ``spikeedge info``).
    """

    encoder: Encoder
    layers: Tuple[LifRecurrentLayer, ...]
    readout: TraceReadout
    output: str = "sequence"
    provenance: Dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # filled in on write and load

    def check(self) -> None:
        _require(self.output in ("sequence", "last"), "output must be 'sequence' or 'last'")
        _require(len(self.layers) >= 1, "a bundle needs at least one layer")
        names = [layer.name for layer in self.layers]
        _require(len(set(names)) == len(names), "layer names are not unique")
        n_ch = self.encoder.n_inputs * (2 if self.encoder.kind == "encoder.delta" else 1)
        for layer in self.layers:
            _require(layer.w_in.n_sources == n_ch, "layer %r expects %d input channels, the encoder gives %d" % (layer.name, layer.w_in.n_sources, n_ch))
            n_ch = layer.n
        _require(self.readout.n_in == n_ch, "readout expects %d inputs, the last layer has %d neurons" % (self.readout.n_in, n_ch))

    @property
    def n_inputs(self) -> int:
        return self.encoder.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.readout.n_out



@dataclass(frozen=True)
class ConvBundle:
    """A deployable convolutional SNN: the direct encoder, a chain of conv / pool / flatten /
    linear layers and a linear readout, run for ``time_steps`` steps on the same image.

    In the manifest it is marked by ``"model": "conv"`` (a manifest without ``model`` is a
    recurrent ``Bundle``). ``output``: "last" (classification: the logits after the last step)
    or "sequence" (the running average after every step).
    """

    model = "conv"
    encoder: DirectEncoder  # n_inputs = C * H * W
    input_shape: Tuple[int, int, int]  # (C, H, W) of one image
    time_steps: int  # T, >= 1
    layers: Tuple[ConvLayer, ...]
    readout: LinearReadout
    output: str = "last"
    provenance: Dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # filled in on write and load

    def check(self) -> None:
        _require(self.output in ("sequence", "last"), "output must be 'sequence' or 'last'")
        _require(self.encoder.kind == "encoder.direct", "a conv model takes a direct encoder")
        _require(len(self.input_shape) == 3 and all(isinstance(v, int) and v >= 1 for v in self.input_shape), "input_shape must be three integers >= 1")
        _require(self.encoder.n_inputs == math.prod(self.input_shape), "the encoder has %d inputs, input_shape %s holds %d" % (self.encoder.n_inputs, list(self.input_shape), math.prod(self.input_shape)))
        _require(self.time_steps >= 1, "time_steps must be >= 1")
        _require(len(self.layers) >= 1, "a bundle needs at least one layer")
        names = [layer.name for layer in self.layers] + [self.readout.name]
        _require(len(set(names)) == len(names), "layer names are not unique")
        self.shapes()

    def shapes(self) -> List[Tuple[int, ...]]:
        """The activation shape after each layer (the input's first), checking the chain:
        channels and sizes match, pooling sees spikes, int32 accumulations cannot overflow."""
        shape: Tuple[int, ...] = tuple(self.input_shape)
        peak = (1 << (self.encoder.bits - 1)) - 1  # largest |input| a layer can see: the image's, then 1
        stream: Optional[Tuple[int, ...]] = None  # shape of the residual stream, once a conv_stream set it
        on_stream = False  # the previous layer's output is the stream
        out = [shape]
        for i, layer in enumerate(self.layers):
            where = "layers.%d (%s)" % (i, layer.kind)
            if layer.kind in ("conv_lif", "maxpool", "flatten", "conv_stream", "global_sum_pool"):
                _require(len(shape) == 3, "%s needs a (C, H, W) input, it gets %s" % (where, list(shape)))
            if layer.kind in ("conv_lif", "linear_lif", "conv_stream", "maxpool", "flatten", "global_sum_pool"):
                _require(not on_stream, "%s cannot read the residual stream (only stream_lif can)" % where)
            if layer.kind in ("conv_lif", "conv_stream"):
                _require(shape[0] == layer.in_channels, "%s expects %d channels, it gets %d" % (where, layer.in_channels, shape[0]))
                shape = layer.out_shape(shape)
                _require(shape[1] >= 1 and shape[2] >= 1, "%s: the kernel does not fit the %dx%d input" % (where, out[-1][1], out[-1][2]))
            elif layer.kind == "maxpool":
                _require(peak == 1, "%s: max pooling takes spikes, not the real-valued image" % where)
                shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
                _require(shape[1] >= 1 and shape[2] >= 1, "%s: the window is larger than its input" % where)
            elif layer.kind == "flatten":
                shape = (math.prod(shape),)
            elif layer.kind == "stream_lif":
                _require(on_stream, "%s reads the residual stream, but the layer before it is not a conv_stream" % where)
                _require(shape[0] == layer.channels, "%s expects %d channels, the stream has %d" % (where, layer.channels, shape[0]))
            elif layer.kind == "global_sum_pool":
                _require(peak == 1, "%s: pools spikes" % where)
                shape = (shape[0],)
            else:
                _require(shape == (layer.n_in,), "%s expects %d inputs, it gets %s" % (where, layer.n_in, list(shape)))
                shape = (layer.n_out,)
            if layer.kind in ("conv_lif", "linear_lif", "conv_stream"):
                _require(128 * layer.fan_in * peak <= MAX_ACC, "%s: fan-in %d times inputs up to %d can overflow the int32 accumulation" % (where, layer.fan_in, peak))
            if layer.kind == "conv_stream":
                _require(layer.mode == "set" or stream == shape, "%s adds to a residual stream of shape %s, it has %s" % (where, list(shape), None if stream is None else list(stream)))
                stream, on_stream = shape, True
            else:
                on_stream = False
            if layer.kind in SPIKING_KINDS:
                peak = 1
            elif layer.kind == "global_sum_pool":
                peak = out[-1][1] * out[-1][2]  # a count of spikes over H x W
            out.append(shape)
        _require(not on_stream, "the readout cannot read the residual stream")
        _require(shape == (self.readout.n_in,), "readout expects %d inputs, it gets %s" % (self.readout.n_in, list(shape)))
        _require(128 * self.readout.fan_in * peak <= MAX_ACC, "readout: fan-in %d times inputs up to %d can overflow the int32 accumulation" % (self.readout.n_in, peak))
        return out

    @property
    def n_inputs(self) -> int:
        return self.encoder.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.readout.n_out

    @property
    def spiking_layers(self) -> List[Any]:
        return [layer for layer in self.layers if layer.kind in SPIKING_KINDS]


AnyBundle = Union[Bundle, ConvBundle]

# ----------------------------------------------------------------------------- validation helpers


class _Invalid(Exception):
    """Internal: a consistency rule failed; turned into a BundleError naming the file."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _Invalid(message)


def _require_scale(value: Any, name: str) -> None:
    arr = np.asarray(value, dtype=np.float64)
    _require(bool(np.all(np.isfinite(arr))) and bool(np.all(arr > 0)), "%s must be finite and > 0" % name)


# ----------------------------------------------------------------------------- records <-> manifest


def _record_to_json(obj: Any, prefix: str, arrays: Dict[str, np.ndarray]) -> dict:
    out: Dict[str, Any] = {"kind": obj.kind}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = "%s.%s" % (prefix, f.name)
        if f.metadata.get("array"):
            if value is not None:
                arrays[key] = np.ascontiguousarray(value)
                out[f.name] = {"array": key}
        elif dataclasses.is_dataclass(value):
            out[f.name] = _record_to_json(value, key, arrays)
        else:
            out[f.name] = value
    return out


def _scalar(value: Any, annotation: str, where: str) -> Any:
    if annotation == "int":
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, "%s must be a non-negative integer" % where)
    elif annotation == "float":
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), "%s must be a finite number" % where)
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        _require(math.isfinite(value), "%s must be a finite number" % where)
    elif annotation == "str":
        _require(isinstance(value, str), "%s must be a string" % where)
    elif annotation == "bool":
        _require(isinstance(value, bool), "%s must be true or false" % where)
    return value


def _record_from_json(d: Any, where: str, arrays: Dict[str, np.ndarray], expect: Union[None, str, Tuple[str, ...]] = None) -> Any:
    """``expect``: the kind's prefix, or a tuple of allowed prefixes."""
    _require(isinstance(d, dict), "%s is not an object" % where)
    kind = d.get("kind")
    _require(isinstance(kind, str) and (kind in REGISTRY or kind in CONV_REGISTRY), "%s has unknown kind %r" % (where, kind))
    _require(expect is None or kind.startswith(expect), "%s has kind %r, expected %s" % (where, kind, expect if isinstance(expect, str) else " or ".join(expect)))
    cls = REGISTRY[kind] if kind in REGISTRY else CONV_REGISTRY[kind]
    values: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = "%s.%s" % (where, f.name)
        meta = f.metadata
        if f.name not in d:
            _require(bool(meta.get("optional")), "%s is missing" % sub)
            values[f.name] = None
            continue
        raw = d[f.name]
        if meta.get("array"):
            _require(isinstance(raw, dict) and isinstance(raw.get("array"), str), "%s must name an array" % sub)
            _require(raw["array"] in arrays, "%s names missing array %r" % (sub, raw["array"]))
            arr = arrays[raw["array"]]
            _require(arr.dtype.name in meta["dtypes"], "%s has dtype %s, expected %s" % (sub, arr.dtype.name, "|".join(meta["dtypes"])))
            _require(arr.ndim == meta["ndim"], "%s has %d dimensions, expected %d" % (sub, arr.ndim, meta["ndim"]))
            values[f.name] = arr
        elif f.type in ("SparseMatrix",):
            values[f.name] = _record_from_json(raw, sub, arrays, expect="sparse")
        else:
            values[f.name] = _scalar(raw, str(f.type), sub)
    obj = cls(**values)
    try:
        obj.check()
    except _Invalid as exc:
        raise _Invalid("%s: %s" % (where, exc)) from None
    return obj


def encoder_to_json(encoder: Encoder) -> dict:
    """An encoder record (it has no arrays) as JSON: what exported step graphs carry."""
    return _record_to_json(encoder, "encoder", {})


def encoder_from_json(d: Any, where: str = "encoder") -> Encoder:
    """The inverse of ``encoder_to_json``; ``BundleError``-free: raises ``ValueError`` with a
    one-line reason."""
    try:
        return _record_from_json(d, where, {}, expect="encoder")
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def bundle_to_manifest(bundle: AnyBundle) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The manifest (JSON-able dict) and the named arrays of a bundle."""
    arrays: Dict[str, np.ndarray] = {}
    if isinstance(bundle, ConvBundle):
        manifest = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "model": ConvBundle.model,
            "input_shape": list(bundle.input_shape),
            "time_steps": bundle.time_steps,
            "encoder": _record_to_json(bundle.encoder, "encoder", arrays),
            "layers": [_record_to_json(layer, "layers.%d" % i, arrays) for i, layer in enumerate(bundle.layers)],
            "readout": _record_to_json(bundle.readout, "readout", arrays),
            "output": bundle.output,
            "provenance": bundle.provenance,
        }
        return manifest, arrays
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "encoder": _record_to_json(bundle.encoder, "encoder", arrays),
        "layers": [_record_to_json(layer, "layers.%d" % i, arrays) for i, layer in enumerate(bundle.layers)],
        "readout": _record_to_json(bundle.readout, "readout", arrays),
        "output": bundle.output,
        "provenance": bundle.provenance,
    }
    return manifest, arrays


def bundle_from_manifest(manifest: Any, arrays: Dict[str, np.ndarray]) -> AnyBundle:
    """Build and check a Bundle from a manifest dict; raises ``_Invalid`` on any problem."""
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    _require(manifest.get("format") == FORMAT_NAME, "not a spikeedge bundle (format %r)" % manifest.get("format"))
    version = manifest.get("schema_version")
    _require(isinstance(version, int) and not isinstance(version, bool), "schema_version is missing or not an integer")
    while version in MIGRATIONS:
        manifest = MIGRATIONS[version](manifest)
        version = manifest["schema_version"]
    _require(version == SCHEMA_VERSION, "schema version %s is not supported (this runtime reads version %d)" % (version, SCHEMA_VERSION))
    _require(isinstance(manifest.get("layers"), list), "layers must be a list")
    provenance = manifest.get("provenance", {})
    _require(isinstance(provenance, dict), "provenance must be an object")
    output = manifest.get("output")
    _require(isinstance(output, str), "output must be a string")
    model = manifest.get("model", "hrsnn")
    _require(model in ("hrsnn", ConvBundle.model), "unknown model kind %r (expected 'hrsnn' or 'conv')" % (model,))
    if model == ConvBundle.model:
        return _conv_from_manifest(manifest, arrays, output, provenance)
    bundle = Bundle(
        encoder=_record_from_json(manifest.get("encoder"), "encoder", arrays, expect="encoder."),
        layers=tuple(_record_from_json(d, "layers.%d" % i, arrays, expect="lif_") for i, d in enumerate(manifest["layers"])),
        readout=_record_from_json(manifest.get("readout"), "readout", arrays, expect="trace_"),
        output=output,
        provenance=provenance,
    )
    bundle.check()
    return bundle


def _conv_from_manifest(manifest: dict, arrays: Dict[str, np.ndarray], output: str, provenance: dict) -> ConvBundle:
    shape = manifest.get("input_shape")
    ok = isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 1 << 31 for v in shape)
    _require(ok, "input_shape must be a list of three integers >= 1")
    steps = manifest.get("time_steps")
    _require(isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps < 1 << 31, "time_steps must be an integer >= 1")
    bundle = ConvBundle(
        encoder=_record_from_json(manifest.get("encoder"), "encoder", arrays, expect="encoder.direct"),
        input_shape=tuple(shape),
        time_steps=steps,
        layers=tuple(_record_from_json(d, "layers.%d" % i, arrays, expect=CONV_LAYER_KINDS) for i, d in enumerate(manifest["layers"])),
        readout=_record_from_json(manifest.get("readout"), "readout", arrays, expect="linear_readout"),
        output=output,
        provenance=provenance,
    )
    bundle.check()
    return bundle


# ----------------------------------------------------------------------------- bytes <-> file


def encode_bytes(manifest: dict, arrays: Dict[str, np.ndarray]) -> bytes:
    """Serialise a manifest and its arrays to the bundle byte layout (with the digest)."""
    table: Dict[str, dict] = {}
    chunks: List[bytes] = []
    offset = 0
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-offset) % ALIGN
        chunks.append(b"\0" * pad)
        offset += pad
        table[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset, "nbytes": len(data)}
        chunks.append(data)
        offset += len(data)
    doc = dict(manifest, arrays=table)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    body = MAGIC + struct.pack("<I", len(text)) + text + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def decode_bytes(blob: bytes) -> Tuple[dict, Dict[str, np.ndarray], str]:
    """Check framing and checksum, then parse manifest and arrays; raises ``_Invalid``."""
    head = len(MAGIC) + 4
    _require(len(blob) >= head + DIGEST_BYTES, "file is too short to be a bundle (%d bytes)" % len(blob))
    _require(blob[: len(MAGIC)] == MAGIC, "not a spikeedge bundle (bad magic bytes)")
    body, digest = blob[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    _require(hashlib.sha256(body).digest() == digest, "checksum mismatch: the file is corrupt or truncated")
    (length,) = struct.unpack("<I", blob[len(MAGIC) : head])
    _require(length <= min(MAX_MANIFEST_BYTES, len(body) - head), "manifest length %d exceeds the file" % length)
    try:
        manifest = json.loads(body[head : head + length].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Invalid("manifest is not valid JSON (%s)" % str(exc).splitlines()[0]) from None
    except RecursionError:
        raise _Invalid("manifest is nested too deeply") from None
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    data = memoryview(body)[head + length :]
    table = manifest.get("arrays")
    _require(isinstance(table, dict), "the array table is missing")
    arrays = {}
    for name, entry in table.items():
        arrays[name] = _read_array(name, entry, data)
    return manifest, arrays, digest.hex()


def _reject_constant(name: str) -> None:
    raise ValueError("%s is not a JSON number" % name)


def _read_array(name: str, entry: Any, data: memoryview) -> np.ndarray:
    _require(isinstance(entry, dict), "array %r: entry is not an object" % name)
    dtype, shape, offset, nbytes = (entry.get(k) for k in ("dtype", "shape", "offset", "nbytes"))
    _require(dtype in ALLOWED_DTYPES, "array %r: dtype %r is not allowed" % (name, dtype))
    _require(isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape), "array %r: bad shape %r" % (name, shape))
    for key, value in (("offset", offset), ("nbytes", nbytes)):
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, "array %r: bad %s" % (name, key))
    dt = np.dtype(dtype).newbyteorder("<")
    _require(math.prod(shape) * dt.itemsize == nbytes, "array %r: shape %s does not match %d bytes" % (name, shape, nbytes))
    _require(offset + nbytes <= len(data), "array %r lies beyond the end of the file" % name)
    arr = np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize, offset=offset).reshape(shape)
    return arr.astype(np.dtype(dtype), copy=True)


def dumps(bundle: AnyBundle) -> bytes:
    """The bundle as bytes (what ``save`` writes)."""
    try:
        for record in _records(bundle):
            record.check()
        bundle.check()
        manifest, arrays = bundle_to_manifest(bundle)
        return encode_bytes(manifest, arrays)
    except _Invalid as exc:
        raise BundleError("cannot write bundle: %s" % exc) from None
    except (TypeError, ValueError) as exc:  # NaN or non-JSON values in scalars or provenance
        raise BundleError("cannot write bundle: %s" % str(exc).splitlines()[0]) from None


def _records(bundle: AnyBundle) -> List[Any]:
    """Every record of a bundle, nested sparse matrices included, for their own checks."""
    out: List[Any] = [bundle.encoder, bundle.readout]
    if isinstance(bundle, ConvBundle):
        return out + list(bundle.layers)
    for layer in bundle.layers:
        out += [layer, layer.w_in, layer.w_rec]
    return out


def loads(blob: bytes, source: str = "<bytes>") -> AnyBundle:
    """Parse and fully validate bundle bytes; ``source`` names the file in error messages."""
    try:
        manifest, arrays, digest = decode_bytes(blob)
        bundle = bundle_from_manifest(manifest, arrays)
    except _Invalid as exc:
        raise BundleError("%s: %s" % (source, exc)) from None
    return dataclasses.replace(bundle, sha256=digest)


def save(bundle: AnyBundle, path: Union[str, Path]) -> str:
    """Write atomically (temporary file in the same folder, fsync, rename); returns the sha256."""
    path = Path(path)
    blob = dumps(bundle)
    write_atomic(path, blob)
    return blob[-DIGEST_BYTES:].hex()


def load(path: Union[str, Path]) -> AnyBundle:
    """Read and validate a bundle file; any problem is a one-line ``BundleError``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise BundleError("%s: no such file" % path) from None
    except IsADirectoryError:
        raise BundleError("%s: is a directory, not a bundle" % path) from None
    except OSError as exc:
        raise BundleError("%s: cannot read (%s)" % (path, exc.strerror)) from None
    return loads(blob, str(path))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MB pieces (bundles, uploads and bench records name files by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
