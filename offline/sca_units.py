"""The prunable units of a conv SNN and the physical shrink of a masked one.

A unit is one prunable group of channels (``offline/sca.py`` explains which); ``shrink`` copies
the kept slices into a narrower dense network. Kept apart from the pruning loop because the
export path needs only these two (a shrunk checkpoint is an ordinary ``ConvSNN``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import nn

from ..errors import ModelError
from .convsnn import ConvConfig, ConvSNN, LifLayer, PreActBlock, SpikingConv


@dataclass
class Unit:
    name: str
    conv: nn.Conv2d  # produces the channels
    bn: nn.BatchNorm2d
    lif: LifLayer
    owner: nn.Module  # holds the ``mask`` buffer
    consumer: nn.Module  # conv or linear that reads the channels
    block: int  # consumer input features per channel (linear after flatten: H*W; conv: 1)

    @property
    def mask(self) -> torch.Tensor:
        return self.owner.mask  # type: ignore[return-value]

    @property
    def width(self) -> int:
        return int(self.mask.numel())


def units(model: ConvSNN) -> List[Unit]:
    """The prunable units of ``model`` in network order."""
    out: List[Unit] = []
    if model.cfg.arch == "vgg":
        convs = [(i, m) for i, m in enumerate(model.features) if isinstance(m, SpikingConv)]
        for j, (i, m) in enumerate(convs):
            if j == 0:
                continue  # the stem is never pruned
            if j + 1 < len(convs):
                consumer, block = convs[j + 1][1].conv, 1
            else:
                consumer, block = model.classifier, model.out_hw
            out.append(Unit("features.%d" % i, m.conv, m.bn, m.neuron, m, consumer, block))
    else:
        for i, m in enumerate(model.stages):
            if isinstance(m, PreActBlock):
                out.append(Unit("stages.%d" % i, m.conv1, m.bn2, m.lif2, m, m.conv2, 1))
    return out

# ----------------------------------------------------------------------------- shrinking


def shrink(model: ConvSNN) -> ConvSNN:
    """A narrower dense network equal to the masked ``model``: copies the kept slices (conv
    output filters, BatchNorm parameters and running statistics, the consumer's input
    channels or classifier columns). Eval-mode outputs are identical (``tests/test_sca.py``)."""
    cfg = model.cfg
    us = units(model)
    keep = [torch.nonzero(u.mask).flatten() for u in us]
    if any(len(k) == 0 for k in keep):
        raise ModelError("shrink: a layer has no channel left")
    d = cfg.to_dict()
    if cfg.arch == "vgg":
        plan = list(cfg.plan)
        conv_slots = [i for i, v in enumerate(plan) if v != "M"]
        for j, k in enumerate(keep):
            plan[conv_slots[j + 1]] = len(k)
        d["plan"] = plan
    else:
        d["inner"] = [len(k) for k in keep]
    new = ConvSNN(ConvConfig.from_dict(d))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    names = {id(m): n for n, m in model.named_modules()}
    for u, k in zip(us, keep):
        conv, bn, owner, cons = names[id(u.conv)], names[id(u.bn)], names[id(u.owner)], names[id(u.consumer)]
        state[conv + ".weight"] = state[conv + ".weight"][k]
        for p in ("weight", "bias", "running_mean", "running_var"):
            state["%s.%s" % (bn, p)] = state["%s.%s" % (bn, p)][k]
        state[owner + ".mask"] = state[owner + ".mask"][k]
        w = state[cons + ".weight"]
        if u.block == 1:
            state[cons + ".weight"] = w[:, k]
        else:
            state[cons + ".weight"] = w.reshape(w.shape[0], u.width, u.block)[:, k].reshape(w.shape[0], -1)
    new.load_state_dict(state)
    return new
