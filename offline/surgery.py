"""Rebuilding an HRSNN from plain arrays: after pruning (fewer neurons, a new graph, new time
constants) and when one pruned network is reused on a task with other input/output sizes.

Pruning works on numpy arrays (``HrsnnArrays``); ``build_hrsnn`` turns them back into the torch
model, whose ``n_neurons`` is then the number of neurons kept (the network is physically smaller,
not masked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from .hrsnn import HRSNN, HrsnnConfig


@dataclass
class HrsnnArrays:
    """An HRSNN's recurrent part as float64 arrays; ``w_rec[target, source]``, zeros = no synapse."""

    tau_mem: np.ndarray  # (n,)
    tau_syn: np.ndarray  # (n,)
    w_in: np.ndarray  # (n, channels)
    w_rec: np.ndarray  # (n, n)
    bias: np.ndarray  # (n,)

    @property
    def n(self) -> int:
        return int(self.tau_mem.size)

    @property
    def n_synapses(self) -> int:
        return int(np.count_nonzero(self.w_rec))

    def copy(self) -> "HrsnnArrays":
        return HrsnnArrays(*(np.array(a, dtype=np.float64) for a in (self.tau_mem, self.tau_syn, self.w_in, self.w_rec, self.bias)))

    def subset(self, keep: np.ndarray) -> "HrsnnArrays":
        """Only the neurons ``keep`` (indices or a bool mask), their synapses among themselves."""
        keep = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        return HrsnnArrays(self.tau_mem[keep], self.tau_syn[keep], self.w_in[keep], self.w_rec[np.ix_(keep, keep)], self.bias[keep])


def arrays_of(model: HRSNN) -> HrsnnArrays:
    """The model's recurrent part (masked weights) as float64 arrays."""
    with torch.no_grad():
        return HrsnnArrays(
            model.tau_mem.double().numpy().copy(),
            model.tau_syn.double().numpy().copy(),
            model.w_in.double().numpy().copy(),
            model.effective_w_rec().double().numpy().copy(),
            model.bias.double().numpy().copy(),
        )


def build_hrsnn(cfg: HrsnnConfig, arrays: HrsnnArrays) -> HRSNN:
    """A new HRSNN holding ``arrays`` (its mask is the non-zero pattern); readout zeroed."""
    cfg = replace(cfg, n_neurons=arrays.n, n_inputs=arrays.w_in.shape[1] // (2 if cfg.encoder == "delta" else 1))
    model = HRSNN(cfg)
    f32 = torch.float32
    with torch.no_grad():
        model.tau_mem.copy_(torch.as_tensor(arrays.tau_mem, dtype=f32))
        model.tau_syn.copy_(torch.as_tensor(arrays.tau_syn, dtype=f32))
        model.mask.copy_(torch.as_tensor(arrays.w_rec != 0))
        model.w_in.copy_(torch.as_tensor(arrays.w_in, dtype=f32))
        model.w_rec.copy_(torch.as_tensor(arrays.w_rec, dtype=f32))
        model.bias.copy_(torch.as_tensor(arrays.bias, dtype=f32))
    return model


def fit_io(model: HRSNN, n_inputs: int, n_outputs: int, seed: Optional[int] = None) -> HRSNN:
    """The same recurrent network with ``n_inputs`` inputs and a fresh zero readout of
    ``n_outputs``: how one pruned network is trained on several tasks. Input weights are kept
    when the input size matches, else drawn anew as ``HRSNN`` draws them (seeded)."""
    cfg = replace(model.cfg, n_inputs=n_inputs, n_outputs=n_outputs)
    arrays = arrays_of(model)
    if arrays.w_in.shape[1] != cfg.n_channels:
        rng = np.random.default_rng(cfg.seed if seed is None else seed)
        arrays.w_in = rng.normal(0.0, cfg.in_gain * cfg.threshold / math.sqrt(cfg.n_channels), size=(arrays.n, cfg.n_channels))
    return build_hrsnn(cfg, arrays)
