"""``spikeedge train convsnn`` and ``spikeedge prune sca`` against their contract (``cli.md``):
exact exit codes, one JSON object with ``--json``, one-line user errors, and the end-to-end path
train -> prune sca -> export -> run (and eval) on a small network on digits (under a minute)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture
def work(tmp_path: Path, monkeypatch: Any) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_prune_export_run_end_to_end(work: Path, capsys: Any) -> None:
    from spikeedge.offline import sca
    from spikeedge.offline.checkpoint import load_checkpoint
    from spikeedge.offline.convsnn import fold, folded_forward
    from spikeedge.offline.convtrain import load_images, predict

    t0 = time.time()
    rc, out, err = call(capsys, "train", "convsnn", "--task", "digits", "--width", "0.5", "--epochs", "2", "--batch-size", "32", "-o", "d.ckpt.npz", "--json")
    assert rc == 0, err
    trained = one_json(out)
    assert trained["checkpoint"] == "d.ckpt.npz" and trained["arch"] == "vgg" and trained["config"]["plan"] == [8, 16, "M", 32, 32, "M"]
    assert trained["float_metric"]["accuracy"] > 0.3  # chance is 0.1
    assert len(trained["training"]["losses"]) == 2

    rc, out, err = call(capsys, "prune", "sca", "d.ckpt.npz", "--density", "0.5", "--epochs", "2", "--prunes-per-epoch", "2",
                        "--batch-size", "32", "-o", "p.ckpt.npz", "--report", "rep", "--json")
    assert rc == 0, err
    pruned = one_json(out)
    assert pruned["method"] == "sca" and pruned["channels"]["kept"] == 40 and pruned["channels"]["total"] == 80
    assert pruned["accuracy"]["masked"] == pruned["accuracy"]["shrunk"]  # shrinking is exact
    assert pruned["accuracy"]["final"] > 0.3
    layers = {r["layer"]: r for r in pruned["layers"]}
    assert layers["features.0.conv"]["channels"] == [8, 8]  # the stem is never pruned
    assert layers["classifier"]["channels"] == [10, 10]
    assert pruned["total"]["params"][0] < pruned["total"]["params"][1]
    assert pruned["total"]["macs"][0] < pruned["total"]["macs"][1]
    assert {p.name for p in (work / "rep").iterdir()} == {"sca_record.json", "sca_report.md"}
    record = json.loads((work / "rep" / "sca_record.json").read_text())
    assert len(record["events"]) == 4 and record["layers"]["layers"]
    assert "synaptic ops" in (work / "rep" / "sca_report.md").read_text()

    model, rec = load_checkpoint("p.ckpt.npz", kind="convsnn")
    assert rec["pruning"]["method"] == "sca" and rec["parent"] == "d.ckpt.npz"
    assert [u.width for u in sca.units(model)] == [v[0] for v in pruned["channels"]["per_layer"].values()]
    data = load_images("digits")
    assert float((predict(model, data.x_test).argmax(1) == data.y_test).float().mean()) == pytest.approx(pruned["accuracy"]["final"])
    logits, _ = folded_forward(fold(model), data.x_test.numpy())  # the shrunk model folds for the int8 exporter
    agree = float(np.mean(logits.argmax(1) == predict(model, data.x_test).numpy().argmax(1)))
    assert agree > 0.99

    rc, out, err = call(capsys, "export", "p.ckpt.npz", "--format", "bundle", "-o", "p.seb", "--json")
    assert rc == 0, err
    exported = one_json(out)
    assert exported["bundle"] == "p.seb" and exported["bytes"] == (work / "p.seb").stat().st_size
    np.savez(work / "x.npz", x=data.x_test[:40].numpy())
    rc, out, err = call(capsys, "run", "p.seb", "--input", "x.npz", "-o", "y.npz", "--json")
    assert rc == 0, err
    ran = one_json(out)
    float_pred = predict(model, data.x_test[:40]).numpy().argmax(1)
    assert np.mean(np.array(ran["predictions"]) == float_pred) >= 0.9  # int8 vs float on 40 images
    assert ran["synops"] > 0 and set(ran["spike_counts"]) == {"conv0", "conv1", "conv3", "conv4"}
    with np.load(work / "y.npz") as y:
        assert y["outputs"].shape[0] == 40

    rc, out, err = call(capsys, "eval", "p.ckpt.npz", "--task", "digits", "--json")
    assert rc == 0, err
    assert one_json(out)["accuracy"] == pytest.approx(pruned["accuracy"]["final"])  # the float checkpoint
    rc, out, err = call(capsys, "eval", "p.seb", "--task", "digits", "--json")
    assert rc == 0, err
    assert abs(one_json(out)["accuracy"] - pruned["accuracy"]["final"]) < 0.05  # the int8 bundle on the runtime
    assert time.time() - t0 < 60


def test_resnet_train_prune_export_run_end_to_end(work: Path, capsys: Any) -> None:
    """A pre-activation ResNet goes the same way as the VGG: train, SCA (block-inner channels),
    shrink, int8 bundle (residual stream, stream neurons, global pool), run and eval on the
    event runtime, close to the float model."""
    from spikeedge.offline.checkpoint import load_checkpoint
    from spikeedge.offline.convtrain import load_images, predict

    rc, out, err = call(capsys, "train", "convsnn", "--task", "digits", "--arch", "resnet", "--width", "0.5", "--epochs", "3", "--batch-size", "32",
                        "-o", "r.ckpt.npz", "--json")
    assert rc == 0, err
    assert one_json(out)["float_metric"]["accuracy"] > 0.3
    rc, out, err = call(capsys, "prune", "sca", "r.ckpt.npz", "--density", "0.5", "--epochs", "1", "--finetune-epochs", "1", "--batch-size", "32",
                        "-o", "rp.ckpt.npz", "--json")
    assert rc == 0, err
    pruned = one_json(out)
    assert pruned["accuracy"]["masked"] == pruned["accuracy"]["shrunk"] and pruned["channels"]["kept"] < pruned["channels"]["total"]
    rc, out, err = call(capsys, "export", "rp.ckpt.npz", "-o", "rp.seb", "--json")
    assert rc == 0, err
    rc, out, err = call(capsys, "info", "rp.seb", "--json")
    assert rc == 0, err
    kinds = [layer["kind"] for layer in one_json(out)["layers"]]
    assert kinds.count("conv_stream") == 4 and kinds.count("stream_lif") == 4 and kinds[-1] == "global_sum_pool"

    model, _ = load_checkpoint("rp.ckpt.npz", kind="convsnn")
    data = load_images("digits")
    np.savez(work / "x.npz", x=data.x_test[:60].numpy())
    rc, out, err = call(capsys, "run", "rp.seb", "--input", "x.npz", "-o", "y.npz", "--json")
    assert rc == 0, err
    ran = one_json(out)
    logits = predict(model, data.x_test[:60]).numpy()
    float_pred = logits.argmax(1)
    agree = np.array(ran["predictions"]) == float_pred
    # int8 vs float: a 3-epoch ResNet has many near-ties that int8 rounding may flip (how many
    # depends on the CPU's float kernels in training), so all images must mostly agree and the
    # confident half (top-2 logit margin above the median) must agree almost everywhere
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    assert agree.mean() >= 0.8 and agree[margin > np.median(margin)].mean() >= 0.95, (agree.mean(), agree[margin > np.median(margin)].mean())
    assert ran["synops"] > 0 and len(ran["spike_counts"]) == 6  # 4 stream neurons (2 blocks, transition, head) + 2 block-inner layers
    rc, out, err = call(capsys, "eval", "rp.seb", "--task", "digits", "--json")
    assert rc == 0, err
    assert abs(one_json(out)["accuracy"] - pruned["accuracy"]["final"]) < 0.05


def test_prune_sca_from_scratch_resnet_and_baselines(work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "prune", "sca", "--task", "digits", "--arch", "resnet", "--width", "0.5", "--density", "0.5",
                        "--epochs", "1", "--finetune-epochs", "0", "-o", "r.ckpt.npz", "--json")
    assert rc == 0, err
    res = one_json(out)
    assert res["input"] == "a new resnet (digits)" and res["channels"]["total"] == 8 + 16
    assert res["accuracy"]["masked"] == res["accuracy"]["final"]  # no fine-tuning
    for method in ("bn-scale", "random"):
        rc, out, err = call(capsys, "prune", "sca", "--task", "digits", "--width", "0.25", "--method", method, "--density", "0.5",
                            "--epochs", "1", "--finetune-epochs", "0", "-o", "%s.ckpt.npz" % method)
        assert rc == 0, err
        assert method in out and "accuracy" in out and not out.lstrip().startswith("{")


@pytest.mark.parametrize(
    "argv,names",
    [
        (["prune", "sca", "missing.ckpt.npz", "-o", "x.ckpt.npz"], ["missing.ckpt.npz"]),
        (["prune", "sca", "h.ckpt.npz", "-o", "x.ckpt.npz"], ["h.ckpt.npz", "HRSNN"]),
        (["prune", "sca", "c.ckpt.npz", "--density", "0", "-o", "x.ckpt.npz"], ["--density"]),
        (["prune", "sca", "c.ckpt.npz", "--density", "1.5", "-o", "x.ckpt.npz"], ["--density"]),
        (["prune", "sca", "c.ckpt.npz", "--method", "magic", "-o", "x.ckpt.npz"], ["--method", "magic"]),
        (["prune", "sca", "c.ckpt.npz", "--method", "bn-scale", "--l1", "-1", "-o", "x.ckpt.npz"], ["--l1"]),
        (["prune", "sca", "-o", "x.ckpt.npz"], ["--task"]),
        (["prune", "sca", "c.ckpt.npz", "--task", "digits", "-o", "x.ckpt.npz"], ["both"]),
        (["prune", "sca", "--task", "cifar", "-o", "x.ckpt.npz"], ["--task", "cifar"]),
        (["train", "convsnn", "--task", "digits", "--arch", "alexnet", "-o", "x.ckpt.npz"], ["--arch", "alexnet"]),
        (["train", "convsnn", "--task", "mackey-glass", "-o", "x.ckpt.npz"], ["--task", "mackey-glass"]),
        (["train", "convsnn", "--task", "digits", "--neuron", "izhikevich", "-o", "x.ckpt.npz"], ["--neuron"]),
        (["train", "convsnn", "--task", "digits", "--time-steps", "0", "-o", "x.ckpt.npz"], ["--time-steps"]),
        (["export", "r.ckpt.npz", "--format", "onnx", "-o", "r.onnx"], ["r.ckpt.npz", "ResNet", "ONNX"]),
        (["export", "r.ckpt.npz", "--format", "tflite", "-o", "r.tflite"], ["r.ckpt.npz", "ResNet", "TFLite"]),
    ],
    ids=["missing", "hrsnn-checkpoint", "density-zero", "density-above-one", "method", "l1-negative", "neither", "both", "task", "arch",
         "train-task", "neuron", "time-steps", "resnet-onnx", "resnet-tflite"],
)
def test_user_errors(work: Path, capsys: Any, argv: Any, names: Any) -> None:
    from spikeedge.offline.checkpoint import save_checkpoint
    from spikeedge.offline.convsnn import ConvConfig, ConvSNN
    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig

    save_checkpoint(HRSNN(HrsnnConfig(n_neurons=10)), "h.ckpt.npz", {"task": "mackey-glass"})
    save_checkpoint(ConvSNN(ConvConfig(in_size=8)), "c.ckpt.npz", {"task": "digits"})
    save_checkpoint(ConvSNN(ConvConfig(in_size=8, arch="resnet")), "r.ckpt.npz", {"task": "digits"})
    before = {p.name for p in work.iterdir()}
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, *names)
    assert {p.name for p in work.iterdir()} == before
