"""The layers of the convolutional SNNs (``offline/convsnn.py`` builds the networks from them):
the neuron, the config and default plans, the masked spiking conv, the ResNet blocks.

Neuron (per element, units of time steps; the same equations as ``offline/folded.py``)::

    mem = decay * mem + current          decay = 1 - 1/tau (LIF), 1.0 (IF)
    s   = H(mem - threshold)             H: Heaviside; backward: sigmoid surrogate
    mem = mem * (1 - s)                  hard reset to 0

The surrogate is the derivative of ``sigmoid(alpha * x)`` with alpha = 4 (the SCA paper's).

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

import torch
from torch import nn

from ..errors import ModelError
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


# Larger presets (``preset``): VGG-11/16 and ResNet-18 stages adapted to 28x28 by a stride-2
# stem (28 -> 14) and two pools (14 -> 7 -> 3) instead of VGG's five; the widths are the
# originals' (64 ... 512), scaled by ``width``. ResNet-18: four stages of two pre-activation
# blocks, stride-2 stem (the stream at 14, 7, 4, 2).
PRESETS: Dict[str, Dict[str, Any]] = {
    "vgg11": {"arch": "vgg", "plan": [64, 128, "M", 256, 256, "M", 512, 512, 512, 512]},
    "vgg16": {"arch": "vgg", "plan": [64, 64, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, 512, 512, 512]},
    "resnet18": {"arch": "resnet", "plan": [64, 128, 256, 512], "blocks": 2, "stem_stride": 2},
}


def preset(name: str, width: float = 1.0) -> Dict[str, Any]:
    """``ConvConfig`` keywords of a named preset (``PRESETS``) with its widths times ``width``."""
    if name not in PRESETS:
        raise ModelError("preset %r is not one of %s" % (name, ", ".join(PRESETS)))
    out = dict(PRESETS[name])
    out["plan"] = [v if v == "M" else max(1, int(round(v * width))) for v in out["plan"]]
    out["width"] = width
    return out


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
    stem_stride: int = 0  # 0: 2 for inputs of 16x16 and larger, else 1 (VGG); ResNet: 0 means 1
    blocks: int = 1  # resnet only: pre-activation blocks per stage (``inner`` has one width per block)
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
        if self.blocks < 1:
            raise ModelError("blocks must be at least 1")
        if self.arch == "resnet" and not self.inner:
            self.inner = [int(w) for w in self.plan for _ in range(self.blocks)]

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
        cur = current.reshape(self.T, current.shape[0] // self.T, *current.shape[1:])  # explicit: a rank's shard may be empty
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
