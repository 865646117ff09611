"""Issue 22, a newcomer's path: every mistake in one line, models that remember their data,
reproducible artifacts, help that reads like the docs.

The CLI is called in-process (``spikeedge.cli.app.main``) in a temporary folder. Data sets are
generated here: a UCR-style two-class set laid out (samples, channels, length) = (n, 1, 150).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
import typer
from cli_helpers import assert_user_error, call, one_json

from spikeedge.cli.app import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ABSURD = 10**12


# ----------------------------------------------------------------------------- helpers


def _leaves() -> List[Tuple[Tuple[str, ...], Any]]:
    out: List[Tuple[Tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: Tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, path + (name,))
        elif path:
            out.append((path, cmd))

    walk(typer.main.get_command(app), ())
    return out


def _annotation(param: Any) -> Any:
    desc = getattr(param, "type_descriptor", None)
    ann = getattr(desc, "annotation", None)
    if ann is None:
        ann = {"integer": int, "float": float}.get(getattr(getattr(param, "type", None), "name", ""), None)
    return ann


def _numeric_options() -> List[Tuple[Tuple[str, ...], Any, Any]]:
    found = []
    for path, cmd in _leaves():
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and not getattr(p, "is_flag", False) and _annotation(p) in (int, float):
                found.append((path, cmd, p))
    return found


def _filled(cmd: Any, skip: Any) -> List[str]:
    """Dummies for the required parameters of ``cmd``: a file that does not exist, or a word."""
    args: List[str] = []
    for p in cmd.params:
        if p is skip or not p.required:
            continue
        value = "missing-%s.file" % p.name if _annotation(p) is Path else "nonexistent"
        if getattr(p, "param_type_name", "") == "argument":
            args.append(value)
        else:
            args += [p.opts[0], value]
    return args


NUMERIC = _numeric_options()


def test_the_programmatic_parametrisation_finds_the_options_of_the_issue() -> None:
    names = {(" ".join(path), p.opts[0]) for path, _, p in NUMERIC}
    assert {("demo", "--seed"), ("train hrsnn", "--epochs"), ("eval", "--windows"), ("prune lnp", "--target-synapses")} <= names
    assert len(NUMERIC) >= 40


@pytest.mark.parametrize("value", [-1, 0, ABSURD])
@pytest.mark.parametrize("path,cmd,param", NUMERIC, ids=["%s %s" % (" ".join(p), o.opts[0]) for p, _, o in NUMERIC])
def test_every_numeric_option_is_checked_at_the_edge(tmp_path: Path, monkeypatch: Any, capsys: Any, path: Any, cmd: Any, param: Any, value: int) -> None:
    """-1, 0 and an absurd value: refused at parse time with one line naming the option, or
    accepted by the parser (then, where the command has required inputs, the missing-file dummies
    make it fail fast: exit 2, one line, no traceback). -1 and the absurd value are always refused."""
    monkeypatch.chdir(tmp_path)
    opt = param.opts[0]
    argv = _filled(cmd, param) + [opt, str(value)]
    try:
        cmd.make_context(" ".join(path), list(argv))
        accepted = True
    except Exception as exc:  # click's BadParameter / UsageError (vendored by Typer)
        assert hasattr(exc, "exit_code"), repr(exc)
        accepted = False
    assert not (accepted and value in (-1, ABSURD)), "%s %s accepts %s" % (" ".join(path), opt, value)
    if accepted and not any(p.required for p in cmd.params):
        return  # validation only: a command without required inputs would start real work
    rc, out, err = call(capsys, *path, *argv)
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err
    if not accepted:
        assert_user_error(rc, out, err, opt)
    elif rc == 2:
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err


@pytest.mark.parametrize("argv,named", [
    (["demo", "--seed", "-1", "--quick"], "--seed"),
    (["train", "hrsnn", "--task", "digits", "--readout", "bptt", "--epochs", "-1", "-o", "x.ckpt.npz"], "--epochs"),
    (["eval", "model.seb", "--task", "mackey-glass", "--repeats", "-3"], "--repeats"),
    (["eval", "model.seb", "--task", "mackey-glass", "--tau", "5"], "--tau"),
    (["eval", "model.seb", "--task", "mackey-glass", "--windows", "500"], "windows"),
])
def test_the_issues_examples_name_the_option(tmp_path: Path, monkeypatch: Any, capsys: Any, argv: List[str], named: str) -> None:
    monkeypatch.chdir(tmp_path)
    _forecaster(tmp_path)
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, named)
    assert "mackey_glass_windows" not in err and "expected non-negative integer" not in err


# ----------------------------------------------------------------------------- data sets and models


def _ucr(path: Path, n_train: int = 120, n_test: int = 60, seed: int = 0) -> Path:
    """Two classes of noisy sines of different periods, UCR layout (n, 1, 150)."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> Tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        t = np.arange(150)
        f = np.where(y == 0, 1 / 25, 1 / 12)[:, None]
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (n, 1))) + 0.3 * rng.standard_normal((n, 150))
        return x[:, None, :], y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def _forecaster(folder: Path) -> Path:
    """A small trained Mackey-Glass HRSNN and its bundle (``model.seb``) in ``folder``."""
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import export_bundle, train_hrsnn
    from spikeedge.tasks.registry import load_task

    if not (folder / "model.seb").exists():
        task = load_task("mackey-glass", repeats=2)
        model, record = train_hrsnn(task, HrsnnConfig(n_neurons=20, seed=1))
        export_bundle(model, record, task, folder / "model.seb")
    return folder / "model.seb"


def test_ucr_layout_is_refused_without_layout_and_read_right_with_it(tmp_path: Path) -> None:
    from spikeedge.errors import DataError
    from spikeedge.tasks.registry import load_task

    data = _ucr(tmp_path / "ucr.npz")
    with pytest.raises(DataError, match="--layout"):
        load_task("npz", data=str(data))
    task = load_task("npz", data=str(data), layout="nct")
    assert task.x_train.shape == (120, 150, 1) and task.n_inputs == 1 and task.n_classes == 2
    assert "150 steps x 1 inputs, 2 classes" in task.description
    assert load_task("npz", data=str(data), layout="ntc").x_train.shape == (120, 1, 150)  # asked for: one step of 150


def test_ucr_file_trains_with_layout_and_exports_without_data(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """The acceptance path: refused without --layout; trained with --layout nct (above chance);
    exported from the checkpoint alone, the data file gone."""
    monkeypatch.chdir(tmp_path)
    _ucr(tmp_path / "ucr.npz")
    base = ["train", "hrsnn", "--task", "npz", "--data", "ucr.npz", "--neurons", "40", "-o", "u.ckpt.npz", "--json"]
    assert_user_error(*call(capsys, *base), "--layout")
    rc, out, err = call(capsys, *base, "--layout", "nct")
    assert rc == 0, err
    assert "read as nct: 150 steps x 1 inputs, 2 classes" in err
    result = one_json(out)
    assert result["float_metric"]["accuracy"] >= 0.8  # chance is 0.5
    assert result["data"]["sha256"] == hashlib.sha256(Path("ucr.npz").read_bytes()).hexdigest()
    assert result["data"]["layout"] == "nct" and result["calibration"]["input_peak_abs"] > 0
    Path("ucr.npz").unlink()
    rc, out, err = call(capsys, "export", "u.ckpt.npz", "-o", "u.seb", "--json")
    assert rc == 0, err
    from spikeedge.runtime import bundle as fmt

    bundle = fmt.load("u.seb")
    assert bundle.encoder.n_inputs == 1 and bundle.n_outputs == 2 and bundle.output == "last"
    assert bundle.provenance["data"]["sha256"] == result["data"]["sha256"] and "path" not in bundle.provenance["data"]


def test_a_classifier_on_a_forecast_task_is_one_plain_line(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    _ucr(tmp_path / "ucr.npz")
    assert call(capsys, "train", "hrsnn", "--task", "npz", "--data", "ucr.npz", "--layout", "nct", "--neurons", "20", "-o", "c.ckpt.npz")[0] == 0
    for model in ("c.ckpt.npz",):
        rc, out, err = call(capsys, "eval", model, "--task", "mackey-glass", "--windows", "1")
        assert_user_error(rc, out, err, model, "--task mackey-glass", "gives 2 output(s)")
        assert "broadcast" not in err


def test_untrained_checkpoint_warns_in_eval_and_export_refuses(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert call(capsys, "prune", "lnp", "--neurons", "30", "--max-iterations", "1", "-o", "p.ckpt.npz")[0] == 0
    rc, out, err = call(capsys, "eval", "p.ckpt.npz", "--task", "mackey-glass", "--windows", "1", "--json")
    assert rc == 0, err
    assert "warning: p.ckpt.npz was never trained" in err
    assert_user_error(*call(capsys, "export", "p.ckpt.npz", "-o", "p.seb"), "p.ckpt.npz", "--allow-untrained")
    assert not Path("p.seb").exists()
    rc, out, err = call(capsys, "export", "p.ckpt.npz", "-o", "p.seb", "--allow-untrained")
    assert rc == 0 and Path("p.seb").is_file(), err


def test_pruned_checkpoint_trains_from_the_cli_and_exports(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """Issue 20, item 0: prune once, train that network (--from), export it."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = call(capsys, "prune", "lnp", "--neurons", "40", "--max-iterations", "1", "-o", "p.ckpt.npz", "--json")
    assert rc == 0, err
    pruned = one_json(out)["neurons"]
    assert pruned < 40
    rc, out, err = call(capsys, "train", "hrsnn", "--from", "p.ckpt.npz", "--task", "mackey-glass", "--windows", "2", "-o", "t.ckpt.npz", "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["neurons"] == pruned and result["pruning"]["method"] == "lnp" and result["parent"] == {"checkpoint": "p.ckpt.npz"}
    assert result["float_metric"]["smape"] < 100
    rc, out, err = call(capsys, "export", "t.ckpt.npz", "-o", "t.seb", "--json")
    assert rc == 0, err
    assert_user_error(*call(capsys, "train", "hrsnn", "--from", "gone.ckpt.npz", "--task", "mackey-glass", "-o", "x.ckpt.npz"), "--from", "gone.ckpt.npz")


# ----------------------------------------------------------------------------- windows and tau


def test_user_series_gets_the_windowed_protocol(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    from spikeedge.tasks.registry import Windows, load_task

    monkeypatch.chdir(tmp_path)
    np.savez("s.npz", series=1.0 + 0.5 * np.sin(np.arange(1200) / 7.0))
    task = load_task("npz", data="s.npz", windows=Windows(count=5, train=300, test=200, shift=100))
    assert [w.start for w in task.windows] == [0, 100, 200, 300, 400]
    assert len(task.windows[0].train_x) == 300 and len(task.windows[0].test_y) == 200
    assert len(load_task("npz", data="s.npz", repeats=4).windows) == 4  # --repeats counts for npz too
    _forecaster(tmp_path)
    rc, out, err = call(capsys, "eval", "model.seb", "--task", "npz", "--data", "s.npz", "--windows", "6", "--json")
    assert rc == 0, err
    assert one_json(out)["windows"] == 6 and "6 window(s)" in err
    assert_user_error(*call(capsys, "eval", "model.seb", "--task", "npz", "--data", "s.npz", "--windows", "5", "--window-train", "2000"), "too short")


def test_mackey_glass_tau(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    from spikeedge.tasks.registry import load_task

    assert not np.allclose(load_task("mackey-glass", tau=30, repeats=1).series, load_task("mackey-glass", repeats=1).series)
    monkeypatch.chdir(tmp_path)
    _forecaster(tmp_path)
    rc, out, err = call(capsys, "eval", "model.seb", "--task", "mackey-glass", "--tau", "30", "--windows", "2", "--json")
    assert rc == 0, err
    assert one_json(out)["windows"] == 2
    assert_user_error(*call(capsys, "eval", "model.seb", "--task", "digits", "--tau", "30"), "--tau")


# ----------------------------------------------------------------------------- reproducible bundles


def test_same_training_gives_a_byte_identical_bundle(tmp_path: Path) -> None:
    """Two trainings of one seed differ only in their wall-clock times; the bundles do not."""
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import export_bundle, train_hrsnn
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass", repeats=2)
    blobs = []
    for i in range(2):
        model, record = train_hrsnn(task, HrsnnConfig(n_neurons=20, seed=3))
        record["training"]["train_seconds"] = 1.5 + i  # a different clock on each run
        record["pruning"] = {"method": "lnp", "seconds": 10.0 * (i + 1), "phase_seconds": {"timescales": 3.0 + i}}
        export_bundle(model, record, task, tmp_path / ("%d.seb" % i))
        blobs.append((tmp_path / ("%d.seb" % i)).read_bytes())
    assert blobs[0] == blobs[1]


@pytest.mark.slow
def test_two_quick_demos_print_the_same_bundle_digest(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    digests = []
    for out in ("a", "b"):
        rc, stdout, err = call(capsys, "demo", "--quick", "--json", "--out", out)
        assert rc == 0, err
        digests.append(one_json(stdout)["bundle_sha256"])
    assert digests[0] == digests[1]
    assert Path("a/model.seb").read_bytes() == Path("b/model.seb").read_bytes()


# ----------------------------------------------------------------------------- float evaluation, training choices


def test_float_stepper_forms_the_recurrent_weights_once_and_keeps_no_graph(monkeypatch: Any) -> None:
    import torch

    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
    from spikeedge.offline.train import FloatStepper

    model = HRSNN(HrsnnConfig(n_neurons=30, seed=0))
    calls = []
    original = HRSNN.effective_w_rec
    monkeypatch.setattr(HRSNN, "effective_w_rec", lambda self: calls.append(1) or original(self))
    stepper = FloatStepper(model)
    stepper.start(4, np.zeros((4, 1)))
    for _ in range(50):
        y = stepper.step(np.ones((4, 1)))
    assert len(calls) == 1 and y.shape == (4, 1)
    assert not stepper.carry[2].requires_grad and torch.is_grad_enabled()  # no graph kept; grad mode left as it was


def _late_signal_task(seed: int = 0) -> Any:
    """The class shows only in the first 20 of 60 steps; the rest is noise. A readout of the last
    steps alone cannot see it; one over the whole sequence can."""
    from spikeedge.tasks.registry import ClassifyTask

    rng = np.random.default_rng(seed)

    def make(n: int) -> Tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        x = 0.5 * rng.standard_normal((n, 60, 1))
        x[:, :20, 0] += np.where(y == 0, -1.5, 1.5)[:, None]
        return x, y

    xtr, ytr = make(160)
    xte, yte = make(80)
    return ClassifyTask("early", xtr, ytr, xte, yte, 2)


def test_classifier_readout_is_chosen_on_validation_data() -> None:
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import score, train_hrsnn
    from spikeedge.offline.train import FloatStepper

    task = _late_signal_task()
    model, record = train_hrsnn(task, HrsnnConfig(n_neurons=40, seed=0, n_inputs=1, n_outputs=2))
    training = record["training"]
    assert training["pool"] == "sequence" and training["tau_trace"] == 60.0
    assert training["validation_samples"] == 32  # 20% of the 160 training samples; never the test split
    assert score(FloatStepper(model), task)["accuracy"] >= 0.8


def test_bptt_stops_early_and_keeps_the_best_validation_epoch() -> None:
    import torch

    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
    from spikeedge.offline.train import _classify_eval, encode_sequences, train_bptt, validation_split

    task = _late_signal_task()
    model = HRSNN(HrsnnConfig(n_neurons=30, seed=0, n_inputs=1, n_outputs=2))
    record = train_bptt(model, task, epochs=6, lr=5e-2, patience=2)
    curve = record["validation"]["curve"]
    assert record["epochs_run"] <= 6 and len(curve) == record["epochs_run"] + 1
    assert curve[record["best_epoch"]] == min(curve)
    _, val = validation_split(len(task.y_train), seed=0)
    frames = encode_sequences(model, task.x_train[val])
    loss, _ = _classify_eval(model, frames, torch.as_tensor(task.y_train[val]))
    assert loss == pytest.approx(min(curve), abs=1e-5)  # the kept weights are the best epoch's


# ----------------------------------------------------------------------------- help


def _first_paragraph(doc: str) -> str:
    import inspect

    text = inspect.cleandoc(doc or "").split("\n\n")[0]
    return re.sub(r"``([^`]+)``", r"'\1'", " ".join(text.split()))


def test_help_reads_like_the_docs(capsys: Any, monkeypatch: Any) -> None:
    """No "<bool>" for flags, no reST double backquotes, and in a wide terminal every command's
    summary on one line of the command list (never cut where the source's line broke)."""
    monkeypatch.setenv("COLUMNS", "250")
    rc, root, err = call(capsys, "--help")
    assert rc == 0, err
    lines = root.splitlines()
    for name, cmd in typer.main.get_command(app).commands.items():
        first = _first_paragraph(cmd.help or "")
        assert any(name in line and first in line for line in lines), "%s: %r is cut in the command list" % (name, first)
    for path, _ in _leaves() + [(("train",), None), (("prune",), None)]:
        rc, out, err = call(capsys, *path, "--help")
        assert rc == 0, err
        assert "<bool>" not in out, "%s --help shows a flag's type" % " ".join(path)
        assert "``" not in out, "%s --help shows raw reST" % " ".join(path)
