"""NeuroBench's metrics of a float model (an ``HRSNN`` or a ``ConvSNN``), counted by spikeedge
itself with NeuroBench's definitions and names, so the numbers can be set beside the published
ones (``tests/test_neurobench.py`` runs the ``neurobench`` package on the same models and
checks that both agree).

Definitions (NeuroBench 2.x, ``docs/bench.md`` "NeuroBench's numbers"):

* ``SynapticOperations``, per sample, over every ``nn.Linear``/``nn.Conv2d`` call of the
  forward pass (bias, pooling and normalisation not counted):
  ``Dense``: every weight (zeros included) times every input position the weight really meets
  (a convolution's padding positions are not operations); ``Effective_MACs`` /
  ``Effective_ACs``: only non-zero weight x non-zero input pairs, ACs where the layer's input
  holds only 0 and +-1 (spikes), MACs otherwise (the image of direct encoding, the HRSNN's
  real-valued input and its readout of leaky traces).
* ``ActivationSparsity``: zero outputs / all outputs of the spiking modules (``LifLayer``,
  ``Fire``) over layers, steps and samples.
* ``ParameterCount``: parameters; ``Footprint``: bytes of parameters and buffers (float32 here:
  the int8 bundle's footprint is ``spikeedge info``'s); ``ConnectionSparsity``: zero weights / all
  weights of the linear and conv layers.

How these relate to the runtime's counters (``spikeedge bench``/``profile``): the runtime counts
an HRSNN's input and recurrent operations but not its readout of traces, which NeuroBench does;
``without_readout`` gives the figure comparable with the runtime's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .convsnn_layers import LifLayer
from .neurons import Fire

SPIKING_MODULES = (LifLayer, Fire)


def _valid_taps(size: int, kernel: int, stride: int, padding: int, out: int) -> int:
    """Over the ``out`` output positions of one axis, the kernel taps that land inside the input
    (not on padding), summed."""
    total = 0
    for o in range(out):
        start = o * stride - padding
        total += sum(1 for k in range(kernel) if 0 <= start + k < size)
    return total


def conv_dense(layer: nn.Conv2d, in_hw: Tuple[int, int], out_hw: Tuple[int, int]) -> int:
    """Dense operations of one sample through ``layer``: valid taps x input x output channels."""
    (h, w), (oh, ow) = in_hw, out_hw
    taps = (_valid_taps(h, layer.kernel_size[0], layer.stride[0], layer.padding[0], oh)
            * _valid_taps(w, layer.kernel_size[1], layer.stride[1], layer.padding[1], ow))
    return taps * (layer.in_channels // layer.groups) * layer.out_channels


def _is_spikes(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


class _Counter:
    """Forward hooks on every connection layer and spiking module of ``model``."""

    def __init__(self, model: nn.Module) -> None:
        self.macs = self.acs = self.dense = 0
        self.readout_macs = self.readout_acs = self.readout_dense = 0
        self.zeros = self.outputs = 0
        self.handles: List[Any] = []
        readout = getattr(model, "readout", None)
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                self.handles.append(mod.register_forward_hook(self._layer(mod is readout)))
            elif isinstance(mod, SPIKING_MODULES):
                self.handles.append(mod.register_forward_hook(self._spikes))

    def _layer(self, is_readout: bool):
        def fn(mod: nn.Module, inp: Tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x = inp[0].detach()
            nz_w = (mod.weight.detach() != 0).to(x.dtype)
            nz_x = (x != 0).to(x.dtype)
            if isinstance(mod, nn.Conv2d):
                eff = float(F.conv2d(nz_x, nz_w, None, mod.stride, mod.padding, mod.dilation, mod.groups).sum())
                dense = conv_dense(mod, tuple(x.shape[-2:]), tuple(out.shape[-2:])) * x.shape[0]
            else:
                eff = float((nz_x @ nz_w.T).sum())
                dense = mod.in_features * mod.out_features * (x.numel() // x.shape[-1])
            spikes = _is_spikes(x)
            if is_readout:
                self.readout_dense += dense
                self.readout_acs, self.readout_macs = (self.readout_acs + eff, self.readout_macs) if spikes else (self.readout_acs, self.readout_macs + eff)
            self.dense += dense
            self.acs, self.macs = (self.acs + eff, self.macs) if spikes else (self.acs, self.macs + eff)
        return fn

    def _spikes(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        self.outputs += out.numel()
        self.zeros += int((out == 0).sum())

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def static_metrics(model: nn.Module) -> Dict[str, Any]:
    """``ParameterCount``, ``Footprint`` (bytes, as stored: float32) and ``ConnectionSparsity``."""
    zeros = weights = 0
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            zeros += int((mod.weight == 0).sum())
            weights += mod.weight.numel()
    return {"ParameterCount": int(sum(p.numel() for p in model.parameters())),
            "Footprint": int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))),
            "ConnectionSparsity": zeros / weights if weights else 0.0}


def neurobench_metrics(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> Dict[str, Any]:
    """NeuroBench's static and workload metrics of ``model`` on the samples ``x`` (a ConvSNN:
    images (n, C, H, W); an HRSNN: encoded frames (n, steps, channels)), per sample."""
    was_training = model.training
    model.eval()
    counter = _Counter(model)
    n = len(x)
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                model(x[i: i + batch_size])
    finally:
        counter.close()
        model.train(was_training)
    c = counter
    out = static_metrics(model)
    out["ActivationSparsity"] = 1.0 - (c.outputs - c.zeros) / c.outputs if c.outputs else 0.0
    out["SynapticOperations"] = {"Effective_MACs": c.macs / n, "Effective_ACs": c.acs / n, "Dense": c.dense / n}
    out["without_readout"] = {"Effective_MACs": (c.macs - c.readout_macs) / n, "Effective_ACs": (c.acs - c.readout_acs) / n,
                              "Dense": (c.dense - c.readout_dense) / n}
    out["samples"] = n
    return out
