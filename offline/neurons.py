"""The float current-based LIF neuron in torch, and its surrogate gradients.

Discrete equations, units of time steps (the integer twin is ``runtime.neuron.lif_step_int``)::

    syn[t] = alpha * syn[t-1] + i[t]          i: all input currents of the step
    v      = beta  * mem[t-1] + syn[t]
    s[t]   = H(v - threshold)                  H: Heaviside; backward uses a surrogate
    mem[t] = v - threshold * s[t]              (reset "subtract")
           = v * (1 - s[t])                    (reset "zero")

with per-neuron decays ``alpha = exp(-1/tau_syn)``, ``beta = exp(-1/tau_mem)``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Tuple

import torch
from torch import nn


def _fast_sigmoid_grad(x: torch.Tensor, slope: float) -> torch.Tensor:
    """SuperSpike: ``1 / (1 + slope*|x|)**2``."""
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def _arctan_grad(x: torch.Tensor, a: float) -> torch.Tensor:
    """Derivative of ``atan(pi/2 * a * x) / pi``."""
    return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


class _Spike(torch.autograd.Function):
    """Heaviside forward; the surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grad_fn, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.grad_fn, ctx.slope = grad_fn, slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.grad_fn(x, ctx.slope), None, None


SURROGATES = {"fast_sigmoid": (_fast_sigmoid_grad, 25.0), "arctan": (_arctan_grad, 2.0)}


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid") -> torch.Tensor:
    """Heaviside of ``x`` with the named surrogate gradient."""
    grad_fn, slope = SURROGATES[surrogate]
    return _Spike.apply(x, grad_fn, slope)


class Fire(nn.Module):
    """The spike nonlinearity as a module: ``v -> H(v - threshold)`` with the surrogate gradient.

    It holds no state and adds no maths (``lif_step`` calls it where it would call ``spike``); it
    exists so that a model's spikes pass through a module that tools walking ``nn.Module``
    children can hook, as NeuroBench does for activation sparsity (its
    ``add_activation_module(Fire)``, ``tests/test_neurobench.py``)."""

    def __init__(self, threshold: float, surrogate: str = "fast_sigmoid") -> None:
        super().__init__()
        self.threshold, self.surrogate = float(threshold), surrogate

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return spike(v - self.threshold, self.surrogate)


class LifState(NamedTuple):
    syn: torch.Tensor
    mem: torch.Tensor


class LifParams(NamedTuple):
    alpha: torch.Tensor  # (n,) synaptic decay per step
    beta: torch.Tensor  # (n,) membrane decay per step
    threshold: float
    reset_zero: bool
    surrogate: str = "fast_sigmoid"


def lif_step(current: torch.Tensor, state: LifState, p: LifParams,
             fire: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Tuple[torch.Tensor, LifState]:
    """Advance one step: ``current`` (batch, n) -> (spikes (batch, n), new state). ``fire``: a
    ``Fire`` module with ``p``'s threshold and surrogate, when the caller wants the spikes to
    pass through a hookable module (the same values either way)."""
    syn = p.alpha * state.syn + current
    v = p.beta * state.mem + syn
    s = fire(v) if fire is not None else spike(v - p.threshold, p.surrogate)
    mem = v * (1 - s) if p.reset_zero else v - p.threshold * s
    return s, LifState(syn, mem)


def lif_state_zeros(batch: int, n: int, dtype: torch.dtype = torch.float32) -> LifState:
    return LifState(torch.zeros(batch, n, dtype=dtype), torch.zeros(batch, n, dtype=dtype))
