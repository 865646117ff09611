"""The heterogeneous recurrent SNN (HRSNN): LIF neurons with gamma-distributed time constants
on a small-world recurrent graph, an input encoder, exponential spike traces and a dense readout.

Built from one ``HrsnnConfig`` (stored in every checkpoint and bundle so a model can be rebuilt).
Time constants are in time steps. The recurrent weights are ``w_rec * mask``: the mask holds the
graph (small-world at first, later whatever pruning leaves) and stays fixed during training.

The weights live in standard modules so that tools which walk ``nn.Module`` children (NeuroBench's
hooks, ``tests/test_neurobench.py``) see the network as it is, without an adapter: ``input``
(``nn.Linear``: ``w_in`` and the constant currents ``bias``), ``recurrent`` (``nn.Linear`` without
bias: ``w_rec``, zero wherever ``mask`` is), ``fire`` (the spike nonlinearity, ``neurons.Fire``)
and ``readout`` (``nn.Linear``). ``w_in``, ``w_rec`` and ``bias`` stay as names for those
tensors; checkpoints written before this layout load through ``upgrade_state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .neurons import Fire, LifParams, LifState, lif_state_zeros, lif_step

# state-dict keys of checkpoints written before the weights moved into modules
_OLD_KEYS = {"w_in": "input.weight", "bias": "input.bias", "w_rec": "recurrent.weight"}


@dataclass
class HrsnnConfig:
    n_inputs: int = 1
    n_neurons: int = 500
    n_outputs: int = 1
    encoder: str = "direct"  # direct | rate | delta
    encoder_gain: float = 1.0  # rate: spike probability per unit input
    delta_threshold: float = 0.05  # delta: level spacing in input units
    tau_mem_mean: float = 4.0  # steps; gamma(shape, mean/shape)
    tau_mem_shape: float = 3.0
    tau_syn_mean: float = 2.0
    tau_syn_shape: float = 3.0
    tau_min: float = 1.0  # time constants are clipped below, so decays stay in (0, 1)
    tau_trace: float = 4.0  # decoder's exponential-trace time constant (steps)
    readout_delays: Tuple[int, ...] = (0,)  # the readout reads the traces these many steps ago, side by side
    ws_neighbours: int = 10  # Watts-Strogatz: each neuron's ring neighbours (k)
    ws_rewire: float = 0.2  # Watts-Strogatz rewiring probability
    rec_gain: float = 0.2  # recurrent weights ~ |N(0, (rec_gain * threshold)^2 / k)|, signed by source
    in_gain: float = 0.15  # input weights ~ N(0, (in_gain * threshold)^2 / n_channels)
    bias_mean: float = 0.0  # constant currents ~ N(bias_mean, bias_std^2) * threshold
    bias_std: float = 0.05
    inhibitory_fraction: float = 0.5  # sources whose outgoing weights are all negative
    threshold: float = 1.0
    reset: str = "subtract"  # subtract | zero
    surrogate: str = "fast_sigmoid"  # fast_sigmoid | arctan
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "HrsnnConfig":
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        out.readout_delays = tuple(int(v) for v in out.readout_delays)  # JSON gives a list
        return out

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def n_channels(self) -> int:
        """Input channels after encoding (delta coding gives an up and a down channel)."""
        return self.n_inputs * (2 if self.encoder == "delta" else 1)


def gamma_time_constants(rng: np.random.Generator, n: int, mean: float, shape: float, tau_min: float) -> np.ndarray:
    """``n`` time constants from a gamma distribution with the given mean and shape."""
    return np.maximum(rng.gamma(shape, mean / shape, size=n), tau_min)


def small_world_mask(n: int, k: int, p: float, seed: int) -> np.ndarray:
    """Directed small-world graph: an undirected Watts-Strogatz graph, each edge both ways.

    Returns a bool ``(n, n)`` mask ``[target, source]`` without self-connections.
    """
    import networkx as nx

    k = max(2, min(k, n - 1 - (n - 1) % 2))
    g = nx.watts_strogatz_graph(n, k, p, seed=seed)
    mask = np.zeros((n, n), bool)
    edges = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    mask[edges[:, 0], edges[:, 1]] = True
    mask[edges[:, 1], edges[:, 0]] = True
    np.fill_diagonal(mask, False)
    return mask


class HRSNN(nn.Module):
    """The float model. Inputs are encoded frames (batch, steps, channels) - see ``encode``."""

    def __init__(self, cfg: HrsnnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        n, c, thr = cfg.n_neurons, cfg.n_channels, cfg.threshold
        tau_mem = gamma_time_constants(rng, n, cfg.tau_mem_mean, cfg.tau_mem_shape, cfg.tau_min)
        tau_syn = gamma_time_constants(rng, n, cfg.tau_syn_mean, cfg.tau_syn_shape, cfg.tau_min)
        mask = small_world_mask(n, cfg.ws_neighbours, cfg.ws_rewire, cfg.seed) if n > 2 else ~np.eye(n, dtype=bool)
        k = max(1.0, mask.sum(axis=1).mean())
        w_rec = rng.normal(0.0, cfg.rec_gain * thr / math.sqrt(k), size=(n, n))
        inhibitory = rng.random(n) < cfg.inhibitory_fraction
        w_rec[:, inhibitory] = -np.abs(w_rec[:, inhibitory])
        w_rec[:, ~inhibitory] = np.abs(w_rec[:, ~inhibitory])
        w_in = rng.normal(0.0, cfg.in_gain * thr / math.sqrt(c), size=(n, c))
        bias = rng.normal(cfg.bias_mean * thr, cfg.bias_std * thr, size=n)
        f32 = torch.float32
        self.register_buffer("tau_mem", torch.tensor(tau_mem, dtype=f32))
        self.register_buffer("tau_syn", torch.tensor(tau_syn, dtype=f32))
        self.register_buffer("mask", torch.tensor(mask))
        self.input = nn.Linear(c, n)
        self.recurrent = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            self.input.weight.copy_(torch.tensor(w_in, dtype=f32))
            self.input.bias.copy_(torch.tensor(bias, dtype=f32))
            self.recurrent.weight.copy_(torch.tensor(w_rec * mask, dtype=f32))
        self.fire = Fire(thr, cfg.surrogate)
        self.set_readout_delays(cfg.readout_delays)

    @property
    def w_in(self) -> nn.Parameter:
        """Input weights ``(n, channels)`` (``input.weight``)."""
        return self.input.weight

    @property
    def bias(self) -> nn.Parameter:
        """Constant input currents ``(n,)`` (``input.bias``)."""
        return self.input.bias

    @property
    def w_rec(self) -> nn.Parameter:
        """Recurrent weights ``[target, source]`` (``recurrent.weight``), zero outside ``mask``."""
        return self.recurrent.weight

    @staticmethod
    def upgrade_state_dict(state: Dict[str, Any]) -> Dict[str, Any]:
        """A state dict of the earlier layout (``w_in``, ``bias``, ``w_rec`` as the model's own
        parameters) under the current names; a current one unchanged."""
        return {_OLD_KEYS.get(k, k): v for k, v in state.items()}

    def set_readout_delays(self, delays: Tuple[int, ...]) -> None:
        """A readout over the traces ``delays`` steps ago, side by side: a fresh zero one when
        its size changes, else the same module (its weights are the caller's to set)."""
        delays = tuple(sorted({int(d) for d in delays}))
        if not delays or delays[0] < 0:
            raise ValueError("readout delays must be one or more steps >= 0, got %s" % (delays,))
        self.cfg.readout_delays = delays
        old = getattr(self, "readout", None)
        if old is not None and old.in_features == self.cfg.n_neurons * len(delays) and old.out_features == self.cfg.n_outputs:
            return  # already this shape: keep the module (an optimizer may hold its parameters)
        self.readout = nn.Linear(self.cfg.n_neurons * len(delays), self.cfg.n_outputs)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def readout_features(self, traces: Any) -> Any:
        """What the readout reads from traces (batch, steps, n): with delays, the traces ``d``
        steps earlier side by side (zero before the start); torch or numpy in, same out."""
        delays = self.cfg.readout_delays
        if delays == (0,):
            return traces
        cat = torch.cat if isinstance(traces, torch.Tensor) else np.concatenate
        parts = []
        for d in delays:
            if d == 0:
                parts.append(traces)
            else:
                pad = traces[:, :1] * 0
                pad = cat([pad] * min(d, traces.shape[1]), 1)
                parts.append(cat([pad, traces[:, : max(0, traces.shape[1] - d)]], 1))
        return cat(parts, -1)

    # -- dynamics -----------------------------------------------------------------------------

    def lif_params(self) -> LifParams:
        cfg = self.cfg
        return LifParams(
            torch.exp(-1.0 / self.tau_syn), torch.exp(-1.0 / self.tau_mem), cfg.threshold, cfg.reset == "zero", cfg.surrogate
        )

    @property
    def trace_decay(self) -> float:
        return math.exp(-1.0 / self.cfg.tau_trace)

    def effective_w_rec(self) -> torch.Tensor:
        """Recurrent weights with the fixed sparsity mask applied."""
        return self.w_rec * self.mask

    def initial_state(self, batch: int) -> Tuple[LifState, torch.Tensor, torch.Tensor]:
        """(neuron state, last spikes, traces) at rest."""
        n = self.cfg.n_neurons
        return lif_state_zeros(batch, n), torch.zeros(batch, n), torch.zeros(batch, n)

    def step(self, frame: torch.Tensor, carry: Tuple[LifState, torch.Tensor, torch.Tensor], params: Optional[LifParams] = None,
             w_rec_t: Optional[torch.Tensor] = None):
        """One step: ``frame`` (batch, channels) -> (spikes, traces, new carry). ``w_rec_t``: the
        masked recurrent weights, transposed, when the caller computed them once for many steps."""
        state, spikes, trace = carry
        params = params or self.lif_params()
        rec = self.recurrent(spikes) if w_rec_t is None else spikes @ w_rec_t
        current = self.input(frame) + rec
        spikes, state = lif_step(current, state, params, self.fire)
        trace = self.trace_decay * trace + spikes
        return spikes, trace, (state, spikes, trace)

    def forward(self, frames: torch.Tensor, carry=None, record_spikes: bool = False):
        """Run ``frames`` (batch, steps, channels): returns (outputs, traces, spikes or None, carry).
        A delayed readout sees the traces of this call only (zeros before its first step)."""
        batch, steps, _ = frames.shape
        carry = carry if carry is not None else self.initial_state(batch)
        params = self.lif_params()
        traces, spikes_rec = [], []
        for t in range(steps):
            spikes, trace, carry = self.step(frames[:, t], carry, params)
            traces.append(trace)
            if record_spikes:
                spikes_rec.append(spikes)
        traces_t = torch.stack(traces, dim=1)
        outputs = self.readout(self.readout_features(traces_t))
        return outputs, traces_t, (torch.stack(spikes_rec, dim=1) if record_spikes else None), carry

    # -- counts ---------------------------------------------------------------------------------

    def n_synapses(self) -> Dict[str, int]:
        """Non-zero weights: input, recurrent, readout."""
        return {
            "input": int((self.w_in != 0).sum()),
            "recurrent": int((self.effective_w_rec() != 0).sum()),
            "readout": int((self.readout.weight != 0).sum()),
        }
