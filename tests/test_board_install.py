"""A bare board install: the runtime, the tasks and the CLI work without the offline extra.

(c) The digits task (shipped data, read with numpy) scores and profiles a bundle on a board, and
``report`` (the ``report`` extra: matplotlib) writes its page, with torch and scikit-learn absent.

(a) A child Python in which ``torch``, ``scipy``, ``sklearn`` and ``networkx`` cannot be imported
(a ``sys.meta_path`` finder placed first refuses them) loads a bundle the offline code made in this
process, runs it on the event-driven runtime and through the CLI, and must reproduce this
process's outputs exactly; the offline commands must refuse in one line naming the extra.
(b) vermin: the board-side code runs on Python 3.8.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("torch", "scipy", "sklearn", "networkx")
# The start of every child below: a board without the offline extra, whose packages are not there.
BOARD_PREAMBLE = textwrap.dedent(
    """
    import contextlib, io, json, sys

    BLOCKED = set(%r)

    class RefuseOffline:
        '''What a board without the offline extra looks like: these packages are not there.'''

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("No module named %%r (blocked: board install)" %% name)
            return None

    sys.meta_path.insert(0, RefuseOffline())
    """
    % (BLOCKED,)
)

CHILD = BOARD_PREAMBLE + textwrap.dedent(
    """
    import numpy as np
    import spikeedge.runtime
    import spikeedge.runtime.engine
    import spikeedge.tasks.registry
    import spikeedge.cli.app
    from spikeedge.cli.app import main
    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.sessions import open_session

    bundle_path, inputs_path, checkpoint_path, onnx_path, tflite_path = sys.argv[1:6]
    report = {}
    with np.load(inputs_path) as z:
        x, expected = z["x"], z["outputs"]
    result = open_session(fmt.load(bundle_path)).run(x)
    report["session_equal"] = bool(np.array_equal(result.outputs, expected))
    report["session_synops"] = result.synops
    report["session_spikes"] = result.spike_counts

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
        return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

    report["info"] = cli("info", bundle_path, "--json")
    report["run"] = cli("run", bundle_path, "--input", inputs_path, "-o", "board-out.npz", "--json")
    report["eval"] = cli("eval", bundle_path, "--task", "mackey-glass", "--repeats", "2")
    report["eval_json"] = cli("eval", bundle_path, "--task", "mackey-glass", "--repeats", "2", "--json")
    for name, path in (("onnx", onnx_path), ("tflite", tflite_path)):  # the other backends need no offline package
        report["run_" + name] = cli("run", path, "--input", inputs_path, "--json")
        report["verify_" + name] = cli("verify", path, "--reference", bundle_path, "--task", "mackey-glass", "--repeats", "2", "--json")
    report["offline"] = {
        "demo": cli("demo", "--quick", "--out", "demo-out"),
        "train": cli("train", "hrsnn", "--task", "mackey-glass", "--neurons", "20", "-o", "t.ckpt.npz"),
        "export": cli("export", checkpoint_path, "-o", "e.seb"),
        "eval-checkpoint": cli("eval", checkpoint_path, "--task", "mackey-glass", "--repeats", "2"),
    }
    report["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    try:
        import torch  # noqa: F401
        report["blocker_works"] = False
    except ImportError:
        report["blocker_works"] = True
    sys.stdout.write(json.dumps(report) + "\\n")
    """
)


def _make_model(tmp_path: Path, encoder: str) -> Dict[str, Any]:
    """Train a small HRSNN with the offline code, export it, and run it here for 100 steps."""
    pytest.importorskip("torch")
    from spikeedge.offline.checkpoint import save_checkpoint
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import export_bundle, train_hrsnn
    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.sessions import open_session
    from spikeedge.tasks.protocols import forecast_smape
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass", repeats=2)
    model, record = train_hrsnn(task, HrsnnConfig(n_neurons=40, encoder=encoder, seed=3))
    checkpoint = tmp_path / "model.ckpt.npz"
    save_checkpoint(model, checkpoint, record)
    bundle_path = tmp_path / "model.seb"
    bundle = export_bundle(model, record, task, bundle_path)
    assert bundle.encoder.kind == "encoder." + encoder
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.offline.export_tflite import export_tflite

    export_onnx(bundle, tmp_path / "model.onnx")
    export_tflite(bundle, tmp_path / "model.tflite")
    x = np.asarray(task.series[:100], np.float64)[None, :, None]
    result = open_session(fmt.load(bundle_path)).run(x)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=x, outputs=result.outputs)
    return {
        "bundle": bundle_path, "checkpoint": checkpoint, "inputs": inputs, "result": result,
        "smape": forecast_smape(open_session(bundle), task.windows)["smape"], "sha256": bundle.sha256,
    }


@pytest.mark.parametrize("encoder", ["direct", "rate", "delta"])
def test_board_runs_bundles_and_cli_without_offline_packages(tmp_path: Path, encoder: str) -> None:
    made = _make_model(tmp_path, encoder)
    assert made["result"].synops > 0 and np.all(np.isfinite(made["result"].outputs))
    board = tmp_path / "board"
    board.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(made["bundle"]), str(made["inputs"]), str(made["checkpoint"]),
         str(tmp_path / "model.onnx"), str(tmp_path / "model.tflite")],
        cwd=str(board), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["blocker_works"], "the import blocker let torch through: the test proves nothing"
    assert report["imported"] == [], "the board imported %s" % report["imported"]

    # the runtime in the child reproduces this process exactly
    assert report["session_equal"]
    assert report["session_synops"] == made["result"].synops
    assert report["session_spikes"] == made["result"].spike_counts

    for name in ("info", "run", "eval", "eval_json"):
        assert report[name]["rc"] == 0, (name, report[name]["err"])
    info = json.loads(report["info"]["out"])
    assert info["sha256"] == made["sha256"] and info["neurons"] == 40
    run = json.loads(report["run"]["out"])
    assert run["synops"] == made["result"].synops and run["steps"] == 100
    with np.load(board / "board-out.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["outputs"], made["result"].outputs)
    assert json.loads(report["eval_json"]["out"])["smape"] == made["smape"]
    assert "smape" in report["eval"]["out"]
    for name in ("onnx", "tflite"):  # the graph backends on the board: same spikes and operations
        assert report["run_" + name]["rc"] == 0, report["run_" + name]["err"]
        ran = json.loads(report["run_" + name]["out"])
        assert ran["backend"] == name and ran["synops"] == made["result"].synops
        assert report["verify_" + name]["rc"] == 0, report["verify_" + name]["err"]
        assert json.loads(report["verify_" + name]["out"])["passed"]

    # the offline commands refuse in one line that names the extra, and leave nothing behind
    for name, res in report["offline"].items():
        lines = res["err"].strip().splitlines()
        assert res["rc"] == 2, (name, res)
        assert len(lines) == 1 and "Traceback" not in res["err"], (name, res["err"])
        assert "spikeedge[offline]" in lines[0], (name, lines[0])
        assert res["out"] == ""
    assert sorted(p.name for p in board.iterdir()) == ["board-out.npz"]


# ----------------------------------------------------------------------------- digits and report on a board


DIGITS_CHILD = BOARD_PREAMBLE + textwrap.dedent(
    """    from spikeedge.cli.app import main

    bundle_path, db = sys.argv[1:3]

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
        return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

    report = {
        "eval": cli("eval", bundle_path, "--task", "digits", "--json"),
        "profile": cli("profile", bundle_path, "--task", "digits", "--samples", "4", "--meter", "none", "--json"),
        "report": cli("report", "-o", "page.html", "--db", db, "--json"),
    }
    report["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    try:
        import sklearn  # noqa: F401
        report["blocker_works"] = False
    except ImportError:
        report["blocker_works"] = True
    sys.stdout.write(json.dumps(report) + "\\n")
    """
)


@pytest.mark.slow
def test_board_scores_digits_and_writes_reports_without_offline_packages(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from results_records import make_record

    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import export_bundle, train_hrsnn
    from spikeedge.results.store import Store
    from spikeedge.runtime.sessions import open_session
    from spikeedge.tasks.protocols import classify
    from spikeedge.tasks.registry import load_task

    task = load_task("digits")
    model, record = train_hrsnn(task, HrsnnConfig(n_neurons=40, seed=3))
    bundle = export_bundle(model, record, task, tmp_path / "digits.seb")
    here = classify(open_session(bundle), task.x_test, task.y_test)["accuracy"]
    with Store(tmp_path / "results.db") as store:
        store.add_runs([make_record(seed=1), make_record(seed=2, board="orin-nano")])
    board = tmp_path / "board"
    board.mkdir()
    proc = subprocess.run([sys.executable, "-c", DIGITS_CHILD, str(tmp_path / "digits.seb"), str(tmp_path / "results.db")],
                          cwd=str(board), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["blocker_works"] and report["imported"] == []
    for name in ("eval", "profile", "report"):
        assert report[name]["rc"] == 0, (name, report[name]["err"])
    scored = json.loads(report["eval"]["out"])
    assert scored["accuracy"] == here and scored["task"] == "digits"       # same split, same score
    profiled = json.loads(report["profile"]["out"])
    assert profiled["inferences"] == 4 and profiled["synops_per_inference"] > 0
    assert json.loads(report["report"]["out"])["runs"] == 2
    assert (board / "page.html").read_text().count("<img") >= 1


# ----------------------------------------------------------------------------- vermin


VERMIN_ARGS = ["-t=3.8-", "--no-tips", "--violations", "--eval-annotations", "--no-config-file"]


def _vermin(*paths: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    pytest.importorskip("vermin")
    # vermin has no ``__main__`` module, so ``python -m vermin`` does not work: call its main()
    cmd = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]
    return subprocess.run(cmd + VERMIN_ARGS + list(paths), cwd=str(cwd), capture_output=True, text=True, timeout=300)


def test_board_side_code_runs_on_python_3_8() -> None:
    proc = _vermin("runtime", "board", "measure", "tasks", "cli", "deploy", "errors.py", "__init__.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Minimum required versions: 3." in proc.stdout, proc.stdout
    minimum = proc.stdout.split("Minimum required versions:")[1].split()[0]
    assert tuple(int(v) for v in minimum.split(".")[:2]) <= (3, 8), proc.stdout


def test_vermin_flags_code_newer_than_3_8(tmp_path: Path) -> None:
    """The check above can fail: the same flags reject a 3.9 feature."""
    (tmp_path / "new.py").write_text("import math\n\nprint(math.lcm(4, 6))\n")
    proc = _vermin("new.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "math.lcm" in proc.stdout


# ----------------------------------------------------------------------------- conv bundles on a board


CONV_CHILD = BOARD_PREAMBLE + textwrap.dedent(
    """
    import numpy as np
    from spikeedge.cli.app import main
    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.sessions import open_session

    bundle_path, inputs_path = sys.argv[1:3]
    with np.load(inputs_path) as z:
        x, expected = z["x"], z["outputs"]
    report = {}
    for method in ("event", "dense", "auto"):
        report[method] = bool(np.array_equal(open_session(fmt.load(bundle_path), method=method).run(x).outputs, expected))

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
        return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

    report["info"] = cli("info", bundle_path, "--json")
    report["run"] = cli("run", bundle_path, "--input", inputs_path, "--json")
    report["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    sys.stdout.write(json.dumps(report) + "\\n")
    """
)


def test_board_runs_conv_bundles_without_offline_packages(tmp_path: Path) -> None:
    """A conv bundle made by the offline quantizer runs bit-identically without torch."""
    pytest.importorskip("torch")
    from test_conv_runtime_exact import net_and_bundle

    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.sessions import open_session

    _, bundle, x = net_and_bundle("vgg28", 0)
    path = tmp_path / "conv.seb"
    fmt.save(bundle, path)
    result = open_session(bundle).run(x)
    np.savez(tmp_path / "images.npz", x=x, outputs=result.outputs)
    proc = subprocess.run([sys.executable, "-c", CONV_CHILD, str(path), str(tmp_path / "images.npz")],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["imported"] == []
    assert report["event"] and report["dense"] and report["auto"]
    assert report["info"]["rc"] == 0 and json.loads(report["info"]["out"])["model"] == "conv"
    run = json.loads(report["run"]["out"])
    assert report["run"]["rc"] == 0 and run["synops"] == result.synops
    assert run["predictions"] == np.argmax(result.outputs[:, -1], axis=1).tolist()


# ----------------------------------------------------------------------------- declared dependencies


def _declared() -> Dict[str, Any]:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _selected(reqs: Any, python: str, extra: str = "") -> Dict[str, Any]:
    """The requirements an installer picks on ``python`` (markers evaluated for it, not for us)."""
    from packaging.requirements import Requirement

    env = {"python_version": python, "python_full_version": python + ".0", "extra": extra,
           "sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix"}
    picked = {}
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            picked[req.name] = req.specifier
    return picked


PYTHONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]


def test_tflite_extra_picks_an_interpreter_with_wheels_on_every_python() -> None:
    """ai-edge-litert has no Python 3.8 wheels; tflite-runtime has none past 3.11 (docs/install.md
    lists what exists): exactly one of them, the right one, for each Python the package supports."""
    pytest.importorskip("packaging")
    tflite = _declared()["optional-dependencies"]["tflite"]
    for py in PYTHONS:
        picked = set(_selected(tflite, py, "tflite"))
        assert picked == ({"tflite-runtime"} if py == "3.8" else {"ai-edge-litert"}), (py, picked)


def test_board_dependencies_work_together() -> None:
    pytest.importorskip("packaging")
    project = _declared()
    base = _selected(project["dependencies"], "3.8")
    assert set(base) == {"numpy", "typer", "rich"}, base          # no torch, nothing offline
    # the board's wheelhouse is fetched by pip download, which evaluates markers for the Python
    # running it, not the board's: the base dependencies carry none
    assert not any(";" in r for r in project["dependencies"]), project["dependencies"]
    # typer 0.9 ... 0.15.x crash on --help under click >= 8.2 and only 0.15.4 pins click < 8.2:
    # the bound must leave all of them out and keep 0.16 (checked against click 8.0 ... 8.5)
    assert not any(base["typer"].contains(v) for v in ("0.9.0", "0.12.5", "0.15.3", "0.15.4"))
    assert base["typer"].contains("0.16.0") and base["typer"].contains("0.20.1")
    report = _selected(project["optional-dependencies"]["report"], "3.8", "report")
    assert set(report) == {"matplotlib"}, report                   # the report extra pulls no torch
