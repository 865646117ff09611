"""The runtime's in-place kernels equal the pure integer step functions they replace.

``runtime.kernels`` computes the integer LIF and trace steps in float64 with preallocated
buffers, skipping the int32 clip where bounds prove it never fires; ``runtime.neuron`` is the
specification. These tests drive both with the same inputs, including accumulations large
enough to saturate, IF neurons (decay 1, no bound) and states loaded from outside the bounds.
"""

import numpy as np
import pytest

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime import engine
from spikeedge.runtime.encoders import Encoder, encode_rate
from spikeedge.runtime.fixedpoint import INT32_MAX
from spikeedge.runtime.kernels import LifKernel, TraceKernel, fits_float64
from spikeedge.runtime.neuron import LifIntParams, LifState, lif_state_zeros, lif_step_int, trace_step_int


@pytest.fixture(autouse=True)
def numpy_core(monkeypatch):
    """These tests hold the numpy core's kernels and hybrid; the compiled core's are in
    tests/test_compiled_core.py."""
    monkeypatch.setenv("SPIKEEDGE_CORE", "numpy")


def _params(rng, n, reset_zero, decay_max=65535):
    return LifIntParams(
        rng.integers(0, decay_max + 1, n).astype(np.int32), rng.integers(0, decay_max + 1, n).astype(np.int32),
        rng.integers(1, 1 << 18, n).astype(np.int64), rng.integers(1, 1 << 18, n).astype(np.int64),
        rng.integers(-3000, 3000, n).astype(np.int32), reset_zero)


def _compare(p, batch, accs, kernel):
    state = lif_state_zeros(batch, p.a_syn.shape[0])
    for acc_in, acc_rec in accs:
        want_s, state = lif_step_int(np.zeros_like(acc_rec) if acc_in is None else acc_in, acc_rec, state, p)
        kernel.acc_in[...] = 0 if acc_in is None else acc_in
        kernel.acc_rec[...] = acc_rec
        got_s = kernel.step(inputs=acc_in is not None or bool(acc_rec.any()))
        assert np.array_equal(got_s, want_s)
        got = kernel.get()
        assert np.array_equal(got.syn, state.syn) and np.array_equal(got.mem, state.mem)
    return state


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("reset_zero", [False, True])
def test_lif_kernel_equals_lif_step_int_with_saturation(batch, reset_zero):
    """Unbounded accumulations and IF neurons (decay exactly 1): the clip is on and fires."""
    rng = np.random.default_rng(batch + 2 * reset_zero)
    n = 64
    p = _params(rng, n, reset_zero, decay_max=65536)
    p = p._replace(a_syn=np.where(np.arange(n) % 4 == 0, 65536, p.a_syn).astype(np.int32))
    kernel = LifKernel(p, batch)
    assert kernel.saturate
    big = [rng.integers(-(1 << 30), 1 << 30, (batch, n)).astype(np.int32) for _ in range(40)]
    accs = [(None if t % 7 == 3 else big[t], big[(t + 1) % 40] // 3) for t in range(40)]
    state = _compare(p, batch, accs, kernel)
    assert (np.abs(state.syn.astype(np.int64)) == INT32_MAX).any() or (state.syn == -(1 << 31)).any(), "the clip must have fired"


@pytest.mark.parametrize("reset_zero", [False, True])
def test_lif_kernel_without_clip_inside_its_bounds(reset_zero):
    """With bounded accumulations and decays below 1 the clip is provably idle and skipped."""
    rng = np.random.default_rng(7)
    n = 200
    p = _params(rng, n, reset_zero, decay_max=int(0.99 * 65536))
    kernel = LifKernel(p, 1, max_abs_acc_in=2000.0, max_abs_acc_rec=5000.0)
    assert not kernel.saturate and kernel.syn_bound < INT32_MAX
    accs = [(rng.integers(-2000, 2001, (1, n)).astype(np.int32), rng.integers(-5000, 5001, (1, n)).astype(np.int32)) for _ in range(300)]
    state = _compare(p, 1, accs, kernel)
    assert np.abs(state.syn).max() > 0


def test_a_state_outside_the_bounds_turns_the_clip_back_on():
    rng = np.random.default_rng(3)
    p = _params(rng, 10, False, decay_max=int(0.99 * 65536))
    kernel = LifKernel(p, 1, 100.0, 100.0)
    assert not kernel.saturate
    outside = LifState(np.full((1, 10), INT32_MAX, np.int32), np.full((1, 10), -(1 << 31), np.int32))
    kernel.set(outside, np.zeros((1, 10)))
    assert kernel.saturate
    want_s, want = lif_step_int(np.full((1, 10), 100, np.int32), np.full((1, 10), 100, np.int32), outside, p)
    kernel.acc[...] = 100
    got_s = kernel.step()
    assert np.array_equal(got_s, want_s) and np.array_equal(kernel.get().syn, want.syn) and np.array_equal(kernel.get().mem, want.mem)


@pytest.mark.parametrize("batch", [1, 2])
def test_trace_kernel_equals_trace_step_int(batch):
    rng = np.random.default_rng(batch)
    a = rng.integers(0, 65536, 50).astype(np.int32)
    kernel = TraceKernel(a, 12, batch)
    assert not kernel.saturate
    tr = np.zeros((batch, 50), np.int32)
    for _ in range(200):
        s = rng.random((batch, 50)) < 0.3
        tr = trace_step_int(tr, s.astype(np.int32), a, 12)
        assert np.array_equal(kernel.step(s), tr)


def test_rate_encoder_in_place_equals_encode_rate():
    spec = fmt.RateEncoder(30, 1.7, 11)
    enc = Encoder(spec, 2)
    rng = np.random.default_rng(spec.seed)
    xs = np.random.default_rng(0).normal(0.3, 0.5, (100, 2, 30))  # gains beyond [0, 1] both ways
    for x in xs:
        assert np.array_equal(enc.encode_into(x), encode_rate(x, spec.gain, rng).astype(bool))


def test_fits_float64_guards_the_exact_range():
    assert fits_float64(1e6, np.array([1 << 20]))
    assert not fits_float64(1e12, np.array([1 << 31]))


def test_the_integer_fallback_when_float64_is_not_exact(monkeypatch):
    """Where a product could leave float64's exact range the session keeps ``lif_step_int``;
    both paths give the same spikes and outputs."""
    from test_runtime_exact import random_model, run_both

    from spikeedge.offline.quantize import quantize_hrsnn

    model = random_model("direct", "subtract", n=40)
    xs = np.random.default_rng(4).random((2, 300, 3))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, xs[0])))
    (s_fast, y_fast, session), (s_ref, y_ref) = run_both(bundle, xs)
    assert session.layers[0].kernel is not None
    monkeypatch.setattr(engine, "fits_float64", lambda *a: False)
    (s_int, y_int, session), _ = run_both(bundle, xs)
    assert session.layers[0].kernel is None
    assert np.array_equal(s_int, s_ref) and np.array_equal(y_int, y_ref)
    assert np.array_equal(s_fast, s_ref) and np.array_equal(y_fast, y_ref)


# ----------------------------------------------------------------------------- the hybrid accumulation


@pytest.mark.parametrize("batch", [1, 4])
def test_dense_and_event_paths_give_the_same_integers(batch):
    from spikeedge.runtime.accumulate import EventColumns, accumulate_events

    rng = np.random.default_rng(batch)
    w = fmt.SparseMatrix.from_dense(np.where(rng.random((90, 300)) < 0.1, rng.integers(-127, 128, (90, 300)), 0).astype(np.int8))
    cols = EventColumns(w, 1)
    assert cols.rows_f32 is not None
    for rate in (0.0, 0.02, 0.3, 1.0):
        ev = rng.random((batch, 300)) < rate
        want = np.zeros((batch, 90), np.int32)
        ops = accumulate_events(w, ev.astype(np.int32), want)
        for switch in (-1, 301):  # forced dense, forced event
            cols.switch_k = switch
            got = np.full((batch, 90), 7.0)
            assert cols.accumulate(ev, got) == ops
            assert np.array_equal(got, want)
    assert cols.steps["dense"] > 0 and cols.steps["event"] > 0


def test_calibration_measures_a_switch_point():
    from spikeedge.runtime.accumulate import EventColumns

    rng = np.random.default_rng(0)
    w = fmt.SparseMatrix.from_dense(np.where(rng.random((256, 256)) < 0.1, rng.integers(-127, 128, (256, 256)), 0).astype(np.int8))
    rep = EventColumns(w, 1).calibrate()
    assert rep["hybrid"] and rep["dense_ms"] > 0 and rep["event_ms_per_source"] > 0
    assert rep["switch_activity"] is None or 0.0 <= rep["switch_activity"] <= 1.0
    big = fmt.SparseMatrix.from_dense(np.zeros((1100, 1000), np.int8))  # a float32 copy above the budget: event only
    assert EventColumns(big, 1).calibrate() == {"sources": 1000, "targets": 1100, "hybrid": False, "steps": {"event": 0, "dense": 0}}


@pytest.mark.parametrize("switch", [-1, 10**6])
def test_sessions_on_either_path_equal_the_integer_reference(switch, monkeypatch):
    from test_runtime_exact import random_model, run_both

    from spikeedge.offline.quantize import quantize_hrsnn

    model = random_model("rate", "subtract", n=80)
    xs = np.random.default_rng(5).random((3, 300, 3))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, xs[0])))
    monkeypatch.setattr(engine.EventColumns, "calibrate", lambda self: setattr(self, "switch_k", switch))
    (s_rt, y_rt, session), (s_ref, y_ref) = run_both(bundle, xs)
    assert np.array_equal(s_rt, s_ref) and np.array_equal(y_rt, y_ref)
    used = session.columns[0][1].steps
    assert (used["dense"] > 0) == (switch < 0) and (used["event"] > 0) == (switch > 0)


@pytest.mark.parametrize("decay", [65536, 50000])
def test_hard_reset_kernel_equals_lif_hard_step_int(decay):
    """The conv runtime's neuron: with an IF decay (no bound, the clip on and firing) and a leak."""
    from spikeedge.runtime.conv_ops import lif_hard_step_int
    from spikeedge.runtime.kernels import HardResetKernel

    rng = np.random.default_rng(decay)
    shape = (2, 6, 5, 5)
    m = rng.integers(1, 1 << 20, 6).reshape(-1, 1, 1)
    bias = rng.integers(-5000, 5000, 6).reshape(-1, 1, 1)
    big = 1 << 24 if decay == 65536 else 3000
    kernel = HardResetKernel(shape, decay, m, 12, bias, float(big))
    assert kernel.exact and kernel.saturate == (decay == 65536)
    mem_ref = np.zeros(shape, np.int32)
    mem = np.zeros(shape)
    clipped = 0
    for _ in range(200):
        acc = rng.integers(-big, big + 1, shape).astype(np.int64)
        want, mem_ref = lif_hard_step_int(acc, mem_ref, m, 12, bias, decay)
        got = kernel.step(acc.astype(np.float64), mem)
        assert np.array_equal(got, want) and np.array_equal(mem, mem_ref)
        clipped += int((mem_ref == -(2**31)).sum())
    assert (clipped > 0) == (decay == 65536), "the IF case must reach the int32 floor; the leaky one never"


@pytest.mark.parametrize("size", [1, 2, 3])
def test_max_pool_equals_the_window_maximum(size):
    from spikeedge.runtime.conv_ops import max_pool

    x = np.random.default_rng(size).integers(0, 2, (2, 3, 7, 8)).astype(np.uint8)
    oh, ow = 7 // size, 8 // size
    want = np.array([[[[x[b, c, i * size:(i + 1) * size, j * size:(j + 1) * size].max() for j in range(ow)] for i in range(oh)]
                      for c in range(3)] for b in range(2)])
    got = max_pool(x, size)
    assert got.shape == want.shape and np.array_equal(got, want) and got.flags["C_CONTIGUOUS"]


def test_profile_reports_the_measured_switch_points():
    """``spikeedge profile`` shows, per layer and matrix, the hybrid's measured costs, its switch
    point and how many steps took each path; the steps add up to the steps run."""
    from test_runtime_exact import random_model

    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime.sessions import open_session
    from spikeedge.measure.profile import profile_model

    model = random_model("rate", "subtract", n=120)
    xs = np.random.default_rng(8).random((2, 50, 3))
    session = open_session(fmt.loads(fmt.dumps(quantize_hrsnn(model, xs[0]))))
    report = profile_model(session, xs, baseline_s=0)
    rec = report["accumulation"]["hidden"]["recurrent"]
    assert rec["hybrid"] and rec["sources"] == 120 and rec["dense_ms"] > 0
    assert rec["switch_activity"] is None or 0 <= rec["switch_activity"] <= 1
    assert sum(rec["steps"].values()) <= 2 * 50 and sum(rec["steps"].values()) > 0
