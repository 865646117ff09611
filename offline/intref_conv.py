"""References for convolutional SNNs: the float forward of a ``FoldedNet`` and the dense integer
reference of a ``ConvBundle``, both in torch.

``folded_forward`` is the float semantics of ``offline/folded.py`` (float64), the yardstick of
the int8 export. ``ConvIntegerReference`` re-derives every integer operation of
``docs/quantization.md`` on its own: int64 ``conv2d`` and matrix products, torch shifts and
clamps, max pooling by ``amax``, sum pooling by a depthwise convolution of ones; it shares nothing with ``runtime/conv_ops.py, runtime/conv_session.py`` but the input encoder
(``runtime.encoders.encode_direct``, which defines the integers both sides receive).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.bundle import SPIKING_KINDS, ConvBundle
from ..runtime.encoders import encode_direct
from ..runtime.fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, THRESHOLD
from .folded import FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv, FoldedStreamLif, FoldedSumPool


def folded_forward(net: FoldedNet, x: np.ndarray, return_spikes: bool = False, stream_peaks: Optional[Dict[int, float]] = None,
                   membranes: Optional[List[List[np.ndarray]]] = None):
    """Logits (N, n_classes) of images ``x`` (N, C, H, W) under the float model, float64.

    With ``return_spikes`` also the spikes of every spiking layer, (T, N, ...) bool each.
    ``stream_peaks``: filled with the largest |stream| after each ``FoldedStreamConv`` (by layer
    index, over every step), the calibration of the stream's integer scale. ``membranes``: a list
    that receives, per step, every spiking layer's membrane after its reset (the state an
    open-loop comparison starts the integer model from).
    """
    img = torch.as_tensor(np.asarray(x, np.float64).reshape((-1,) + tuple(net.input_shape)))
    mems: Dict[int, torch.Tensor] = {}
    spikes: Dict[int, List[np.ndarray]] = {}
    total = None
    with torch.no_grad():
        for _ in range(net.time_steps):
            h, stream = img, None
            for i, layer in enumerate(net.layers):
                if isinstance(layer, FoldedConv):
                    w = torch.as_tensor(np.asarray(layer.weight, np.float64))
                    b = torch.as_tensor(np.asarray(layer.bias, np.float64))
                    h = _neuron(F.conv2d(h, w, b, stride=layer.stride, padding=layer.padding), mems, i, layer)
                elif isinstance(layer, FoldedStreamConv):
                    y = F.conv2d(h, torch.as_tensor(np.asarray(layer.weight, np.float64)), stride=layer.stride, padding=layer.padding)
                    h = stream = stream + y if layer.add else y
                    if stream_peaks is not None:
                        stream_peaks[i] = max(stream_peaks.get(i, 0.0), float(stream.abs().max()))
                    continue
                elif isinstance(layer, FoldedStreamLif):
                    scale = torch.as_tensor(np.asarray(layer.scale, np.float64)).view(-1, 1, 1)
                    shift = torch.as_tensor(np.asarray(layer.shift, np.float64)).view(-1, 1, 1)
                    h = _neuron(stream * scale + shift, mems, i, layer)
                elif isinstance(layer, FoldedGlobalPool):
                    h = h.mean((2, 3))
                elif isinstance(layer, FoldedPool):
                    h = F.max_pool2d(h, layer.size, layer.size)
                elif isinstance(layer, FoldedSumPool):
                    h = F.avg_pool2d(h, layer.kernel, layer.stride)
                    h = h if layer.average else h * (layer.kernel[0] * layer.kernel[1])
                elif isinstance(layer, FoldedFlatten):
                    h = torch.flatten(h, 1)
                elif isinstance(layer, FoldedLinear):
                    w = torch.as_tensor(np.asarray(layer.weight, np.float64))
                    b = torch.as_tensor(np.asarray(layer.bias, np.float64))
                    current = F.linear(h, w, b)
                    if not layer.spiking:
                        total = current if total is None else total + current
                        continue
                    h = _neuron(current, mems, i, layer)
                else:
                    raise TypeError("unknown folded layer %r" % (layer,))
                if i in mems:
                    spikes.setdefault(i, []).append(h.numpy().astype(bool))
            if membranes is not None:
                membranes.append([mems[i].numpy().copy() for i in sorted(mems)])
    logits = (total / net.time_steps).numpy()
    if return_spikes:
        return logits, [np.stack(spikes[i]) for i in sorted(spikes)]
    return logits


def _neuron(current: torch.Tensor, mems: Dict[int, torch.Tensor], i: int, layer) -> torch.Tensor:
    """``mem = decay * mem + current; s = mem >= threshold; mem = 0 where s`` (offline/folded.py)."""
    mem = mems.get(i, torch.zeros_like(current)) * layer.decay + current
    s = (mem >= layer.threshold).to(mem.dtype)
    mems[i] = mem * (1 - s)
    return s


# ----------------------------------------------------------------------------- integer reference


def _rs(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.div(x + (1 << (bits - 1)), 1 << bits, rounding_mode="floor")


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())


class ConvIntegerReference:
    """Steps a ``ConvBundle`` with dense int64 torch arithmetic; same ``start``/``step``/``run``
    use as ``runtime.conv_session.ConvSession``; ``spike_history[k]`` lists the k-th spiking layer's
    spikes (bool numpy) per step."""

    def __init__(self, bundle: ConvBundle) -> None:
        self.bundle = bundle
        self.layers = []
        for layer in bundle.layers:
            d = {"kind": layer.kind, "layer": layer}
            if layer.kind in ("conv_lif", "linear_lif"):
                d.update(w=_t(layer.weight), m=_t(layer.m), bias=_t(layer.bias))
            elif layer.kind == "conv_stream":
                d.update(w=_t(layer.weight), m=_t(layer.m))
            elif layer.kind == "stream_lif":
                d.update(m=_t(layer.m), bias=_t(layer.bias))
            self.layers.append(d)
        ro = bundle.readout
        self.w_out = _t(ro.weight)
        self.acc_scale = torch.from_numpy(ro.acc_scale.copy())
        self.out_bias = torch.from_numpy(ro.bias.copy())

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.batch = batch
        self.mem: Dict[int, torch.Tensor] = {}
        self.total = torch.zeros(batch, self.bundle.readout.n_out, dtype=torch.int64)
        self.steps = 0
        self.spike_history: List[List[np.ndarray]] = [[] for layer in self.layers if layer["kind"] in SPIKING_KINDS]

    @property
    def steps_per_inference(self) -> int:
        return int(self.bundle.time_steps)

    def _spiking(self) -> List[int]:
        return [i for i, d in enumerate(self.layers) if d["kind"] in SPIKING_KINDS]

    @property
    def spike_counts(self) -> Dict[str, int]:
        return {self.layers[i]["layer"].name: int(sum(int(s.sum()) for s in hist)) for i, hist in zip(self._spiking(), self.spike_history)}

    def get_state(self) -> Dict[str, np.ndarray]:
        """Membranes ``mem<k>`` (NCHW, int64) and the readout sum ``total``: the step graphs'
        state (``ConvSession.get_state``'s form)."""
        shapes = self.bundle.shapes()[1:]
        out = {}
        for k, i in enumerate(self._spiking()):
            mem = self.mem.get(i)
            out["mem%d" % k] = mem.numpy().copy() if mem is not None else np.zeros((self.batch,) + tuple(shapes[i]), np.int64)
        out["total"] = self.total.numpy().copy()
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        for k, i in enumerate(self._spiking()):
            self.mem[i] = _t(state["mem%d" % k])
        self.total = _t(state["total"])

    def step(self, x: np.ndarray) -> np.ndarray:
        enc = self.bundle.encoder
        img = np.asarray(x, np.float64).reshape((self.batch,) + tuple(self.bundle.input_shape))
        h = torch.from_numpy(encode_direct(img, enc.scale, enc.bits).astype(np.int64))
        k = 0
        stream = None  # a ResNet's residual stream (int32 values)
        for i, d in enumerate(self.layers):
            layer = d["layer"]
            if d["kind"] == "conv_stream":
                y = _rs(F.conv2d(h, d["w"], stride=layer.stride, padding=layer.padding) * d["m"].view(-1, 1, 1), layer.shift)
                h = stream = torch.clamp(y if layer.mode == "set" else stream + y, INT32_MIN, INT32_MAX)
                continue
            if d["kind"] == "global_sum_pool":
                h = h.sum(dim=(2, 3))
                continue
            if d["kind"] == "maxpool":
                s = layer.size
                b, c, hh, ww = h.shape
                h = h[:, :, : hh // s * s, : ww // s * s].reshape(b, c, hh // s, s, ww // s, s).amax(dim=(3, 5))
                continue
            if d["kind"] == "flatten":
                h = h.reshape(h.shape[0], -1)
                continue
            if d["kind"] == "sum_pool":  # a depthwise int64 convolution with a kernel of ones
                ones = torch.ones(h.shape[1], 1, layer.kernel_h, layer.kernel_w, dtype=torch.int64)
                h = F.conv2d(h, ones, stride=(layer.stride_h, layer.stride_w), groups=h.shape[1])
                continue
            if d["kind"] == "conv_lif":
                acc = F.conv2d(h, d["w"], stride=layer.stride, padding=layer.padding)
                m, bias = d["m"].view(-1, 1, 1), d["bias"].view(-1, 1, 1)
            elif d["kind"] == "stream_lif":
                acc = h  # the stream
                m, bias = d["m"].view(-1, 1, 1), d["bias"].view(-1, 1, 1)
            else:
                acc = h @ d["w"].T
                m, bias = d["m"], d["bias"]
            mem = self.mem.get(i, torch.zeros_like(acc))
            v = _rs(layer.decay * mem, DECAY_BITS) + _rs(acc * m, layer.shift) + bias
            v = torch.clamp(v, INT32_MIN, INT32_MAX)
            s = (v >= THRESHOLD).to(torch.int64)
            self.mem[i] = v * (1 - s)
            self.spike_history[k].append(s.numpy().astype(bool))
            k += 1
            h = s
        self.total += h.reshape(h.shape[0], -1) @ self.w_out.T
        self.steps += 1
        return (self.total.to(torch.float64) * self.acc_scale / self.steps + self.out_bias).numpy()

    def run(self, images: np.ndarray, steps: Optional[int] = None) -> np.ndarray:
        """Outputs (batch, time_steps, n_out) of images (batch, C, H, W)."""
        images = np.asarray(images, np.float64)
        self.start(images.shape[0])
        return np.stack([self.step(images) for _ in range(self.bundle.time_steps if steps is None else steps)], axis=1)
