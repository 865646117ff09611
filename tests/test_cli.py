"""The ``spikeedge`` commands on a real model (``cli.md`` in the shared notes): the quick demo and
what it leaves, info, eval, export, run, train, and each step-graph backend.

Every test calls ``spikeedge.cli.app.main`` in-process in a temporary folder and checks exact
exit codes and that ``--json`` prints exactly one JSON object and nothing else on stdout. The
quick demo runs once per session (``demo`` and ``demo_work`` in conftest.py); its checkpoint and
bundle feed the tests. Errors, usage, help and the generated reference: test_cli_contract.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.sessions import open_session

DEMO_KEYS = {"neurons", "synapses", "float_smape", "int8_smape", "runtime_ms_per_step", "synops_per_step"}
DEMO_FILES = {"hrsnn.ckpt.npz", "model.seb", "report.md", "report.json"}


from cli_helpers import call, one_json  # noqa: E402


# ----------------------------------------------------------------------------- demo and the model it leaves


def test_demo_quick_json_summary_and_files(demo: Dict[str, Any]) -> None:
    assert demo["rc"] == 0, demo["stderr"]
    summary = one_json(demo["stdout"])
    assert DEMO_KEYS <= set(summary), DEMO_KEYS - set(summary)
    assert summary["dense_neurons"] == 100 and summary["neurons"] == 50 and summary["quick"] is True  # LNP keeps half
    for key in ("float_smape", "int8_smape"):
        assert math.isfinite(summary[key]) and 0.0 <= summary[key] <= 200.0
    assert summary["runtime_ms_per_step"] > 0 and summary["synops_per_step"] > 0
    assert summary["synapses"]["total_with_readout"] > summary["synapses"]["total_without_readout"] > 0
    # the folder holds exactly the four results: no temporary or half-written files
    assert {p.name for p in demo["dir"].iterdir()} == DEMO_FILES
    assert json.loads((demo["dir"] / "report.json").read_text()) == summary
    assert "int8 sMAPE" in (demo["dir"] / "report.md").read_text()
    assert summary["bundle_sha256"] == fmt.load(demo["dir"] / "model.seb").sha256


def test_info_json(demo_work: Path, demo: Dict[str, Any], capsys: Any) -> None:
    rc, out, err = call(capsys, "info", "model.seb", "--json")
    assert rc == 0, err
    info = one_json(out)
    assert info["schema_version"] == fmt.schema_version_of(fmt.load(Path("model.seb"))) == 1
    assert info["sha256"] == one_json(demo["stdout"])["bundle_sha256"]
    assert info["neurons"] == 50 and info["inputs"] == 1 and info["outputs"] == 1
    assert info["file_bytes"] == Path("model.seb").stat().st_size
    assert 0.0 < info["connection_sparsity"]["without_readout"] < 1.0


def test_info_human_output_is_not_json(demo_work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "info", "model.seb")
    assert rc == 0, err
    assert "sha256" in out and "neurons" in out
    with pytest.raises(ValueError):
        json.loads(out)


@pytest.mark.parametrize("model", ["model.seb", "mg.ckpt.npz"])
def test_eval_mackey_glass(demo_work: Path, capsys: Any, model: str) -> None:
    rc, out, err = call(capsys, "eval", model, "--task", "mackey-glass", "--repeats", "3", "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["task"] == "mackey-glass" and result["windows"] == 3 and result["model"] == model
    assert math.isfinite(result["smape"]) and 0.0 <= result["smape"] <= 200.0


def test_export_is_byte_identical_to_the_demo_bundle(demo_work: Path, demo: Dict[str, Any], capsys: Any) -> None:
    rc, out, err = call(capsys, "export", "mg.ckpt.npz", "--format", "bundle", "-o", "X.seb", "--json")
    assert rc == 0, err
    result = one_json(out)
    blob = Path("X.seb").read_bytes()
    assert result["bundle"] == "X.seb" and result["bytes"] == len(blob)
    assert result["sha256"] == hashlib.sha256(blob).hexdigest()  # the file's sha256: the bundle's identity
    # export is deterministic: the same checkpoint gives the demo's bundle, byte for byte
    assert blob == (demo["dir"] / "model.seb").read_bytes()
    assert {p.name for p in demo_work.iterdir() if p.name.startswith(".")} == set()  # no temporary left


@pytest.mark.parametrize("shape", [(50,), (50, 1), (2, 50, 1)])
def test_run_writes_outputs_and_counts(demo_work: Path, capsys: Any, shape: Tuple[int, ...]) -> None:
    wave = 0.9 + 0.2 * np.sin(np.arange(50) / 5.0)
    x = {1: wave, 2: wave[:, None], 3: np.stack([wave, wave[::-1]])[:, :, None]}[len(shape)]  # 2 different streams
    assert x.shape == shape
    np.savez("x.npz", x=x)
    rc, out, err = call(capsys, "run", "model.seb", "--input", "x.npz", "-o", "out.npz", "--json")
    assert rc == 0, err
    summary = one_json(out)
    batch = shape[0] if len(shape) == 3 else 1
    assert summary["steps"] == 50 and summary["batch"] == batch
    assert summary["output_file"] == "out.npz"
    with np.load("out.npz", allow_pickle=False) as z:
        assert set(z.files) == {"outputs", "spike_counts", "layers", "synops"}
        outputs, counts, layers, synops = z["outputs"], z["spike_counts"], z["layers"], z["synops"]
    assert outputs.shape == (batch, 50, 1) and np.all(np.isfinite(outputs))
    assert layers.tolist() == ["hidden"]
    assert counts.tolist() == [summary["spike_counts"]["hidden"]] and counts[0] > 0
    assert int(synops) == summary["synops"] > 0
    expected = open_session(fmt.load("model.seb"), batch).run(x.reshape(batch, 50, 1))
    np.testing.assert_array_equal(outputs, expected.outputs)
    assert expected.synops == summary["synops"]


def test_run_one_dimensional_and_column_inputs_agree(demo_work: Path, capsys: Any) -> None:
    x = 0.9 + 0.2 * np.sin(np.arange(50) / 5.0)
    results = []
    for name, arr in (("a.npz", x), ("b.npz", x[:, None])):
        np.savez(name, x=arr)
        rc, out, err = call(capsys, "run", "model.seb", "--input", name, "--json")
        assert rc == 0, err
        results.append({k: v for k, v in one_json(out).items() if k not in ("seconds", "ms_per_step", "ms_per_inference")})
    assert results[0] == results[1]  # everything but the timings
    assert results[0]["output_file"] is None


# ----------------------------------------------------------------------------- training


def test_train_hrsnn_mackey_glass_then_export_and_eval(demo_work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "train", "hrsnn", "--task", "mackey-glass", "--neurons", "50", "-o", "m.ckpt.npz", "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["checkpoint"] == "m.ckpt.npz" and Path("m.ckpt.npz").is_file()
    assert result["neurons"] == 50 and result["training"]["readout"] == "ridge"
    assert math.isfinite(result["float_metric"]["smape"]) and result["float_metric"]["smape"] < 100.0
    rc, out, err = call(capsys, "export", "m.ckpt.npz", "-o", "m.seb", "--json")
    assert rc == 0, err
    rc, out, err = call(capsys, "info", "m.seb", "--json")
    assert rc == 0, err
    assert one_json(out)["neurons"] == 50


def test_train_hrsnn_digits_accuracy(demo_work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "train", "hrsnn", "--task", "digits", "--neurons", "50", "-o", "d.ckpt.npz", "--json")
    assert rc == 0, err
    result = one_json(out)
    accuracy = result["float_metric"]["accuracy"]
    assert 0.3 < accuracy <= 1.0  # chance is 0.1
    # the checkpoint scores what training reported; the int8 bundle stays close to it
    rc, out, err = call(capsys, "eval", "d.ckpt.npz", "--task", "digits", "--json")
    assert rc == 0, err
    assert one_json(out)["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    rc, out, err = call(capsys, "export", "d.ckpt.npz", "-o", "d.seb", "--json")
    assert rc == 0, err
    rc, out, err = call(capsys, "eval", "d.seb", "--task", "digits", "--json")
    assert rc == 0, err
    int8 = one_json(out)["accuracy"]
    assert int8 > 0.3 and abs(int8 - accuracy) < 0.1
    # a classifier bundle: `run` reports the predicted class of every stream
    np.savez("digits_x.npz", x=np.full((3, 16, 64), 4.0))
    rc, out, err = call(capsys, "run", "d.seb", "--input", "digits_x.npz", "--json")
    assert rc == 0, err
    predictions = one_json(out)["predictions"]
    assert len(predictions) == 3 and all(0 <= p < 10 for p in predictions)
    assert len(set(predictions)) == 1  # three identical streams, one answer


def test_train_hrsnn_bptt(demo_work: Path, capsys: Any) -> None:
    rc, out, err = call(
        capsys, "train", "hrsnn", "--task", "mackey-glass", "--readout", "bptt", "--epochs", "2", "--neurons", "30", "-o", "b.ckpt.npz", "--json"
    )
    assert rc == 0, err
    training = one_json(out)["training"]
    assert training["readout"] == "bptt" and training["epochs"] == 2
    assert len(training["losses"]) == 2 and all(math.isfinite(v) for v in training["losses"])
    assert Path("b.ckpt.npz").is_file()


# ----------------------------------------------------------------------------- each step-graph backend


@pytest.mark.parametrize("fmt_name", ["onnx", "tflite"])
def test_export_run_eval_verify_on_each_backend(demo_work: Path, capsys: Any, fmt_name: str) -> None:
    """checkpoint -> step graph -> run and eval on its interpreter, same numbers as the bundle."""
    rc, out, err = call(capsys, "export", "mg.ckpt.npz", "--format", fmt_name, "-o", "m." + fmt_name, "--json")
    assert rc == 0, err
    exported = one_json(out)
    assert exported["format"] == fmt_name and exported["int8_weights"] and exported["bytes"] == (demo_work / ("m." + fmt_name)).stat().st_size
    rc, out, err = call(capsys, "export", "model.seb", "--format", fmt_name, "-o", "b." + fmt_name, "--json")  # from a bundle
    assert rc == 0, err
    runs = {}
    for model in ("model.seb", "b." + fmt_name):
        rc, out, err = call(capsys, "run", model, "--input", "in.npz", "--json")
        assert rc == 0, err
        runs[model] = one_json(out)
    a, b = runs["model.seb"], runs["b." + fmt_name]
    assert a["backend"] == "event" and b["backend"] == fmt_name
    assert a["spike_counts"] == b["spike_counts"] and a["synops"] == b["synops"]
    for key in ("seconds", "ms_per_step", "ms_per_inference"):  # the same timing fields from every backend
        assert key in a and key in b and b[key] > 0
    rc, out, err = call(capsys, "verify", "b." + fmt_name, "--reference", "model.seb", "--task", "mackey-glass", "--repeats", "2", "--json")
    assert rc == 0, err
    report = one_json(out)
    assert report["passed"] and report["open_loop"]["min_spike_agreement"] >= 0.995


def test_verify_exits_1_when_the_forms_disagree(demo_work: Path, capsys: Any) -> None:
    import dataclasses

    from spikeedge.runtime import bundle as fmt

    good = fmt.load("model.seb")
    layer = good.layers[0]
    flipped = dataclasses.replace(layer.w_rec, values=(-layer.w_rec.values.astype(int)).clip(-127, 127).astype("int8"))
    fmt.save(dataclasses.replace(good, layers=(dataclasses.replace(layer, w_rec=flipped),)), "bad.seb")
    rc, out, err = call(capsys, "verify", "bad.seb", "--reference", "model.seb", "--task", "mackey-glass", "--repeats", "2", "--json")
    assert rc == 1, err
    report = one_json(out)
    assert report["passed"] is False and report["checks"]["open_loop_spike_agreement"] is False
    assert "verify" in err and "bad.seb" in err and len(err.strip().splitlines()) == 1
