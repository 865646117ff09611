"""A NIR chain with convolutions, pooling or several spiking layers as a ``FoldedNet``
(``offline/folded.py``), the inference form the conv exporter quantizes.

Each ``Conv1d|Conv2d|Affine|Linear`` followed by a ``LIF|IF|Threshold`` becomes one spiking
layer, the neuron's gain, threshold and leak drive folded into its weights and bias (one decay
per layer, gains per output channel, the threshold kept when the layer has one, else folded in too); ``SumPool2d``/``AvgPool2d`` and ``Flatten`` map one to one;
the last ``Affine|Linear`` is the readout (a graph that ends at a spiking layer gets an identity
readout of its spikes). A 1-D input is a (n, 1, 1) image flattened first; ``Conv1d`` runs as a
``1 x k`` 2-D convolution. ``CubaLIF`` has no place here (these layers have no synaptic
current); it is imported as an HRSNN's single layer.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ..errors import ModelError
from .folded import FoldedConv, FoldedFlatten, FoldedLinear, FoldedNet, FoldedSumPool
from .nir_graph import Link
from .nir_hrsnn import THRESHOLD_NOTE
from .nir_neurons import neuron, weights

SPIKING = ("LIF", "IF", "Threshold")
KNOWN = SPIKING + ("CubaLIF", "LI", "I", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten")


def _pair(v: Any, name: str, link: Link) -> Tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2:
        raise ModelError("node %r (%s): %s %s is not one or two integers" % (link.name, link.type, name, list(a)))
    return int(a[0]), int(a[1])


def _per_channel(a: np.ndarray, c: int, link: Link, what: str) -> np.ndarray:
    """One value per output channel of an array of the neuron node's shape."""
    a = np.asarray(a, np.float64)
    if a.size == 1:
        return np.full(c, float(a.reshape(-1)[0]))
    if a.size % c:
        raise ModelError("node %r (%s): %s has %d values for %d channels" % (link.name, link.type, what, a.size, c))
    per = a.reshape(c, -1)
    if np.any(per != per[:, :1]):
        raise ModelError("node %r (%s): %s differs within a channel; a conv layer takes one value per channel" % (link.name, link.type, what))
    return per[:, 0].copy()


def _conv(link: Link, shape: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray, int, int, Tuple[int, ...]]:
    """(weight (O, C, kh, kw), bias, stride, padding, output shape) of a Conv1d/Conv2d node."""
    node = link.node
    w, b = weights(link)
    one_d = link.type == "Conv1d"
    if one_d:
        w = w[:, :, None, :]
    if int(getattr(node, "groups", 1)) != 1 or any(d != 1 for d in _pair(getattr(node, "dilation", 1), "dilation", link)):
        raise ModelError("node %r (%s): groups and dilation must be 1 (spikeedge's conv layers are dense and undilated)" % (link.name, link.type))
    sh, sw = _pair(node.stride, "stride", link)  # Conv1d: one stride, also along its height of 1 (harmless)
    kh, kw = w.shape[2], w.shape[3]
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            ph = pw = 0
        elif pad == "same" and sh == sw == 1 and kh % 2 and kw % 2:
            ph, pw = kh // 2, kw // 2
        else:
            raise ModelError("node %r (%s): padding %r needs stride 1 and odd kernels" % (link.name, link.type, pad))
    else:
        ph, pw = _pair(pad, "padding", link)
    if sh != sw or ph != pw:
        raise ModelError("node %r (%s): stride %s and padding %s differ between height and width; spikeedge's conv layers take one "
                         "of each" % (link.name, link.type, (sh, sw), (ph, pw)))
    if one_d and pw:
        raise ModelError("node %r (Conv1d): padding %d; spikeedge's conv layers pad height and width alike, so a Conv1d (height 1) "
                         "is imported without padding" % (link.name, pw))
    if len(shape) != 3 or shape[0] != w.shape[1]:
        raise ModelError("node %r (%s): takes %d channels, its input has shape %s" % (link.name, link.type, w.shape[1], list(shape)))
    out = (w.shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1)
    if min(out[1:]) < 1:
        raise ModelError("node %r (%s): the kernel does not fit its %s input" % (link.name, link.type, list(shape)))
    return w, b, sh, ph, out


def to_folded(links: List[Link], dt: float, in_shape: Tuple[int, ...], time_steps: int) -> Tuple[FoldedNet, List[str]]:
    """The FoldedNet of a chain (module docstring) and the notes on differences."""
    if time_steps < 1:
        raise ModelError("time steps must be >= 1")
    notes = [THRESHOLD_NOTE]
    layers: List[Any] = []
    if len(in_shape) == 1:
        shape: Tuple[int, ...] = (int(in_shape[0]), 1, 1)
        image = shape
        layers.append(FoldedFlatten())
        shape = (shape[0],)
    elif len(in_shape) == 2:  # Conv1d input (C, N)
        image = shape = (int(in_shape[0]), 1, int(in_shape[1]))
    elif len(in_shape) == 3:
        image = shape = tuple(int(v) for v in in_shape)
    else:
        raise ModelError("the input has shape %s; spikeedge takes (n,), (C, N) or (C, H, W)" % list(in_shape))
    readout = None
    i = 0
    while i < len(links):
        ln = links[i]
        nxt = links[i + 1] if i + 1 < len(links) else None
        if ln.type in ("Conv1d", "Conv2d", "Affine", "Linear"):
            if nxt is None or nxt.type in ("LI", "I"):
                if nxt is not None and i + 2 < len(links):
                    raise ModelError("node %r (%s): a non-spiking %s is imported only as the readout, the last node" % (nxt.name, nxt.type, nxt.type))
                if ln.type not in ("Affine", "Linear"):
                    raise ModelError("node %r (%s): the last weighted node must be an Affine or Linear (the readout)" % (ln.name, ln.type))
                readout = _readout(ln, nxt, shape, dt, notes)
                i = len(links)
                break
            if nxt.type not in SPIKING:
                if nxt.type not in KNOWN:
                    raise ModelError("node %r (%s): spikeedge has no layer for this node type" % (nxt.name, nxt.type))
                why = "no synaptic current in these layers; a CubaLIF is imported as an HRSNN's one layer" if nxt.type == "CubaLIF" else "a weighted node must feed a LIF, IF or Threshold"
                raise ModelError("node %r (%s) after %r: %s" % (nxt.name, nxt.type, ln.name, why))
            nrn = neuron(nxt, dt)
            if ln.type in ("Conv1d", "Conv2d"):
                w, b, stride, pad, out = _conv(ln, shape)
                c = w.shape[0]
            else:
                w, b = weights(ln)
                if shape != (w.shape[1],):
                    raise ModelError("node %r (%s): takes %d inputs, its input has shape %s (a Flatten is missing?)" % (ln.name, ln.type, w.shape[1], list(shape)))
                c, out = w.shape[0], (w.shape[0],)
            beta = np.unique(np.asarray(nrn.beta).reshape(-1))
            if beta.size != 1:
                raise ModelError("node %r (%s): %d different decays; spikeedge's feed-forward layers take one per layer" % (nxt.name, nxt.type, beta.size))
            g, dr, threshold = nrn.normalised(uniform=True)
            gain, drive = _per_channel(g, c, nxt, "the gain"), _per_channel(dr, c, nxt, "v_leak")
            wf = (w * gain.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            bf = (b * gain + drive).astype(np.float32)
            if ln.type in ("Conv1d", "Conv2d"):
                layers.append(FoldedConv(wf, bf, stride=stride, padding=pad, decay=float(beta[0]), threshold=threshold))
            else:
                layers.append(FoldedLinear(wf, bf, spiking=True, decay=float(beta[0]), threshold=threshold))
            shape = out
            i += 2
            continue
        if ln.type in ("SumPool2d", "AvgPool2d"):
            if np.any(np.asarray(ln.node.padding) != 0):
                raise ModelError("node %r (%s): padding is not 0; spikeedge pools without padding" % (ln.name, ln.type))
            k, s = _pair(ln.node.kernel_size, "kernel_size", ln), _pair(ln.node.stride, "stride", ln)
            if len(shape) != 3:
                raise ModelError("node %r (%s): pools a (C, H, W) input, it gets %s" % (ln.name, ln.type, list(shape)))
            shape = (shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1)
            if min(shape[1:]) < 1:
                raise ModelError("node %r (%s): the window is larger than its input" % (ln.name, ln.type))
            layers.append(FoldedSumPool(k, s, average=ln.type == "AvgPool2d"))
        elif ln.type == "Flatten":
            start, end = int(ln.node.start_dim), int(ln.node.end_dim)
            if start not in (0, -len(shape)) or end not in (-1, len(shape) - 1):
                raise ModelError("node %r (Flatten): dimensions %d..%d of %s; spikeedge flattens a whole (C, H, W) sample" % (ln.name, start, end, list(shape)))
            if len(shape) == 3:
                layers.append(FoldedFlatten())
                shape = (int(np.prod(shape)),)
        else:
            why = "no synaptic current in these layers; a CubaLIF is imported as an HRSNN's one layer" if ln.type == "CubaLIF" else \
                "a neuron must follow an Affine, Linear or Conv node" if ln.type in SPIKING + ("LI", "I") else "spikeedge has no layer for this node type"
            raise ModelError("node %r (%s): %s" % (ln.name, ln.type, why))
        i += 1
    if readout is None:  # the graph ends at a spiking layer (or pooling of one): read out its spikes
        if len(shape) == 3:
            layers.append(FoldedFlatten())
            shape = (int(np.prod(shape)),)
        n = shape[0]
        readout = FoldedLinear(np.eye(n, dtype=np.float32), np.zeros(n, np.float32), spiking=False)
        notes.append("the graph ends at %r: the readout is the identity, its outputs the mean spike count over the steps so far" % links[-1].name)
    if not any(isinstance(layer, (FoldedConv,)) or (isinstance(layer, FoldedLinear) and layer.spiking) for layer in layers):
        raise ModelError("the graph has no spiking layer")
    return FoldedNet(image, int(time_steps), layers + [readout], int(readout.weight.shape[0])), notes


def _readout(ln: Link, nxt: Any, shape: Tuple[int, ...], dt: float, notes: List[str]) -> FoldedLinear:
    w, b = weights(ln)
    if shape != (w.shape[1],):
        raise ModelError("node %r (%s): takes %d inputs, its input has shape %s (a Flatten is missing?)" % (ln.name, ln.type, w.shape[1], list(shape)))
    if nxt is None:
        notes.append("readout %r: NIR's output is its current at each step; spikeedge reports the mean over the steps so far (the logits)" % ln.name)
    elif nxt.type == "I":
        g = np.unique(np.asarray(neuron(nxt, dt).gain).reshape(-1))
        if g.size != 1:
            raise ModelError("node %r (I): the readout takes one gain, this node has %d" % (nxt.name, g.size))
        w, b = w * g[0], b * g[0]
        notes.append("readout %r -> %r (I): spikeedge reports the integral divided by the number of steps (the same argmax)" % (ln.name, nxt.name))
    else:
        notes.append("readout %r -> %r (LI): approximated by the mean of its input current over the steps; NIR's LI weights recent "
                      "steps more (decay %.4g per step)" % (ln.name, nxt.name, float(np.max(neuron(nxt, dt).beta))))
    return FoldedLinear(w.astype(np.float32), b.astype(np.float32), spiking=False)
