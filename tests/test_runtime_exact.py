"""The event-driven runtime equals the offline integer reference bit for bit.

Two implementations of the integer model: ``runtime.engine.Session`` (numpy, event-driven
gathers) and ``offline.intref.IntegerReference`` (torch int64, dense products). Spikes of every
neuron at every step and every output must be identical, over >= 1,000 steps, on random inputs
and on task inputs, for each encoder and reset mode, with several streams in one batch.
"""

import numpy as np
import pytest
import torch

from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.intref import IntegerReference
from spikeedge.offline.pipeline import train_hrsnn
from spikeedge.offline.quantize import quantize_hrsnn
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.sessions import open_session
from spikeedge.tasks.registry import load_task


def run_both(bundle, xs):
    """Step runtime and reference side by side; returns (spikes, outputs) of each."""
    batch, steps, _ = xs.shape
    session = open_session(bundle, batch, record_spikes=True)
    ref = IntegerReference(bundle)
    session.start(batch, xs[:, 0])
    ref.start(batch, xs[:, 0])
    out_rt = np.stack([session.step(xs[:, t]) for t in range(steps)], axis=1)
    out_ref = np.stack([ref.step(xs[:, t]) for t in range(steps)], axis=1)
    return (np.array(session.spike_history[0]), out_rt, session), (np.array(ref.spike_history[0]), out_ref)


def random_model(encoder, reset, n=120, n_inputs=3, seed=0):
    cfg = HrsnnConfig(n_neurons=n, n_inputs=n_inputs, n_outputs=2, encoder=encoder, reset=reset, seed=seed,
                      in_gain=2.0, rec_gain=0.8, bias_std=0.2, encoder_gain=0.3, delta_threshold=0.1)
    model = HRSNN(cfg)
    with torch.no_grad():
        model.readout.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
        model.readout.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(seed + 1))
    return model


@pytest.mark.parametrize("encoder", ["direct", "rate", "delta"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_random_inputs_1000_steps_bit_exact(encoder, reset):
    model = random_model(encoder, reset)
    rng = np.random.default_rng(1)
    xs = np.cumsum(rng.normal(0, 0.3, size=(3, 1000, 3)), axis=1) if encoder == "delta" else rng.random((3, 1000, 3))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, xs[0])))
    (s_rt, y_rt, session), (s_ref, y_ref) = run_both(bundle, xs)
    rate = s_rt.mean()
    assert 0.01 < rate < 0.9, "a test network that never or always spikes proves little (rate %.3f)" % rate
    assert s_rt.shape == (1000, 3, 120)
    assert np.array_equal(s_rt, s_ref)
    assert np.array_equal(y_rt, y_ref)
    assert session.spike_counts["hidden"] == int(s_ref.sum())


@pytest.mark.slow
def test_task_inputs_mackey_glass_trained_model_bit_exact():
    task = load_task("mackey-glass", repeats=3)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=150, seed=3))
    bundle = quantize_hrsnn(model, task.windows[0].train_x)
    xs = np.stack([np.concatenate([w.train_x, w.test_x]) for w in task.windows])[:, :, None]  # 3 x 1500 steps
    (s_rt, y_rt, _), (s_ref, y_ref) = run_both(bundle, xs)
    assert s_rt.shape[0] == 1500 and s_rt.any()
    assert np.array_equal(s_rt, s_ref)
    assert np.array_equal(y_rt, y_ref)


def test_closed_loop_forecast_identical():
    """Autoregressive use feeds outputs back: any one-bit difference would grow; none may."""
    from spikeedge.tasks.protocols import forecast_windows

    task = load_task("mackey-glass", repeats=2)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=80, seed=5))
    bundle = quantize_hrsnn(model, task.windows[0].train_x)
    assert np.array_equal(forecast_windows(open_session(bundle), task.windows), forecast_windows(IntegerReference(bundle), task.windows))


def test_synops_count_events_times_fanout():
    """Eff_ACs: every spike of a source costs exactly its number of non-zero outgoing weights."""
    model = random_model("rate", "subtract", n=60)
    bundle = quantize_hrsnn(model)
    xs = np.random.default_rng(2).random((2, 200, 3))
    (s_rt, _, session), _ = run_both(bundle, xs)
    layer = bundle.layers[0]
    fan_rec = np.diff(layer.w_rec.indptr)
    fan_in = np.diff(layer.w_in.indptr)
    enc = __import__("spikeedge.runtime.encoders", fromlist=["Encoder"]).Encoder(bundle.encoder, 2)
    input_events = np.stack([enc(xs[:, t]) for t in range(200)])
    expected = int((input_events * fan_in).sum()) + int((s_rt[:-1] * fan_rec).sum())
    assert session.synops == expected


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("dense", [True, False])
def test_event_columns_equal_the_sparse_gather(batch, signed, dense, monkeypatch):
    """Every accumulation path (dense rows for one stream, a BLAS product for several, the sparse
    gather for large matrices) gives the sparse gather's integers and operation counts."""
    from spikeedge.runtime import accumulate

    if not dense:
        monkeypatch.setattr(accumulate, "DENSE_ROWS_MAX_BYTES", 0)
    rng = np.random.default_rng(batch + 2 * signed)
    w = fmt.SparseMatrix.from_dense(np.where(rng.random((50, 70)) < 0.2, rng.integers(-127, 128, (50, 70)), 0).astype(np.int8))
    peak = 32767 if signed else 1
    cols = accumulate.EventColumns(w, peak)
    assert cols.dense == dense
    for rate in (0.0, 0.05, 0.5):
        ev = (rng.random((batch, 70)) < rate).astype(np.int32)
        if signed:
            ev *= rng.integers(-peak, peak + 1, ev.shape).astype(np.int32)
        want = np.zeros((batch, 50), np.int32)
        ops = accumulate.accumulate_events(w, ev, want)
        got = np.full((batch, 50), 99, np.int32)  # overwritten, not added to
        assert cols.accumulate(ev, got) == ops
        assert np.array_equal(got, want)


def test_input_of_the_wrong_width_is_refused():
    from spikeedge.errors import DataError

    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(random_model("direct", "subtract", n=20), np.random.default_rng(0).random((50, 3)))))
    session = open_session(bundle, 2)
    with pytest.raises(DataError, match="1 values per step.*takes 3"):
        session.step(np.zeros((2, 1)))
