"""The ``spikeedge`` command's contract (``cli.md`` in the shared notes): user errors exit 2 with
one line on stderr naming the file or option, without a traceback and without leftover files;
usage errors; ``--debug``; ``--version``; ``--json`` printing exactly one object for every
command; help with an example everywhere; the generated reference (docs/cli.md) current.

The tests run in a copy of the quick demo's folder (``demo_work`` in conftest.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from spikeedge.cli.app import main
from spikeedge.errors import BundleError, SpikeedgeError

ROOT = Path(__file__).resolve().parent.parent


from cli_helpers import assert_user_error, call, one_json  # noqa: E402


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
def test_user_errors_exit_2_with_one_line(demo_work: Path, capsys: Any, argv: List[str], names: List[str]) -> None:
    before = {p.name for p in demo_work.iterdir()}
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, *names)
    assert {p.name for p in demo_work.iterdir()} == before, "a failed command left files behind"


def test_user_errors_with_json_still_print_nothing_on_stdout(demo_work: Path, capsys: Any) -> None:
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
def test_usage_errors_exit_2(demo_work: Path, capsys: Any, argv: List[str], mentions: str) -> None:
    rc, out, err = call(capsys, *argv)
    assert rc == 2, (out, err)
    assert out == ""
    assert mentions in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, like every other user error


@pytest.mark.parametrize("model", ["model.seb", "model.onnx"])
def test_eval_on_a_task_that_does_not_fit_the_model(demo_work: Path, capsys: Any, model: str) -> None:
    """A one-input forecaster on 64-pixel digits: one line naming the file and --task, exit 2."""
    rc, out, err = call(capsys, "eval", model, "--task", "digits")
    assert_user_error(rc, out, err, model)
    assert "--task digits" in err and "takes 1" in err


def test_debug_raises_instead_of_a_message(demo_work: Path, capsys: Any) -> None:
    with pytest.raises(BundleError, match="missing.seb"):
        main(["--debug", "info", "missing.seb"])
    with pytest.raises(SpikeedgeError, match="--readout"):
        main(["--debug", "train", "hrsnn", "--task", "mackey-glass", "--readout", "lstm", "-o", "y.ckpt.npz"])


def test_debug_after_the_command(demo_work: Path) -> None:
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
    ("import",): ["import", str(ROOT / "tests" / "fixtures" / "nir" / "lif.nir"), "-o", "i.ckpt.npz"],
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
def test_json_prints_exactly_one_object(demo_work: Path, capsys: Any, path: Tuple[str, ...]) -> None:
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
