"""A readout with delayed taps (``TraceReadout.delays``): the float model, the event runtime and
the offline integer reference read the same past traces, the runtime bit-exactly equal to the
reference, the bundle round-trips, and the parts that cannot run it say so instead of ignoring it.
"""

import numpy as np
import pytest
import torch

from spikeedge.errors import BundleError
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.intref import IntegerReference
from spikeedge.offline.quantize import quantize_hrsnn
from spikeedge.offline.train import FloatStepper
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.cores import choose, unsupported
from spikeedge.runtime.engine import Session
from spikeedge.runtime.stepgraph import card_for

DELAYS = (0, 3, 7)


def delayed_model(delays=DELAYS, n=80, seed=0):
    cfg = HrsnnConfig(n_neurons=n, n_inputs=2, n_outputs=2, seed=seed, in_gain=2.0, rec_gain=0.8, bias_std=0.2,
                      readout_delays=delays)
    model = HRSNN(cfg)
    with torch.no_grad():
        model.readout.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed))
        model.readout.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(seed + 1))
    return model


def test_float_forward_and_stepper_read_the_same_past_traces():
    model = delayed_model()
    xs = np.random.default_rng(0).random((3, 40, 2))
    stepper = FloatStepper(model)
    stepper.start(3, xs[:, 0])
    stepped = np.stack([stepper.step(xs[:, t]) for t in range(40)], axis=1)
    with torch.no_grad():
        out, traces, _, _ = model(torch.tensor(xs, dtype=torch.float32))
    assert model.readout.in_features == 80 * len(DELAYS)
    np.testing.assert_allclose(stepped, out.double().numpy(), atol=1e-5)
    feats = model.readout_features(traces.numpy())
    # tap k at step t is the trace of step t - delays[k]; zero before the start
    assert np.array_equal(feats[:, 10, 80:160], traces.numpy()[:, 7])
    assert np.array_equal(feats[:, 10, 160:], traces.numpy()[:, 3])
    assert not feats[:, :7, 160:].any()
    with torch.no_grad():  # the delayed taps matter: without them the outputs differ
        model.readout.weight[:, 80:] = 0
    stepper.start(3, xs[:, 0])
    assert not np.allclose(np.stack([stepper.step(xs[:, t]) for t in range(40)], axis=1), stepped, atol=1e-3)


def test_runtime_equals_integer_reference_bit_for_bit_and_round_trips():
    model = delayed_model()
    xs = np.random.default_rng(1).random((3, 300, 2))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, xs[0])))
    assert bundle.readout.taps == DELAYS and bundle.readout.w.shape == (2, 80 * 3)
    session, ref = Session(bundle, 3, record_spikes=True), IntegerReference(bundle)
    session.start(3, xs[:, 0])
    ref.start(3, xs[:, 0])
    y_rt = np.stack([session.step(xs[:, t]) for t in range(300)], axis=1)
    y_ref = np.stack([ref.step(xs[:, t]) for t in range(300)], axis=1)
    assert 0.01 < np.mean(session.spike_history[0]) < 0.9
    assert np.array_equal(y_rt, y_ref)
    # the state (with the trace history) moves between the two and the outputs stay equal
    ref.set_state(session.get_state())
    session.set_state(ref.get_state())
    for t in range(20):
        assert np.array_equal(session.step(xs[:, t]), ref.step(xs[:, t]))
    # the int8 model follows the float one
    stepper = FloatStepper(model)
    stepper.start(3, xs[:, 0])
    y_float = np.stack([stepper.step(xs[:, t]) for t in range(300)], axis=1)
    assert np.corrcoef(y_float.ravel(), y_rt.ravel())[0, 1] > 0.95


def test_compiled_core_and_step_graphs_refuse_a_delayed_readout():
    bundle = quantize_hrsnn(delayed_model(), np.ones((1, 2)))
    assert "delayed taps" in unsupported(bundle)
    assert choose(bundle, "auto")[0] == "numpy"
    with pytest.raises(ValueError, match="delayed taps"):
        card_for(bundle, "onnx")
    plain = quantize_hrsnn(delayed_model(delays=(0,)), np.ones((1, 2)))
    assert plain.readout.delays is None and plain.readout.taps == (0,)


def test_delayed_taps_are_written_as_schema_version_3_and_plain_readouts_keep_version_1():
    """A runtime that reads only versions 1-2 refuses a tapped readout by its version number,
    and a model without taps keeps the bytes (and digest) it always had."""
    tapped = quantize_hrsnn(delayed_model(), np.ones((1, 2)))
    plain = quantize_hrsnn(delayed_model(delays=(0,)), np.ones((1, 2)))
    assert fmt.schema_version_of(tapped) == 3 and fmt.bundle_to_manifest(tapped)[0]["schema_version"] == 3
    assert fmt.schema_version_of(plain) == 1 and fmt.bundle_to_manifest(plain)[0]["schema_version"] == 1
    manifest, arrays = fmt.bundle_to_manifest(tapped)
    with pytest.raises(BundleError, match="readout.delays needs schema version 3, the file says 2"):
        fmt.loads(fmt.encode_bytes(dict(manifest, schema_version=2), arrays))


@pytest.mark.parametrize("delays, why", [([3, 1], "increasing"), ([-1, 2], "delays must be"), ([0, 5000], "delays must be")])
def test_bad_delays_are_refused_on_load(delays, why):
    bundle = quantize_hrsnn(delayed_model(delays=(0, 1)), np.ones((1, 2)))
    manifest, arrays = fmt.bundle_to_manifest(bundle)
    arrays["readout.delays"] = np.asarray(delays, np.int32)
    with pytest.raises(BundleError, match=why):
        fmt.loads(fmt.encode_bytes(manifest, arrays))


def test_reservoir_readout_trains_checkpoints_and_exports(tmp_path):
    """``train_model(..., readout="reservoir")`` on a short Mackey-Glass run: the chosen taps
    survive a checkpoint, the exported bundle runs on the numpy core and follows the float model."""
    from spikeedge.offline.checkpoint import load_checkpoint, save_checkpoint
    from spikeedge.offline.pipeline import calibration_inputs, train_model
    from spikeedge.runtime.sessions import open_session
    from spikeedge.tasks.protocols import forecast_windows
    from spikeedge.tasks.registry import Windows, load_task

    task = load_task("mackey-glass", windows=Windows(count=2, test=60))
    model, record = train_model(HRSNN(HrsnnConfig(n_neurons=60, seed=0)), task, readout="reservoir")
    rec = record["training"]
    assert rec["readout"] == "reservoir" and tuple(rec["delays"]) == model.cfg.readout_delays
    assert len(rec["validation"]["scores"]) == 3 * 3 * 5  # spacings x input gains x lambdas, all scored
    save_checkpoint(model, tmp_path / "m.ckpt.npz", record)
    loaded, _ = load_checkpoint(tmp_path / "m.ckpt.npz")
    assert loaded.cfg.readout_delays == model.cfg.readout_delays
    assert torch.equal(loaded.readout.weight, model.readout.weight)
    bundle = quantize_hrsnn(loaded, calibration_inputs(task))
    session = open_session(bundle, 2)
    assert session.core == "numpy" or bundle.readout.taps == (0,)
    y_int = forecast_windows(session, task.windows)
    y_float = forecast_windows(FloatStepper(loaded), task.windows)
    assert np.all(np.isfinite(y_int)) and np.abs(y_int - y_float)[:, :10].max() < 0.1


def test_plain_readouts_and_bptt_accept_a_network_trained_with_taps():
    """A checkpoint trained with taps can be retrained with the plain ridge readout or BPTT
    (``train hrsnn --from``): they go back to the current traces instead of failing on the size."""
    from spikeedge.offline.train import train_bptt, train_ridge_classify
    from spikeedge.tasks.kinds import ClassifyTask

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    x = np.repeat((y[:, None] * 2.0 - 1.0 + rng.normal(0, 0.3, (60, 2)))[:, None, :], 6, axis=1)
    task = ClassifyTask("toy", x[:40], y[:40], x[40:], y[40:], 2)
    model = delayed_model(delays=(0, 2))
    train_ridge_classify(model, task.x_train, task.y_train, 2)
    assert model.cfg.readout_delays == (0,) and model.readout.in_features == 80
    model.set_readout_delays((0, 2))
    record = train_bptt(model, task, epochs=2, patience=5)
    assert record["epochs_run"] == 2
    assert model.cfg.readout_delays == (0,) and model.readout.in_features == 80
