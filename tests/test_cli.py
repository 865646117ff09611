"""The ``spikeedge`` command against its contract (``cli.md`` in the shared notes).

Every test calls ``spikeedge.cli.app.main`` in-process in a temporary folder and checks exact
exit codes, that ``--json`` prints exactly one JSON object and nothing else on stdout, and that
user errors are one line on stderr naming the file or option, without a traceback. The quick
demo runs once per module; its checkpoint and bundle feed the other tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from spikeedge.cli.app import main
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import BundleError, SpikeedgeError

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEYS = {"neurons", "synapses", "float_smape", "int8_smape", "runtime_ms_per_step", "synops_per_step"}
DEMO_FILES = {"hrsnn.ckpt.npz", "model.seb", "report.md", "report.json"}


from cli_helpers import assert_user_error, call, one_json  # noqa: E402

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo(tmp_path_factory: Any) -> Dict[str, Any]:
    """``spikeedge demo --quick --json --out DIR`` once: its exit code, streams and folder."""
    base = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    mp = pytest.MonkeyPatch()
    mp.chdir(base)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["demo", "--quick", "--json", "--out", "run"])
    finally:
        mp.undo()
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "dir": base / "run"}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: Any, demo: Dict[str, Any]) -> Path:
    """A fresh folder (the current directory) holding copies of the demo's model.seb and
    checkpoint, and a few input files, good and bad."""
    assert demo["rc"] == 0, demo["stderr"]
    monkeypatch.chdir(tmp_path)
    shutil.copy(demo["dir"] / "model.seb", "model.seb")
    shutil.copy(demo["dir"] / "hrsnn.ckpt.npz", "mg.ckpt.npz")
    x = 0.9 + 0.2 * np.sin(np.arange(50) / 5.0)
    np.savez("in.npz", x=x)
    np.savez("wide.npz", x=np.zeros((50, 3)))
    np.savez("nox.npz", y=x)
    np.savez("nan.npz", x=np.full(50, np.nan))
    Path("text.npz").write_text("not an npz archive\n")
    Path("fake.onnx").write_text("not an onnx model\n")
    Path("fake.tflite").write_bytes(b"not a tflite model at all")
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.runtime import bundle as fmt

    export_onnx(fmt.load("model.seb"), "model.onnx")
    from results_records import make_record

    from spikeedge.results.store import Store

    with Store(tmp_path / "runs.sqlite") as store:  # two runs of one model, the second no worse
        store.add_runs([make_record(seed=1), make_record(seed=2)])
    return tmp_path


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


def test_info_json(work: Path, demo: Dict[str, Any], capsys: Any) -> None:
    rc, out, err = call(capsys, "info", "model.seb", "--json")
    assert rc == 0, err
    info = one_json(out)
    assert info["schema_version"] == fmt.SCHEMA_VERSION
    assert info["sha256"] == one_json(demo["stdout"])["bundle_sha256"]
    assert info["neurons"] == 50 and info["inputs"] == 1 and info["outputs"] == 1
    assert info["file_bytes"] == Path("model.seb").stat().st_size
    assert 0.0 < info["connection_sparsity"]["without_readout"] < 1.0


def test_info_human_output_is_not_json(work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "info", "model.seb")
    assert rc == 0, err
    assert "sha256" in out and "neurons" in out
    with pytest.raises(ValueError):
        json.loads(out)


@pytest.mark.parametrize("model", ["model.seb", "mg.ckpt.npz"])
def test_eval_mackey_glass(work: Path, capsys: Any, model: str) -> None:
    rc, out, err = call(capsys, "eval", model, "--task", "mackey-glass", "--repeats", "3", "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["task"] == "mackey-glass" and result["windows"] == 3 and result["model"] == model
    assert math.isfinite(result["smape"]) and 0.0 <= result["smape"] <= 200.0


def test_export_is_byte_identical_to_the_demo_bundle(work: Path, demo: Dict[str, Any], capsys: Any) -> None:
    rc, out, err = call(capsys, "export", "mg.ckpt.npz", "--format", "bundle", "-o", "X.seb", "--json")
    assert rc == 0, err
    result = one_json(out)
    blob = Path("X.seb").read_bytes()
    assert result["bundle"] == "X.seb" and result["bytes"] == len(blob)
    assert result["sha256"] == hashlib.sha256(blob[:-32]).hexdigest() == blob[-32:].hex()
    # export is deterministic: the same checkpoint gives the demo's bundle, byte for byte
    assert blob == (demo["dir"] / "model.seb").read_bytes()
    assert {p.name for p in work.iterdir() if p.name.startswith(".")} == set()  # no temporary left


@pytest.mark.parametrize("shape", [(50,), (50, 1), (2, 50, 1)])
def test_run_writes_outputs_and_counts(work: Path, capsys: Any, shape: Tuple[int, ...]) -> None:
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


def test_run_one_dimensional_and_column_inputs_agree(work: Path, capsys: Any) -> None:
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


def test_train_hrsnn_mackey_glass_then_export_and_eval(work: Path, capsys: Any) -> None:
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


def test_train_hrsnn_digits_accuracy(work: Path, capsys: Any) -> None:
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


def test_train_hrsnn_bptt(work: Path, capsys: Any) -> None:
    rc, out, err = call(
        capsys, "train", "hrsnn", "--task", "mackey-glass", "--readout", "bptt", "--epochs", "2", "--neurons", "30", "-o", "b.ckpt.npz", "--json"
    )
    assert rc == 0, err
    training = one_json(out)["training"]
    assert training["readout"] == "bptt" and training["epochs"] == 2
    assert len(training["losses"]) == 2 and all(math.isfinite(v) for v in training["losses"])
    assert Path("b.ckpt.npz").is_file()


# ----------------------------------------------------------------------------- user errors: exit 2, one line


USER_ERRORS: List[Tuple[str, List[str], List[str]]] = [
    # (id, argv, what the message must name)
    ("info-missing", ["info", "missing.seb"], ["missing.seb"]),
    ("info-not-bundle", ["info", "in.npz"], ["in.npz", "not a spikeedge bundle"]),
    ("info-checkpoint", ["info", "mg.ckpt.npz"], ["mg.ckpt.npz"]),
    ("info-directory", ["info", "."], ["directory"]),
    ("eval-missing", ["eval", "missing.seb", "--task", "mackey-glass"], ["missing.seb"]),
    ("eval-missing-ckpt", ["eval", "missing.ckpt.npz", "--task", "mackey-glass"], ["missing.ckpt.npz"]),
    ("eval-unknown-task", ["eval", "model.seb", "--task", "nosuchtask"], ["nosuchtask"]),
    ("eval-npz-without-data", ["eval", "model.seb", "--task", "npz"], ["--data"]),
    ("run-missing-model", ["run", "missing.seb", "--input", "in.npz"], ["missing.seb"]),
    ("run-not-bundle", ["run", "mg.ckpt.npz", "--input", "in.npz"], ["mg.ckpt.npz", ".seb"]),
    ("run-backend-mismatch", ["run", "model.seb", "--input", "in.npz", "--backend", "onnx"], ["model.seb", "onnx"]),
    ("run-not-onnx", ["run", "fake.onnx", "--input", "in.npz"], ["fake.onnx", "onnxruntime"]),
    ("eval-not-tflite", ["eval", "fake.tflite", "--task", "mackey-glass"], ["fake.tflite", "TFLite"]),
    ("eval-checkpoint-backend", ["eval", "mg.ckpt.npz", "--task", "mackey-glass", "--backend", "onnx"], ["mg.ckpt.npz", "onnx"]),
    ("verify-missing", ["verify", "missing.onnx", "--reference", "model.seb", "--task", "mackey-glass"], ["missing.onnx"]),
    ("verify-missing-reference", ["verify", "model.onnx", "--reference", "gone.seb", "--task", "mackey-glass"], ["gone.seb"]),
    ("run-missing-input", ["run", "model.seb", "--input", "absent.npz"], ["absent.npz"]),
    ("run-wrong-shape", ["run", "model.seb", "--input", "wide.npz"], ["wide.npz", "shape"]),
    ("run-missing-x", ["run", "model.seb", "--input", "nox.npz"], ["nox.npz", "'x'"]),
    ("run-not-npz", ["run", "model.seb", "--input", "text.npz"], ["text.npz"]),
    ("run-nan", ["run", "model.seb", "--input", "nan.npz"], ["nan.npz", "NaN"]),
    ("run-backend", ["run", "model.seb", "--input", "in.npz", "--backend", "gpu"], ["--backend"]),
    ("export-missing", ["export", "missing.ckpt.npz", "-o", "y.seb"], ["missing.ckpt.npz"]),
    ("export-not-checkpoint", ["export", "model.seb", "-o", "y.seb"], ["model.seb"]),
    ("export-format", ["export", "mg.ckpt.npz", "--format", "keras", "-o", "y.seb"], ["--format", "keras"]),
    ("export-suffix", ["export", "mg.ckpt.npz", "--format", "onnx", "-o", "y.seb"], ["y.seb", ".onnx"]),
    ("export-float-bundle", ["export", "mg.ckpt.npz", "--float", "-o", "y.seb"], ["--float"]),
    ("export-input-bits", ["export", "mg.ckpt.npz", "--input-bits", "12", "-o", "y.seb"], ["--input-bits"]),
    ("train-unknown-task", ["train", "hrsnn", "--task", "nosuchtask", "--neurons", "20", "-o", "y.ckpt.npz"], ["nosuchtask"]),
    ("train-readout", ["train", "hrsnn", "--task", "mackey-glass", "--readout", "lstm", "-o", "y.ckpt.npz"], ["--readout", "lstm"]),
    ("train-encoder", ["train", "hrsnn", "--task", "mackey-glass", "--encoder", "morse", "-o", "y.ckpt.npz"], ["--encoder", "morse"]),
    ("train-neurons", ["train", "hrsnn", "--task", "mackey-glass", "--neurons", "1", "-o", "y.ckpt.npz"], ["--neurons"]),
    ("train-npz-without-data", ["train", "hrsnn", "--task", "npz", "--neurons", "20", "-o", "y.ckpt.npz"], ["--data"]),
]


@pytest.mark.parametrize("argv,names", [(a, n) for _, a, n in USER_ERRORS], ids=[i for i, _, _ in USER_ERRORS])
def test_user_errors_exit_2_with_one_line(work: Path, capsys: Any, argv: List[str], names: List[str]) -> None:
    before = {p.name for p in work.iterdir()}
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, *names)
    assert {p.name for p in work.iterdir()} == before, "a failed command left files behind"


@pytest.mark.parametrize("fmt_name", ["onnx", "tflite"])
def test_export_run_eval_verify_on_each_backend(work: Path, capsys: Any, fmt_name: str) -> None:
    """checkpoint -> step graph -> run and eval on its interpreter, same numbers as the bundle."""
    rc, out, err = call(capsys, "export", "mg.ckpt.npz", "--format", fmt_name, "-o", "m." + fmt_name, "--json")
    assert rc == 0, err
    exported = one_json(out)
    assert exported["format"] == fmt_name and exported["int8_weights"] and exported["bytes"] == (work / ("m." + fmt_name)).stat().st_size
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


def test_verify_exits_1_when_the_forms_disagree(work: Path, capsys: Any) -> None:
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


def test_user_errors_with_json_still_print_nothing_on_stdout(work: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "info", "missing.seb", "--json")
    assert_user_error(rc, out, err, "missing.seb")


@pytest.mark.parametrize(
    "argv,mentions",
    [
        (["train", "hrsnn", "--task", "mackey-glass"], "--output"),  # missing option
        (["info"], "model"),  # missing argument
        (["eval", "model.seb"], "--task"),
        (["eval", "model.seb", "--task", "mackey-glass", "--repeats", "many"], "--repeats"),
        (["info", "model.seb", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
    ],
    ids=["missing-option", "missing-argument", "missing-task", "bad-integer", "unknown-option", "unknown-command"],
)
def test_usage_errors_exit_2(work: Path, capsys: Any, argv: List[str], mentions: str) -> None:
    rc, out, err = call(capsys, *argv)
    assert rc == 2, (out, err)
    assert out == ""
    assert mentions in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, like every other user error


@pytest.mark.parametrize("model", ["model.seb", "model.onnx"])
def test_eval_on_a_task_that_does_not_fit_the_model(work: Path, capsys: Any, model: str) -> None:
    """A one-input forecaster on 64-pixel digits: one line naming the file and --task, exit 2."""
    rc, out, err = call(capsys, "eval", model, "--task", "digits")
    assert_user_error(rc, out, err, model)
    assert "--task digits" in err and "takes 1" in err


def test_debug_raises_instead_of_a_message(work: Path, capsys: Any) -> None:
    with pytest.raises(BundleError, match="missing.seb"):
        main(["--debug", "info", "missing.seb"])
    with pytest.raises(SpikeedgeError, match="--readout"):
        main(["--debug", "train", "hrsnn", "--task", "mackey-glass", "--readout", "lstm", "-o", "y.ckpt.npz"])


def test_debug_after_the_command(work: Path) -> None:
    with pytest.raises(BundleError):
        main(["info", "missing.seb", "--debug"])


def test_version(capsys: Any) -> None:
    from spikeedge import __version__

    rc, out, _ = call(capsys, "--version")
    assert rc == 0 and out.strip() == __version__


# ----------------------------------------------------------------------------- --json everywhere, help everywhere


def _command_tree() -> List[Tuple[Tuple[str, ...], Any]]:
    import typer.main
    from spikeedge.cli.app import app

    found = []

    def walk(path: Tuple[str, ...], cmd: Any) -> None:
        found.append((path, cmd))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(path + (name,), sub)

    walk((), typer.main.get_command(app))
    return found


def _leaves() -> List[Tuple[Tuple[str, ...], Any]]:
    return [(p, c) for p, c in _command_tree() if p and not getattr(c, "commands", None)]


# Cheap invocations of every command that accepts --json ("demo" is checked on the fixture).
JSON_CALLS: Dict[Tuple[str, ...], List[str]] = {
    ("prune", "lnp"): ["prune", "lnp", "--neurons", "30", "--max-iterations", "1", "-o", "p.ckpt.npz"],
    ("info",): ["info", "model.seb"],
    ("eval",): ["eval", "model.seb", "--task", "mackey-glass", "--repeats", "2"],
    ("run",): ["run", "model.seb", "--input", "in.npz", "-o", "o.npz"],
    ("export",): ["export", "mg.ckpt.npz", "-o", "e.seb"],
    ("verify",): ["verify", "model.onnx", "--reference", "model.seb", "--task", "mackey-glass", "--repeats", "2"],
    ("train", "hrsnn"): ["train", "hrsnn", "--task", "mackey-glass", "--neurons", "20", "-o", "t.ckpt.npz"],
    ("train", "convsnn"): ["train", "convsnn", "--task", "digits", "--width", "0.25", "--epochs", "1", "-o", "c.ckpt.npz"],
    ("prune", "sca"): ["prune", "sca", "--task", "digits", "--width", "0.25", "--epochs", "1", "--finetune-epochs", "0", "-o", "s.ckpt.npz"],
    ("boards", "list"): ["boards", "list"],
    ("power", "watch"): ["power", "watch", "--meter", "ina3221-hwmon", "--root", str(ROOT / "tests" / "fixtures" / "power" / "orin_nx_jp6"), "--duration", "0.3"],
    ("power", "record"): ["power", "record", "--meter", "ina3221-hwmon", "--root", str(ROOT / "tests" / "fixtures" / "power" / "orin_nx_jp6"), "--baseline", "0.1", "true"],
    ("profile",): ["profile", "model.seb", "--task", "mackey-glass", "--samples", "2", "--meter", "estimate"],
    ("boards", "show"): ["boards", "show", "rpi5"],
    ("boards", "detect"): ["boards", "detect", "--root", str(ROOT / "tests" / "fixtures" / "boards" / "jetson-orin-nano")],
    ("bench",): ["bench", "model.seb", "--task", "mackey-glass", "--samples", "1", "--trials", "1", "--warmup", "0", "--meter", "estimate", "--no-store"],
    ("results", "list"): ["results", "list", "--db", "runs.sqlite"],
    ("results", "compare"): ["results", "compare", "latest~1", "latest", "--db", "runs.sqlite"],
    ("report",): ["report", "-o", "report.html", "--db", "runs.sqlite"],
}


def test_every_json_command_is_covered() -> None:
    takes_json = {path for path, cmd in _leaves() if any("--json" in p.opts for p in cmd.params)}
    assert ("demo",) in takes_json
    # flash and rollback need a board: tests/test_deploy.py runs their --json against a real sshd
    missing = takes_json - set(JSON_CALLS) - {("demo",), ("flash",), ("rollback",)}
    assert not missing, "add a cheap call of %s to JSON_CALLS" % sorted(missing)


@pytest.mark.parametrize("path", sorted(JSON_CALLS), ids=[" ".join(p) for p in sorted(JSON_CALLS)])
def test_json_prints_exactly_one_object(work: Path, capsys: Any, path: Tuple[str, ...]) -> None:
    rc, out, err = call(capsys, *JSON_CALLS[path], "--json")
    assert rc == 0, err
    one_json(out)
    # and without --json the same command prints something that is not a lone JSON object
    rc, human, err = call(capsys, *JSON_CALLS[path])
    assert rc == 0, err
    assert human.strip() and not human.lstrip().startswith("{")


def test_every_command_has_help_with_an_example(capsys: Any) -> None:
    tree = _command_tree()
    assert {" ".join(p) for p, _ in tree} >= {"", "demo", "train", "train hrsnn", "export", "info", "run", "eval"}
    for path, cmd in tree:
        assert (cmd.help or "").strip(), "%r has no help text" % " ".join(path)
    for path, cmd in _leaves():
        assert any(line.strip().startswith("Example: spikeedge " + " ".join(path)) for line in cmd.help.splitlines()), \
            "%r: help has no 'Example: spikeedge %s ...' line" % (" ".join(path), " ".join(path))
        rc, out, err = call(capsys, *path, "--help")
        assert rc == 0, err
        assert "Example:" in out and "--help" in out


# ----------------------------------------------------------------------------- the generated reference


def _gen_tool() -> Any:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_cli_reference_is_current() -> None:
    """What CI runs: the checked-in docs/cli.md equals what the tool generates."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_cli_docs.py"), "--check"],
        capture_output=True, text=True, env=dict(os.environ, COLUMNS="37", TYPER_USE_RICH="0"),
    )
    assert proc.returncode == 0, proc.stderr


def test_cli_reference_check_detects_stale_file_and_covers_every_command(tmp_path: Path) -> None:
    tool = _gen_tool()
    text = tool.render()
    for path, cmd in _command_tree():
        heading = "## `%s`" % " ".join(("spikeedge",) + path)
        assert heading in text
        for p in cmd.params:
            for opt in p.opts if p.param_type_name == "option" else [p.name.upper()]:
                assert "`%s`" % opt in text, "%s of %s missing from the reference" % (opt, heading)
    stale = tmp_path / "cli.md"
    stale.write_text(text.replace("Recurrent neurons.", "Neurons."))
    assert tool.main(["--check", "--output", str(stale)]) == 1
    assert tool.main(["--check", "--output", str(tmp_path / "absent.md")]) == 1
    assert tool.main(["--output", str(stale)]) == 0
    assert tool.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text() == text == tool.render()  # deterministic
