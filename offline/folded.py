"""The inference form of a convolutional SNN: a plain sequence of float layers, BatchNorm folded
into the convolution before it. The contract between the conv models (``offline/convsnn*.py``,
which produce it with ``fold(model)``) and the int8 exporter (which quantizes it into bundle
layers for the event-driven runtime).

Semantics per time step ``t`` (direct encoding: the same real-valued image enters every step):

    FoldedConv:   current = conv2d(x, weight, stride, padding) + bias      (x: the input image
                  for the first layer, else the previous layer's spikes)
                  then the spiking neuron of that layer (see below)
    FoldedPool:   max pooling (``size`` x ``size``, stride ``size``) of the previous spikes (an OR:
                  spikes stay binary)
    FoldedSumPool: the sum (``average``: the mean) over ``kernel`` windows with ``stride``, no
                  padding, floor mode (NIR's SumPool2d / AvgPool2d); the values after it are
                  counts (or fractions) of spikes, the next layer's input
    FoldedFlatten: (C, H, W) -> C*H*W, channel-major (torch's ``flatten`` order)
    FoldedLinear: current = x @ weight.T + bias, then the neuron if ``spiking``; the last layer
                  is not spiking: its currents are summed over the T steps and divided by T
                  (the logits)

Residual networks (the pre-activation ResNet) add a *stream*: a real-valued tensor that blocks
add into, read by neurons through their pre-activation BatchNorm. Within one step:

    FoldedStreamConv: y = conv2d(x, weight, stride, padding) (no bias); the stream becomes y
                  (``add=False``: the stem, a stage's transition) or stream + y (``add=True``: a
                  block's last conv); the next layer sees the stream
    FoldedStreamLif: current = scale * stream + shift (per channel: BatchNorm folded), then the
                  spiking neuron; the stream itself is kept for the next ``add``
    FoldedGlobalPool: the mean over H and W of the previous spikes, (C, H, W) -> (C,)

Spiking neuron (per element, state ``mem`` from 0): ``mem = decay * mem + current``;
``s = mem >= threshold``; reset to zero where ``s`` (hard reset, as in the SCA paper).
``decay = 1.0`` is IF; LIF uses ``decay = 1 - 1/tau`` (one value per layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple, Union

import numpy as np


@dataclass(frozen=True)
class FoldedConv:
    weight: np.ndarray  # (out, in, kh, kw) float32, BatchNorm folded in
    bias: np.ndarray  # (out,)
    stride: int
    padding: int
    decay: float
    threshold: float


@dataclass(frozen=True)
class FoldedPool:
    size: int


@dataclass(frozen=True)
class FoldedSumPool:
    kernel: Tuple[int, int]  # (height, width)
    stride: Tuple[int, int]
    average: bool = False  # True: divided by kernel height x width (AvgPool2d)


@dataclass(frozen=True)
class FoldedFlatten:
    pass


@dataclass(frozen=True)
class FoldedLinear:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray
    spiking: bool
    decay: float = 1.0
    threshold: float = 1.0


@dataclass(frozen=True)
class FoldedStreamConv:
    weight: np.ndarray  # (out, in, kh, kw) float32
    stride: int
    padding: int
    add: bool  # False: the stream becomes the output; True: the output is added to it


@dataclass(frozen=True)
class FoldedStreamLif:
    scale: np.ndarray  # (C,): BatchNorm's gamma / sqrt(var + eps)
    shift: np.ndarray  # (C,): beta - mean * scale
    decay: float
    threshold: float


@dataclass(frozen=True)
class FoldedGlobalPool:
    pass


FoldedLayer = Union[FoldedConv, FoldedPool, FoldedSumPool, FoldedFlatten, FoldedLinear, FoldedStreamConv, FoldedStreamLif, FoldedGlobalPool]


@dataclass(frozen=True)
class FoldedNet:
    input_shape: tuple  # (C, H, W)
    time_steps: int
    layers: List[FoldedLayer]
    n_classes: int


FOLDED_TYPES = {cls.__name__: cls for cls in (FoldedConv, FoldedPool, FoldedSumPool, FoldedFlatten, FoldedLinear, FoldedStreamConv,
                                             FoldedStreamLif, FoldedGlobalPool)}


def folded_to_arrays(net: FoldedNet) -> "tuple[dict, dict]":
    """(JSON-able description, named float32 arrays) of ``net``: what a checkpoint stores
    (``offline/checkpoint.py``; no pickle)."""
    import dataclasses

    arrays, rows = {}, []
    for i, layer in enumerate(net.layers):
        row = {"type": type(layer).__name__}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if isinstance(value, np.ndarray):
                arrays["layers.%d.%s" % (i, f.name)] = np.asarray(value, np.float32)
                row[f.name] = {"array": "layers.%d.%s" % (i, f.name)}
            else:
                row[f.name] = list(value) if isinstance(value, tuple) else value
        rows.append(row)
    doc = {"input_shape": list(net.input_shape), "time_steps": net.time_steps, "n_classes": net.n_classes, "layers": rows}
    return doc, arrays


def folded_from_arrays(doc: dict, arrays: dict) -> FoldedNet:
    """The inverse of ``folded_to_arrays``; ``KeyError`` / ``TypeError`` / ``ValueError`` on a
    description that does not fit (the checkpoint loader turns them into one line)."""
    layers = []
    for row in doc["layers"]:
        cls = FOLDED_TYPES[row["type"]]
        kwargs = {}
        for k, v in row.items():
            if k == "type":
                continue
            if isinstance(v, dict):
                v = np.asarray(arrays[v["array"]], np.float32)
            elif isinstance(v, list):
                v = tuple(v)
            kwargs[k] = v
        layers.append(cls(**kwargs))
    return FoldedNet(tuple(int(v) for v in doc["input_shape"]), int(doc["time_steps"]), layers, int(doc["n_classes"]))
