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
from typing import List, Union

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


FoldedLayer = Union[FoldedConv, FoldedPool, FoldedFlatten, FoldedLinear, FoldedStreamConv, FoldedStreamLif, FoldedGlobalPool]


@dataclass(frozen=True)
class FoldedNet:
    input_shape: tuple  # (C, H, W)
    time_steps: int
    layers: List[FoldedLayer]
    n_classes: int
