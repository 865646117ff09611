"""The whole-model records of a bundle: ``Bundle`` (recurrent) and ``ConvBundle`` (convolutional),
with the checks that span layers (channel counts along the chain, int32 accumulation bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .conv_layers import SPIKING_KINDS, ConvLayer, LinearReadout
from .limits import MAX_ACC, MAX_ACTIVATION
from .layers import DirectEncoder, Encoder, LifRecurrentLayer, TraceReadout, _require


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
        peak = (1 << (self.encoder.bits - 1)) - 1 if self.encoder.kind == "encoder.direct" else 1
        for layer in self.layers:
            _require(layer.w_in.n_sources == n_ch, "layer %r expects %d input channels, the encoder gives %d" % (layer.name, layer.w_in.n_sources, n_ch))
            for which, w, p in (("w_in", layer.w_in, peak), ("w_rec", layer.w_rec, 1)):
                acc = w.max_abs_acc(p)
                _require(acc <= MAX_ACC, "layer %r %s: a sum of |w| x inputs up to %d reaches %d and can overflow the int32 accumulation" % (layer.name, which, p, acc))
            n_ch, peak = layer.n, 1
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
        _require(math.prod(shape) <= MAX_ACTIVATION, "input_shape %s exceeds the limit of %d values per image" % (list(shape), MAX_ACTIVATION))
        peak = (1 << (self.encoder.bits - 1)) - 1  # largest |input| a layer can see: the image's, then 1
        stream: Optional[Tuple[int, ...]] = None  # shape of the residual stream, once a conv_stream set it
        on_stream = False  # the previous layer's output is the stream
        out = [shape]
        for i, layer in enumerate(self.layers):
            where = "layers.%d (%s)" % (i, layer.kind)
            if layer.kind in ("conv_lif", "maxpool", "flatten", "conv_stream", "global_sum_pool", "sum_pool"):
                _require(len(shape) == 3, "%s needs a (C, H, W) input, it gets %s" % (where, list(shape)))
            if layer.kind in ("conv_lif", "linear_lif", "conv_stream", "maxpool", "flatten", "global_sum_pool", "sum_pool"):
                _require(not on_stream, "%s cannot read the residual stream (only stream_lif can)" % where)
            if layer.kind in ("conv_lif", "conv_stream"):
                _require(shape[0] == layer.in_channels, "%s expects %d channels, it gets %d" % (where, layer.in_channels, shape[0]))
                shape = layer.out_shape(shape)
                _require(shape[1] >= 1 and shape[2] >= 1, "%s: the kernel does not fit the %dx%d input" % (where, out[-1][1], out[-1][2]))
            elif layer.kind == "maxpool":
                _require(peak == 1, "%s: max pooling takes spikes, not the real-valued image" % where)
                shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
                _require(shape[1] >= 1 and shape[2] >= 1, "%s: the window is larger than its input" % where)
            elif layer.kind == "sum_pool":
                shape = layer.out_shape(shape)
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
            elif layer.kind == "sum_pool":
                peak *= layer.kernel_h * layer.kernel_w  # a sum of kh x kw inputs
                _require(peak <= MAX_ACC, "%s: sums of inputs up to %d can overflow int32" % (where, peak))
            _require(math.prod(shape) <= MAX_ACTIVATION, "%s: its output of shape %s exceeds the limit of %d values per image" % (where, list(shape), MAX_ACTIVATION))
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
