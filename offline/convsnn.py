"""Convolutional SNNs: a VGG-style and a pre-activation ResNet-style network, and ``fold``.

Neuron (per element, units of time steps; the same equations as ``offline/folded.py``)::

    mem = decay * mem + current          decay = 1 - 1/tau (LIF), 1.0 (IF)
    s   = H(mem - threshold)             H: Heaviside; backward: sigmoid surrogate
    mem = mem * (1 - s)                  hard reset to 0

The surrogate is the derivative of ``sigmoid(alpha * x)`` with alpha = 4 (the SCA paper's).
Direct encoding: the real-valued image is the input current of the stem at each of the ``T``
steps. The output layer is not spiking: its currents are averaged over the ``T`` steps (logits).

Time is folded into the batch for the stateless layers (conv, BatchNorm, pooling: one call on
``T * batch`` samples) and only the neuron loops over steps, so BatchNorm's batch statistics are
taken over time and batch together.

Every spiking conv layer ``c`` multiplies its BatchNorm output by a per-channel ``mask`` (a
buffer of 0/1) *before* the neuron: a pruned channel then carries exactly zero current, never
spikes and its membrane stays 0 (``offline/sca.py``). The masks are what structured pruning
changes; ``offline/sca.py`` shrinks a masked network into a narrower dense one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from .folded import FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv, FoldedStreamLif
from .neurons import _Spike

ARCHS = ("vgg", "resnet")
NEURONS = ("lif", "if")


def _sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Derivative of ``sigmoid(alpha * x)``."""
    sg = torch.sigmoid(alpha * x)
    return alpha * sg * (1 - sg)


def spike_sigmoid(x: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """Heaviside of ``x`` (spike where ``x >= 0``); backward: the sigmoid surrogate."""
    return _Spike.apply(x, _sigmoid_grad, alpha)


def lif_step(current: torch.Tensor, mem: torch.Tensor, decay: float, threshold: float, alpha: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """One step of the hard-reset LIF/IF neuron: returns (spikes, membrane after reset)."""
    mem = decay * mem + current
    s = spike_sigmoid(mem - threshold, alpha)
    return s, mem * (1 - s)


# ----------------------------------------------------------------------------- config


def vgg_plan(in_size: int, width: float = 1.0) -> List[Any]:
    """Default VGG layer plan: channel counts and ``"M"`` (2x2 max pool).

    28x28 (MNIST): 16 (stride 2) | 32 | M | 64 64 | M  -> 64 x 3 x 3 into the classifier.
    8x8 (digits):  16 | 32 | M | 64 64 | M             -> 64 x 2 x 2.

    The stride-2 stem on 28x28 halves the map before the first neuron layer: the neuron loop
    over 16 x 28 x 28 elements was most of the training time on a 2-core CPU.
    """
    base = [16, 32, "M", 64, 64, "M"]
    return [v if v == "M" else max(1, int(round(v * width))) for v in base]


def resnet_plan(in_size: int, width: float = 1.0) -> List[int]:
    """Default ResNet stage widths (one pre-activation block per stage, stride-2 transitions
    between stages): 16, 32 (28x28 -> 14x14) and 16, 32 for 8x8 too."""
    return [max(1, int(round(v * width))) for v in (16, 32)]


@dataclass
class ConvConfig:
    arch: str = "vgg"
    in_channels: int = 1
    in_size: int = 28
    n_classes: int = 10
    # vgg: the layer plan (ints: conv widths, "M": max pool); resnet: stage widths
    plan: List[Any] = field(default_factory=list)
    # resnet only: the block-internal width of each stage's block (what SCA may prune);
    # empty means equal to the stage width
    inner: List[int] = field(default_factory=list)
    stem_stride: int = 0  # 0: 2 for inputs of 16x16 and larger, else 1 (VGG only)
    time_steps: int = 4
    neuron: str = "lif"
    tau: float = 2.0  # LIF: decay = 1 - 1/tau per step (0.5)
    threshold: float = 1.0
    alpha: float = 4.0  # sigmoid surrogate steepness
    width: float = 1.0  # the multiplier the default plan was built with (a record)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelError("arch %r is not one of %s" % (self.arch, ", ".join(ARCHS)))
        if self.neuron not in NEURONS:
            raise ModelError("neuron %r is not one of %s" % (self.neuron, ", ".join(NEURONS)))
        if self.time_steps < 1:
            raise ModelError("time_steps must be at least 1")
        if not self.plan:
            self.plan = vgg_plan(self.in_size, self.width) if self.arch == "vgg" else resnet_plan(self.in_size, self.width)
        if self.stem_stride == 0:
            self.stem_stride = 2 if self.in_size >= 16 and self.arch == "vgg" else 1
        if self.arch == "resnet" and not self.inner:
            self.inner = list(self.plan)

    @property
    def decay(self) -> float:
        return 1.0 if self.neuron == "if" else 1.0 - 1.0 / self.tau

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ConvConfig":
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise ModelError("unknown convsnn config keys: %s" % ", ".join(sorted(unknown)))
        return cls(**d)


# ----------------------------------------------------------------------------- layers


def apply_mask(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``y * mask`` per channel. Backward is straight through (gradient 1 for every channel), so
    a pruned channel's BatchNorm scale still receives ``dL/dgamma`` as if it were present:
    SCA's regrowth score. The forward value is exactly ``y * mask`` (``y - y.detach()`` is 0)."""
    if bool(mask.all()):
        return y
    m = mask[None, :, None, None]
    return y * m + (y - y.detach()) * (1 - m)


class SpikingConv(nn.Module):
    """conv (no bias) -> BatchNorm -> channel mask -> LIF. Input (T*B, C, H, W) -> spikes."""

    def __init__(self, cin: int, cout: int, cfg: ConvConfig, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.register_buffer("mask", torch.ones(cout))
        self.neuron = LifLayer(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(apply_mask(self.bn(self.conv(x)), self.mask))


class _LifSeq(torch.autograd.Function):
    """``lif_step`` over all T steps in one autograd node (the same maths, written out): the
    forward keeps only the membrane before reset ``h_t``; the backward runs BPTT through the
    reset too, exactly what autograd gives for the ``lif_step`` loop (a parity test checks it)::

        dL/dh_t = dL/ds_t * g_t + dL/dm_t * ((1 - s_t) - h_t * g_t),   g_t = surrogate'(h_t - thr)
        dL/dx_t = dL/dh_t,   dL/dm_{t-1} += decay * dL/dh_t
    """

    @staticmethod
    def forward(ctx, cur: torch.Tensor, decay: float, threshold: float, alpha: float):  # type: ignore[override]
        mem = torch.zeros_like(cur[0])
        hs, ss, ms = [], [], []
        for t in range(cur.shape[0]):
            h = mem * decay + cur[t] if decay != 1.0 else mem + cur[t]
            s = (h >= threshold).to(cur.dtype)
            mem = h * (1 - s)
            hs.append(h)
            ss.append(s)
            ms.append(mem)
        h_all = torch.stack(hs)
        ctx.save_for_backward(h_all)
        ctx.decay, ctx.threshold, ctx.alpha = decay, threshold, alpha
        return torch.stack(ss), torch.stack(ms)

    @staticmethod
    def backward(ctx, g_s: torch.Tensor, g_m: torch.Tensor):  # type: ignore[override]
        (h_all,) = ctx.saved_tensors
        grad = torch.empty_like(h_all)
        carry = torch.zeros_like(h_all[0])
        for t in range(h_all.shape[0] - 1, -1, -1):
            h = h_all[t]
            s = (h >= ctx.threshold).to(h.dtype)
            g = _sigmoid_grad(h - ctx.threshold, ctx.alpha)
            gm = g_m[t] + carry
            gh = g_s[t] * g + gm * ((1 - s) - h * g)
            grad[t] = gh
            carry = ctx.decay * gh
        return grad, None, None, None


class LifLayer(nn.Module):
    """The neuron over time: input currents (T*B, C, ...) -> spikes, same shape.

    With ``record`` set, accumulates the SCA activity ``spike + |membrane after reset|`` per
    channel (summed over time, batch and space) in ``activity_sum`` and the number of summed
    elements per channel in ``activity_count`` (``offline/sca.py`` reads and resets them).
    """

    def __init__(self, cfg: ConvConfig) -> None:
        super().__init__()
        self.T, self.decay, self.threshold, self.alpha = cfg.time_steps, cfg.decay, cfg.threshold, cfg.alpha
        self.record = False
        self.activity_sum: Optional[torch.Tensor] = None
        self.activity_count = 0

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        cur = current.reshape(self.T, -1, *current.shape[1:])
        s, mem = _LifSeq.apply(cur, self.decay, self.threshold, self.alpha)
        if self.record:
            with torch.no_grad():
                a = (s + mem.abs()).transpose(0, 2).reshape(cur.shape[2], -1).sum(1)
            self.activity_sum = a if self.activity_sum is None else self.activity_sum + a
            self.activity_count += cur.numel() // cur.shape[2]
        return s.reshape(current.shape)

    def reset_activity(self) -> None:
        self.activity_sum, self.activity_count = None, 0

    def activity(self) -> torch.Tensor:
        """Mean of ``spike + |membrane|`` per channel over what was recorded."""
        if self.activity_sum is None or self.activity_count == 0:
            raise ModelError("no activity recorded")
        return self.activity_sum / self.activity_count


class PreActBlock(nn.Module):
    """Pre-activation residual block: x + conv2(LIF(mask * BN2(conv1(LIF(BN1(x)))))).

    ``conv1``'s output channels (``inner``) are block-internal: only they are prunable (their
    mask sits after ``bn2``); the residual channels are tied across blocks and never pruned.
    """

    def __init__(self, width: int, inner: int, cfg: ConvConfig) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(width)
        self.lif1 = LifLayer(cfg)
        self.conv1 = nn.Conv2d(width, inner, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.register_buffer("mask", torch.ones(inner))
        self.lif2 = LifLayer(cfg)
        self.conv2 = nn.Conv2d(inner, width, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.lif1(self.bn1(x)))
        h = self.lif2(apply_mask(self.bn2(h), self.mask))
        return x + self.conv2(h)


class Transition(nn.Module):
    """Between stages: BN -> LIF -> stride-2 conv (pre-activation)."""

    def __init__(self, cin: int, cout: int, cfg: ConvConfig) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.lif = LifLayer(cfg)
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.lif(self.bn(x)))


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
        if len(inner) != len(widths):
            raise ModelError("resnet: %d stage widths but %d inner widths" % (len(widths), len(inner)))
        self.stem = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1, bias=False)
        stages: List[nn.Module] = []
        for i, (w, k) in enumerate(zip(widths, inner)):
            if i > 0:
                stages.append(Transition(widths[i - 1], w, cfg))
            stages.append(PreActBlock(w, k, cfg))
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
        return self.classifier(h).reshape(T, B, -1).mean(0)

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
    does dense work; its synaptic operations are its dense MACs. Dense MACs count every
    multiply-accumulate of the layer over the T steps (the stem too: the same image each step).
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
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = out[0].numel() * mod.in_channels * k * samples
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
    shape = cfg.plan if cfg.arch == "vgg" else ["%d(%d)" % (w, k) for w, k in zip(cfg.plan, cfg.inner)]
    return "%s %s, T=%d, %s, %d parameters" % (cfg.arch, "-".join(str(v) for v in shape), cfg.time_steps, cfg.neuron, model.n_parameters())

