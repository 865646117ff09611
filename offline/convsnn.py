"""Convolutional SNNs: a VGG-style and a pre-activation ResNet-style network, ``fold`` (their
inference form), ``folded_forward`` and ``count_ops``. The neuron, config and layers they are
built from live in ``offline/convsnn_layers.py`` (re-exported here).

Direct encoding: the real-valued image is the input current of the stem at each of the ``T``
steps. The output layer is not spiking: its currents are averaged over the ``T`` steps (logits).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from .convsnn_layers import (  # noqa: F401  (re-exported: the layers are imported from here too)
    ARCHS,
    NEURONS,
    ConvConfig,
    LifLayer,
    PreActBlock,
    SpikingConv,
    Transition,
    _LifSeq,
    apply_mask,
    lif_step,
    resnet_plan,
    spike_sigmoid,
    vgg_plan,
)
from .workload import conv_dense
from .folded import FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv, FoldedStreamLif, FoldedSumPool


# ----------------------------------------------------------------------------- networks


class ConvSNN(nn.Module):
    """Either architecture, by ``cfg.arch``. ``forward(x)``: images (B, C, H, W) -> logits
    (B, n_classes), the output currents averaged over the T steps."""

    def __init__(self, cfg: ConvConfig) -> None:
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        if cfg.arch == "vgg":
            self._build_vgg(cfg)
        else:
            self._build_resnet(cfg)

    def _build_vgg(self, cfg: ConvConfig) -> None:
        layers: List[nn.Module] = []
        cin, size = cfg.in_channels, cfg.in_size
        for v in cfg.plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                stride = cfg.stem_stride if not layers else 1
                layers.append(SpikingConv(cin, int(v), cfg, stride=stride))
                size = (size - 1) // stride + 1
                cin = int(v)
        if size < 1:
            raise ModelError("plan %s pools a %dx%d input away" % (cfg.plan, cfg.in_size, cfg.in_size))
        self.features = nn.Sequential(*layers)
        self.out_hw = size * size
        self.classifier = nn.Linear(cin * size * size, cfg.n_classes)

    def _build_resnet(self, cfg: ConvConfig) -> None:
        widths, inner = [int(w) for w in cfg.plan], [int(w) for w in cfg.inner]
        if len(inner) != len(widths) * cfg.blocks:
            raise ModelError("resnet: %d stages of %d blocks but %d inner widths" % (len(widths), cfg.blocks, len(inner)))
        self.stem = nn.Conv2d(cfg.in_channels, widths[0], 3, stride=cfg.stem_stride, padding=1, bias=False)
        stages: List[nn.Module] = []
        for i, w in enumerate(widths):
            if i > 0:
                stages.append(Transition(widths[i - 1], w, cfg))
            for b in range(cfg.blocks):
                stages.append(PreActBlock(w, inner[i * cfg.blocks + b], cfg))
        self.stages = nn.Sequential(*stages)
        self.head_bn = nn.BatchNorm2d(widths[-1])
        self.head_lif = LifLayer(cfg)
        self.classifier = nn.Linear(widths[-1], cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = self.cfg.time_steps, x.shape[0]
        x = x.unsqueeze(0).expand(T, *x.shape).reshape(T * B, *x.shape[1:])  # direct encoding
        if self.cfg.arch == "vgg":
            h = self.features(x).flatten(1)
        else:
            h = self.head_lif(self.head_bn(self.stages(self.stem(x))))
            h = h.mean((2, 3))  # global average pool of spikes
        return self.classifier(h).reshape(T, B, self.cfg.n_classes).mean(0)

    def lif_layers(self) -> List[LifLayer]:
        return [m for m in self.modules() if isinstance(m, LifLayer)]

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))


def images(x: Any, cfg: ConvConfig) -> torch.Tensor:
    """Task images (n, H, W), (n, C, H, W) or flattened (n, [steps,] C*H*W) -> (n, C, H, W)."""
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[1:] != (cfg.in_size, cfg.in_size):
        a = a[:, 0]  # (n, steps, features): the repeated frame
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32)).reshape(len(a), cfg.in_channels, cfg.in_size, cfg.in_size)


# ----------------------------------------------------------------------------- folding


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, mask: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray]:
    """BatchNorm (eval: running statistics) and the channel mask folded into the conv before
    it: ``w' = w * s``, ``b' = (beta - mean * s) * mask`` with ``s = gamma / sqrt(var + eps) * mask``."""
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = bn.bias - bn.running_mean * s
        if mask is not None:
            s, b = s * mask, b * mask
        w = conv.weight * s[:, None, None, None]
        if conv.bias is not None:
            b = b + conv.bias * s
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def fold(model: ConvSNN) -> FoldedNet:
    """The inference form (``offline/folded.py``) of a ``ConvSNN``. VGG: BatchNorm (and the
    channel mask) folded into the conv before it. Pre-activation ResNet: the residual stream's
    convs as ``FoldedStreamConv`` (the stem and transitions set it, a block's second conv adds
    to it), each BatchNorm that reads the stream folded into the neuron after it
    (``FoldedStreamLif``), a block's inner BatchNorm and mask into its first conv, and the
    global average pool before the classifier."""
    cfg = model.cfg
    lin = model.classifier
    readout = FoldedLinear(lin.weight.detach().numpy().astype(np.float32), lin.bias.detach().numpy().astype(np.float32), spiking=False)
    shape = (cfg.in_channels, cfg.in_size, cfg.in_size)
    if cfg.arch != "vgg":
        return FoldedNet(shape, cfg.time_steps, _fold_resnet(model) + [readout], cfg.n_classes)
    layers: List[Any] = []
    for m in model.features:
        if isinstance(m, SpikingConv):
            w, b = fold_bn(m.conv, m.bn, m.mask)
            layers.append(FoldedConv(w, b, stride=m.conv.stride[0], padding=1, decay=cfg.decay, threshold=cfg.threshold))
        else:
            layers.append(FoldedPool(2))
    layers.append(FoldedFlatten())
    layers.append(readout)
    return FoldedNet(shape, cfg.time_steps, layers, cfg.n_classes)


def _stream_lif(bn: nn.BatchNorm2d, cfg: ConvConfig) -> FoldedStreamLif:
    """BatchNorm (eval: running statistics) on the stream as the neuron's affine input."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
    return FoldedStreamLif(scale.numpy().astype(np.float32), shift.numpy().astype(np.float32), cfg.decay, cfg.threshold)


def _stream_conv(conv: nn.Conv2d, add: bool) -> FoldedStreamConv:
    if conv.bias is not None:
        raise ModelError("fold: a residual-stream conv has a bias (the network's convs have none)")
    return FoldedStreamConv(conv.weight.detach().numpy().astype(np.float32), int(conv.stride[0]), int(conv.padding[0]), add)


def _fold_resnet(model: ConvSNN) -> List[Any]:
    cfg = model.cfg
    layers: List[Any] = [_stream_conv(model.stem, add=False)]
    for m in model.stages:
        if isinstance(m, Transition):
            layers += [_stream_lif(m.bn, cfg), _stream_conv(m.conv, add=False)]
        else:
            w, b = fold_bn(m.conv1, m.bn2, m.mask)
            layers += [_stream_lif(m.bn1, cfg), FoldedConv(w, b, stride=1, padding=1, decay=cfg.decay, threshold=cfg.threshold),
                       _stream_conv(m.conv2, add=True)]
    return layers + [_stream_lif(model.head_bn, cfg), FoldedGlobalPool()]


def folded_forward(net: FoldedNet, x: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
    """The float semantics of ``FoldedNet`` (step by step, as its docstring says), in torch.

    ``x`` (B, C, H, W). Returns (logits (B, n_classes), spikes of every spiking layer
    (T, B, ...)).
    """
    with torch.no_grad():
        img = torch.as_tensor(np.asarray(x, np.float32))
        mems: Dict[int, torch.Tensor] = {}
        spikes: Dict[int, List[torch.Tensor]] = {}
        logits = 0.0
        for _t in range(net.time_steps):
            h, stream = img, None  # the residual stream of a ResNet (FoldedStreamConv)
            for i, layer in enumerate(net.layers):
                if isinstance(layer, FoldedConv):
                    cur = F.conv2d(h, torch.as_tensor(layer.weight), torch.as_tensor(layer.bias), stride=layer.stride, padding=layer.padding)
                    h = _folded_neuron(i, cur, layer, mems, spikes)
                elif isinstance(layer, FoldedPool):
                    h = F.max_pool2d(h, layer.size)
                elif isinstance(layer, FoldedSumPool):
                    h = F.avg_pool2d(h, layer.kernel, layer.stride)
                    h = h if layer.average else h * (layer.kernel[0] * layer.kernel[1])
                elif isinstance(layer, FoldedFlatten):
                    h = h.flatten(1)
                elif isinstance(layer, FoldedStreamConv):
                    y = F.conv2d(h, torch.as_tensor(layer.weight), stride=layer.stride, padding=layer.padding)
                    h = stream = stream + y if layer.add else y
                elif isinstance(layer, FoldedStreamLif):
                    cur = stream * torch.as_tensor(layer.scale).view(-1, 1, 1) + torch.as_tensor(layer.shift).view(-1, 1, 1)
                    h = _folded_neuron(i, cur, layer, mems, spikes)
                elif isinstance(layer, FoldedGlobalPool):
                    h = h.mean((2, 3))
                else:
                    cur = F.linear(h, torch.as_tensor(layer.weight), torch.as_tensor(layer.bias))
                    h = _folded_neuron(i, cur, layer, mems, spikes) if layer.spiking else cur
            logits = logits + h
        out = (logits / net.time_steps).numpy()
    return out, [torch.stack(spikes[k]).numpy() for k in sorted(spikes)]


def _folded_neuron(i: int, cur: torch.Tensor, layer: Any, mems: Dict[int, torch.Tensor], spikes: Dict[int, List[torch.Tensor]]) -> torch.Tensor:
    mem = mems.get(i, torch.zeros_like(cur)) * layer.decay + cur
    s = (mem >= layer.threshold).to(cur.dtype)
    mems[i] = mem * (1 - s)
    spikes.setdefault(i, []).append(s)
    return s


# ----------------------------------------------------------------------------- counting


def count_ops(model: ConvSNN, x: torch.Tensor, batch_size: int = 500) -> List[Dict[str, Any]]:
    """Per conv/linear layer, per inference (T steps): parameters, dense MACs and synaptic
    operations, measured on images ``x``.

    Synaptic operations: for a layer whose input is spikes, the number of (input spike, synapse)
    pairs, i.e. each spike times its fan-out (output channels x kernel positions it reaches,
    borders included exactly). A layer with a real-valued input (the stem: direct encoding)
    does dense work; its synaptic operations are its dense MACs. Dense MACs are NeuroBench's
    ``Dense``: every weight times every input position it meets over the T steps (the stem too:
    the same image each step), a conv's padding positions left out (they were counted before,
    1.37x NeuroBench's figure on the digits VGG; ``offline/workload.py`` has NeuroBench's other
    workload figures).
    """
    rows: Dict[str, Dict[str, Any]] = {}
    hooks = []

    def hook(name: str, mod: nn.Module):
        def fn(_m: nn.Module, inp: Tuple[torch.Tensor], out: torch.Tensor) -> None:
            xin = inp[0].detach()
            r = rows[name]
            samples = out.shape[0]
            binary = bool(((xin == 0) | (xin == 1)).all())
            if isinstance(mod, nn.Conv2d):
                macs = conv_dense(mod, tuple(xin.shape[-2:]), tuple(out.shape[-2:])) * samples
                if binary:
                    ones = torch.ones(1, 1, *mod.kernel_size)
                    reach = F.conv2d(xin.sum(1, keepdim=True), ones, stride=mod.stride, padding=mod.padding)
                    syn = float(reach.sum()) * mod.out_channels
                else:
                    syn = float(macs)
            else:
                macs = out[0].numel() * mod.in_features * samples
                syn = float((xin != 0).sum()) * mod.out_features if binary else float(macs)
            r["macs"] += macs
            r["synops"] += syn
            r["spiking_input"] = r["spiking_input"] and binary
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            rows[name] = {"layer": name, "params": int(sum(p.numel() for p in mod.parameters())), "macs": 0, "synops": 0.0, "spiking_input": True}
            hooks.append(mod.register_forward_hook(hook(name, mod)))
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
                n += len(x[i : i + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for r in rows.values():
        r["macs"] = int(round(r["macs"] / n))
        r["synops"] = r["synops"] / n
    return list(rows.values())


def describe(model: ConvSNN) -> str:
    cfg = model.cfg
    shape = cfg.plan if cfg.arch == "vgg" else ["%d(%s)" % (w, ",".join(str(k) for k in cfg.inner[i * cfg.blocks : (i + 1) * cfg.blocks]))
                                                for i, w in enumerate(cfg.plan)]
    return "%s %s, T=%d, %s, %d parameters" % (cfg.arch, "-".join(str(v) for v in shape), cfg.time_steps, cfg.neuron, model.n_parameters())
