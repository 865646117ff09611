"""The bundle's records for the convolutional model (``ConvBundle``'s layers and readout) and their
registry, apart from the recurrent records so that each model family's kinds read on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple, Type, Union

import numpy as np

from .layers import MAX_OUTPUT_SCALE, _array, _require, _require_scale

# ----------------------------------------------------------------------------- conv model records
#
# A convolutional SNN (``ConvBundle``) is a plain sequence of layers run for ``time_steps`` steps on
# the same directly encoded image (``docs/bundle.md``, integer model in ``docs/quantization.md``).
# Its kinds live in their own registry so that each model family's test factory covers its own.



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
class SumPoolLayer:
    """Sum pooling: each ``kernel_h`` x ``kernel_w`` window (strides ``stride_h``, ``stride_w``, no
    padding, floor mode) summed, integers in, integers out (spike counts up to ``kernel_h *
    kernel_w`` on spikes). What NIR's ``SumPool2d`` is, and ``AvgPool2d`` with its ``1 / (kh * kw)``
    carried by the next layer's requantisation (``offline/quantize_conv.py``). Schema version 2."""

    kind = "sum_pool"
    name: str
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int

    def check(self) -> None:
        _require(min(self.kernel_h, self.kernel_w) >= 1 and min(self.stride_h, self.stride_w) >= 1, "kernel and stride must be >= 1")
        _require(self.kernel_h * self.kernel_w <= 1 << 16, "the window holds more than 65536 values")

    def out_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int, int]:
        """Output (C, H, W) for an input (C, H, W) (no padding, floor mode)."""
        c, h, w = shape
        return (c, (h - self.kernel_h) // self.stride_h + 1, (w - self.kernel_w) // self.stride_w + 1)


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
        _require_scale(self.acc_scale, "acc_scale", MAX_OUTPUT_SCALE)
        _require(bool(np.all(np.isfinite(self.bias))), "bias is not finite")

    @property
    def fan_in(self) -> int:
        return self.n_in


ConvLayer = Union[ConvLifLayer, MaxPoolLayer, FlattenLayer, LinearLifLayer, ConvStreamLayer, StreamLifLayer, GlobalSumPoolLayer, SumPoolLayer]
CONV_REGISTRY: Dict[str, Type[Any]] = {
    cls.kind: cls for cls in (ConvLifLayer, MaxPoolLayer, FlattenLayer, LinearLifLayer, ConvStreamLayer, StreamLifLayer, GlobalSumPoolLayer,
                              SumPoolLayer, LinearReadout)
}
CONV_LAYER_KINDS = ("conv_lif", "maxpool", "flatten", "linear_lif", "conv_stream", "stream_lif", "global_sum_pool", "sum_pool")
# The schema version that introduced a kind (absent: 1). A bundle is written with the lowest version
# holding all its kinds, so a model without them keeps its bytes and digest (``manifest.py``).
KIND_SINCE: Dict[str, int] = {"sum_pool": 2}
SPIKING_KINDS = ("conv_lif", "linear_lif", "stream_lif")  # layers with neurons: membrane state, spikes
STREAM_KINDS = ("conv_stream", "stream_lif")  # residual networks (no ONNX / TFLite step graph yet)
GRAPHLESS_KINDS = STREAM_KINDS + ("sum_pool",)  # kinds the ONNX / TFLite step graphs do not have yet
