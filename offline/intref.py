"""The offline integer reference: the quantized model simulated densely in torch int64.

It re-derives every integer operation of ``docs/quantization.md`` on its own (dense int64
matrix products, torch shifts and clamps) rather than calling the runtime's event-driven code,
so that a test comparing the two compares two implementations. Only the input encoders are
shared (``runtime.encoders``): they define the events both sides receive.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from ..runtime.bundle import Bundle
from ..runtime.encoders import Encoder
from ..runtime.fixedpoint import DECAY_BITS, INT32_MAX, INT32_MIN, REQUANT_BITS, THRESHOLD


def _rs(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.div(x + (1 << (bits - 1)), 1 << bits, rounding_mode="floor")


def _sat(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, INT32_MIN, INT32_MAX)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())


class IntegerReference:
    """Steps a bundle with dense integer arithmetic; same ``start``/``step`` use as the runtime."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.layers = []
        for layer in bundle.layers:
            self.layers.append(
                dict(
                    w_in=_t(layer.w_in.to_dense()),
                    w_rec=_t(layer.w_rec.to_dense()),
                    a_syn=_t(layer.a_syn), a_mem=_t(layer.a_mem),
                    m_in=_t(layer.m_in), m_rec=_t(layer.m_rec), bias=_t(layer.bias),
                    zero=layer.reset == "zero", n=layer.n,
                )
            )
        ro = bundle.readout
        self.w_out = _t(ro.w)
        self.a_trace = _t(ro.a_trace)
        self.trace_bits = ro.trace_bits
        self.out_scale = torch.from_numpy(ro.w_scale / float(1 << ro.trace_bits))
        self.out_bias = torch.from_numpy(ro.bias.copy())
        self.taps = ro.taps  # a delayed readout reads past traces too (``TraceReadout.delays``)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.batch = batch
        self.encoder = Encoder(self.bundle.encoder, batch)
        self.encoder.reset(first_frame)
        z = lambda n: torch.zeros(batch, n, dtype=torch.int64)  # noqa: E731
        self.syn = [z(l["n"]) for l in self.layers]
        self.mem = [z(l["n"]) for l in self.layers]
        self.spk = [z(l["n"]) for l in self.layers]
        self.trace = z(self.bundle.readout.n_in)
        self.past: List[torch.Tensor] = [self.trace] * max(self.taps)  # [k]: the trace k + 1 steps ago
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self.layers]

    @property
    def spike_counts(self) -> dict:
        return {layer.name: int(sum(int(s.sum()) for s in hist)) for layer, hist in zip(self.bundle.layers, self.spike_history)}

    def get_state(self) -> dict:
        """The state by the step graphs' names, int64 numpy (``Session.get_state``'s form)."""
        out = {}
        for i in range(len(self.layers)):
            out["s%d" % i], out["syn%d" % i], out["mem%d" % i] = (t.numpy().copy() for t in (self.spk[i], self.syn[i], self.mem[i]))
        out["trace"] = self.trace.numpy().copy()
        if self.taps != (0,):
            out["trace_history"] = torch.stack([self.trace] + self.past).numpy().copy()
        return out

    def set_state(self, state: dict) -> None:
        for i in range(len(self.layers)):
            self.spk[i], self.syn[i], self.mem[i] = (_t(state[k % i]) for k in ("s%d", "syn%d", "mem%d"))
        self.trace = _t(state["trace"])
        if self.taps != (0,):
            self.past = [_t(h) for h in np.asarray(state["trace_history"])[1:]]

    def step(self, x: np.ndarray) -> np.ndarray:
        events = torch.from_numpy(self.encoder(np.asarray(x, np.float64).reshape(self.batch, -1)).astype(np.int64))
        for i, l in enumerate(self.layers):
            acc_in = events @ l["w_in"].T
            acc_rec = self.spk[i] @ l["w_rec"].T
            syn = _rs(l["a_syn"] * self.syn[i], DECAY_BITS) + _rs(acc_in * l["m_in"], REQUANT_BITS)
            syn = _sat(syn + _rs(acc_rec * l["m_rec"], REQUANT_BITS) + l["bias"])
            v = _sat(_rs(l["a_mem"] * self.mem[i], DECAY_BITS) + syn)
            s = (v >= THRESHOLD).to(torch.int64)
            v = v * (1 - s) if l["zero"] else v - THRESHOLD * s
            self.syn[i], self.mem[i], self.spk[i] = syn, v, s
            self.spike_history[i].append(s.numpy().astype(bool))
            events = s
        if self.past:
            self.past = [self.trace] + self.past[:-1]
        self.trace = _sat(_rs(self.a_trace * self.trace, DECAY_BITS) + (events << self.trace_bits))
        history = [self.trace] + self.past
        features = torch.cat([history[d] for d in self.taps], dim=1)
        acc = features @ self.w_out.T
        return (acc.to(torch.float64) * self.out_scale + self.out_bias).numpy()
