"""Neuron dynamics: golden trajectories computed by hand, surrogate gradients, and the
float (torch) and integer (numpy) step functions held together."""

import math

import numpy as np
import pytest
import torch

from spikeedge.offline.neurons import LifParams, LifState, lif_step, spike
from spikeedge.runtime.fixedpoint import THRESHOLD, decay_to_q16
from spikeedge.runtime.neuron import LifIntParams, LifState as IntState, lif_step_int, trace_step_int


def test_float_lif_golden_trajectory_subtract_reset():
    # alpha = 0.5, beta = 0.8, threshold 1, constant current 0.6:
    # t1: syn 0.6, v 0.6 -> no spike; t2: syn 0.9, v 0.48+0.9=1.38 -> spike, mem 0.38
    # t3: syn 1.05, v 0.304+1.05=1.354 -> spike, mem 0.354
    p = LifParams(torch.tensor([0.5]), torch.tensor([0.8]), 1.0, False)
    state = LifState(torch.zeros(1, 1), torch.zeros(1, 1))
    expected = [(0.6, 0.6, 0.0), (0.9, 0.38, 1.0), (1.05, 0.354, 1.0)]
    for syn, mem, s in expected:
        out, state = lif_step(torch.tensor([[0.6]]), state, p)
        assert out.item() == s
        assert state.syn.item() == pytest.approx(syn, abs=1e-6)
        assert state.mem.item() == pytest.approx(mem, abs=1e-6)


def test_float_lif_zero_reset():
    p = LifParams(torch.tensor([0.0]), torch.tensor([0.9]), 1.0, True)
    out, state = lif_step(torch.tensor([[1.5]]), LifState(torch.zeros(1, 1), torch.zeros(1, 1)), p)
    assert out.item() == 1.0 and state.mem.item() == 0.0


def test_surrogate_gradients():
    x = torch.tensor([0.0, 0.5, -0.2], requires_grad=True)
    spike(x, "fast_sigmoid").sum().backward()
    assert torch.allclose(x.grad, 1 / (1 + 25 * x.detach().abs()) ** 2)
    x2 = torch.tensor([0.0, 0.3], requires_grad=True)
    y = spike(x2, "arctan")
    assert y.tolist() == [1.0, 1.0]
    y.sum().backward()
    expected = 1.0 / (1 + (math.pi / 2 * 2.0 * x2.detach()) ** 2)
    assert torch.allclose(x2.grad, expected)


def _int_params(a_syn, a_mem, m_in=1 << 16, reset_zero=False):
    return LifIntParams(decay_to_q16(np.array([a_syn])), decay_to_q16(np.array([a_mem])),
                        np.array([m_in], np.int64), np.array([0], np.int64), np.array([0], np.int32), reset_zero)


def test_integer_lif_golden_trajectory():
    # a_syn = 0.5 (32768), a_mem = 0.75 (49152); input 10000 state units per step (m_in = 1.0 in Q16).
    # t1: syn = 10000, mem = 10000, no spike
    # t2: syn = 5000 + 10000 = 15000; mem = 7500 + 15000 = 22500 >= 16384 -> spike, mem 6116
    # t3: syn = 7500 + 10000 = 17500; mem = 4587 + 17500 = 22087 -> spike, mem 5703
    p = _int_params(0.5, 0.75)
    state = IntState(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32))
    acc = np.array([[10000]], np.int32)
    zero = np.zeros((1, 1), np.int32)
    got = []
    for _ in range(3):
        s, state = lif_step_int(acc, zero, state, p)
        got.append((int(state.syn[0, 0]), int(state.mem[0, 0]), bool(s[0, 0])))
    assert got == [(10000, 10000, False), (15000, 6116, True), (17500, 5703, True)]
    assert state.syn.dtype == np.int32 and state.mem.dtype == np.int32


def test_integer_saturates_instead_of_wrapping():
    p = _int_params(1.0, 1.0)
    state = IntState(np.full((1, 1), 2**31 - 10, np.int32), np.full((1, 1), -(2**31) + 5, np.int32))
    s, state = lif_step_int(np.array([[2**31 - 1]], np.int32), np.zeros((1, 1), np.int32), state, p)
    assert state.syn[0, 0] == 2**31 - 1


def test_rounding_shift_of_negative_values_is_floor_half_up():
    p = _int_params(0.5, 0.0)
    state = IntState(np.array([[-3]], np.int32), np.zeros((1, 1), np.int32))
    _, state = lif_step_int(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32), state, p)
    assert state.syn[0, 0] == -1  # -1.5 rounds half up to -1


def test_trace_step():
    tr = trace_step_int(np.array([[4096]], np.int32), np.array([[1]]), decay_to_q16(np.array([0.5])), 12)
    assert tr[0, 0] == 2048 + 4096


def test_float_and_integer_steps_agree_on_a_population():
    """The same neurons, driven by the same currents, in float and in fixed point: the
    integer membrane tracks the float one within a few LSB and spikes agree almost always."""
    rng = np.random.default_rng(0)
    n, steps = 500, 300
    tau_syn, tau_mem = rng.uniform(1.5, 6, n), rng.uniform(2, 20, n)
    alpha, beta = np.exp(-1 / tau_syn), np.exp(-1 / tau_mem)
    currents = rng.normal(0.08, 0.15, size=(steps, n))
    sigma = 1.0 / THRESHOLD
    p_int = LifIntParams(decay_to_q16(alpha), decay_to_q16(beta), np.full(n, 1 << 16, np.int64),
                         np.zeros(n, np.int64), np.zeros(n, np.int32), False)
    p_f = LifParams(torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64), 1.0, False)
    s_i = IntState(np.zeros((1, n), np.int32), np.zeros((1, n), np.int32))
    s_f = LifState(torch.zeros(1, n, dtype=torch.float64), torch.zeros(1, n, dtype=torch.float64))
    agree, max_diff = [], 0.0
    for t in range(steps):
        acc = np.round(currents[t] / sigma).astype(np.int32)[None]
        spk_i, s_i = lif_step_int(acc, np.zeros((1, n), np.int32), s_i, p_int)
        spk_f, s_f_next = lif_step(torch.tensor(currents[t][None]), s_f, p_f)
        agree.append(np.mean(spk_i == spk_f.numpy().astype(bool)))
        if t < 5:  # before the first threshold crossings the two may differ only by rounding
            max_diff = max(max_diff, float(np.max(np.abs(s_i.mem * sigma - s_f_next.mem.numpy()))))
        s_f = s_f_next
    assert max_diff < 20 * sigma
    assert np.mean(agree) > 0.99
