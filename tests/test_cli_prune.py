"""``spikeedge prune lnp`` against its contract (``cli.md`` in the shared notes).

Like ``test_cli.py``, every test calls ``spikeedge.cli.app.main`` in-process in a temporary
folder. The acceptance command (500 neurons, half the neurons and synapses kept) runs once; the
other tests use small networks and few iterations to stay fast.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"iteration", "neurons", "synapses", "lyapunov_max", "spectral_radius", "ipr", "mean_rate", "heterogeneity",
            "tau_mem_mean", "tau_mem_shape", "change", "seconds"}
JSON_KEYS = {"output", "neurons", "synapses", "start", "kept_neurons", "kept_synapses", "iterations", "stopped",
             "phase_seconds", "lyapunov_max", "spectral_radius", "report", "warnings"}








def save_hrsnn(path: Path, neurons: int, trained: bool = False, seed: int = 1) -> None:
    from spikeedge.offline.checkpoint import save_checkpoint
    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig

    model = HRSNN(HrsnnConfig(n_neurons=neurons, seed=seed))
    if trained:  # what a readout fitted by 'spikeedge train' looks like: non-zero weights
        model.readout.weight.data.fill_(0.1)
    save_checkpoint(model, path, {"task": "mackey-glass", "pruning": {"method": "none"}})


@pytest.fixture
def work(tmp_path: Path, monkeypatch: Any) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("text.ckpt.npz").write_text("not an npz archive\n")
    return tmp_path


# ----------------------------------------------------------------------------- the acceptance command


@pytest.mark.slow
def test_acceptance_500_neurons_halved(work: Path, capsys: Any) -> None:
    from spikeedge.offline.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    rc, out, err = call(capsys, "prune", "lnp", "--neurons", 500, "--target-synapses", 0.5, "--target-neurons", 0.5,
                        "--seed", 0, "--json", "-o", "x.pt")
    wall = time.perf_counter() - t0
    assert rc == 0, err
    result = one_json(out)
    print("prune lnp --neurons 500: %.1f s wall, %s" % (wall, {k: result[k] for k in ("neurons", "synapses", "iterations", "stopped")}))
    assert JSON_KEYS <= set(result), JSON_KEYS - set(result)
    assert result["output"] == "x.pt" and result["report"] is None and result["warnings"] == []
    assert result["start"]["neurons"] == 500 and result["start"]["synapses"] > 0
    # counts within 2 % of the targets, relative to the start counts
    assert abs(result["neurons"] / result["start"]["neurons"] - 0.5) <= 0.02, result
    assert abs(result["synapses"] / result["start"]["synapses"] - 0.5) <= 0.02, result
    assert result["kept_neurons"] == pytest.approx(result["neurons"] / 500)
    assert result["iterations"] >= 1 and result["stopped"] in ("converged", "max_iterations")
    assert all(v >= 0 for v in result["phase_seconds"].values())
    assert math.isfinite(result["lyapunov_max"]) and result["spectral_radius"] > 0
    # the checkpoint (our npz format, whatever the suffix) rebuilds the pruned network
    model, record = load_checkpoint("x.pt")
    assert model.cfg.n_neurons == result["neurons"]
    assert model.n_synapses()["recurrent"] == result["synapses"]
    assert record["pruning"]["method"] == "lnp" and record["pruning"]["neurons"] == result["neurons"]
    assert len(record["lnp_record"]) == result["iterations"] + 1
    assert {p.name for p in work.iterdir()} == {"text.ckpt.npz", "x.pt"}  # no temporary left


# ----------------------------------------------------------------------------- small networks


def test_report_writes_record_json_and_a_non_blank_png(work: Path, capsys: Any) -> None:
    import matplotlib.image

    rc, out, err = call(capsys, "prune", "lnp", "--neurons", 80, "--max-iterations", 2, "--seed", 2,
                        "--report", "rep/lnp", "--json", "-o", "small.ckpt.npz")
    assert rc == 0, err
    result = one_json(out)
    assert result["report"] == {"record": str(Path("rep/lnp/lnp_record.json")), "plot": str(Path("rep/lnp/lnp.png"))}
    assert {p.name for p in Path("rep/lnp").iterdir()} == {"lnp_record.json", "lnp.png"}
    # strict JSON (no NaN), the record row 0 = the starting network
    doc = json.loads(Path(result["report"]["record"]).read_text(), parse_constant=lambda c: pytest.fail("non-strict JSON: %s" % c))
    assert doc["summary"]["neurons"] == result["neurons"] and doc["summary"]["iterations"] == result["iterations"] == 2
    rows = doc["record"]
    assert len(rows) == 3 and [r["iteration"] for r in rows] == [0, 1, 2]
    assert ROW_KEYS <= set(rows[0]), ROW_KEYS - set(rows[0])
    assert rows[0]["neurons"] == 80 and rows[-1]["neurons"] == result["neurons"] < 80
    # a real, non-blank picture
    png = Path(result["report"]["plot"])
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert float(image[..., :3].var()) > 1e-3


def test_human_output_and_an_existing_untrained_checkpoint(work: Path, capsys: Any) -> None:
    from spikeedge.offline.checkpoint import load_checkpoint

    save_hrsnn(Path("untrained.ckpt.npz"), 60)
    rc, out, err = call(capsys, "prune", "lnp", "untrained.ckpt.npz", "--max-iterations", 2, "-o", "p.ckpt.npz")
    assert rc == 0, err
    assert out.strip() and not out.lstrip().startswith("{")
    assert "neurons" in out and "synapses" in out
    assert "warning" not in err
    model, record = load_checkpoint("p.ckpt.npz")
    assert model.cfg.n_neurons == record["pruning"]["neurons"] < 60


def test_trained_readout_is_pruned_with_a_warning(work: Path, capsys: Any) -> None:
    save_hrsnn(Path("trained.ckpt.npz"), 60, trained=True)
    rc, out, err = call(capsys, "prune", "lnp", "trained.ckpt.npz", "--max-iterations", 1, "--json", "-o", "p.ckpt.npz")
    assert rc == 0, err
    result = one_json(out)
    assert len(result["warnings"]) == 1
    assert "untrained" in result["warnings"][0] and "retrain" in result["warnings"][0]
    assert "warning:" in err and "trained.ckpt.npz" in err
    assert result["input"] == "trained.ckpt.npz" and Path("p.ckpt.npz").is_file()


def test_seed_makes_the_pruned_network_reproducible(work: Path, capsys: Any) -> None:
    argv = ["prune", "lnp", "--neurons", 60, "--max-iterations", 2, "--seed", 5, "--json"]
    assert call(capsys, *argv, "-o", "a.ckpt.npz")[0] == 0
    assert call(capsys, *argv, "-o", "b.ckpt.npz")[0] == 0
    with np.load("a.ckpt.npz") as a, np.load("b.ckpt.npz") as b:
        assert set(a.files) == set(b.files)
        for key in a.files:
            if key != "__record__":  # the record holds timings
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _interrupt_during_pruning(monkeypatch: Any) -> None:
    import spikeedge.offline.lnp as lnp

    def interrupted(model: Any, cfg: Any, progress: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(lnp, "lnp_prune", interrupted)


def test_interrupt_leaves_no_output(work: Path, capsys: Any, monkeypatch: Any) -> None:
    """Ctrl-C during pruning: neither the checkpoint nor the report exists, nothing on stdout."""
    _interrupt_during_pruning(monkeypatch)
    before = {p.name for p in work.iterdir()}
    rc, out, err = call(capsys, "prune", "lnp", "--neurons", 30, "--report", "rep", "--json", "-o", "x.pt")
    assert out == ""
    assert {p.name for p in work.iterdir()} == before


def test_interrupt_exits_130(work: Path, capsys: Any, monkeypatch: Any) -> None:
    _interrupt_during_pruning(monkeypatch)
    rc, out, err = call(capsys, "prune", "lnp", "--neurons", 30, "-o", "x.pt")
    assert rc == 130 and "interrupted" in err


# ----------------------------------------------------------------------------- user errors


USER_ERRORS: List[Tuple[str, List[Any], List[str]]] = [
    ("neither", ["-o", "x.pt"], ["--neurons"]),
    ("both", ["text.ckpt.npz", "--neurons", 60, "-o", "x.pt"], ["--neurons"]),
    ("synapses-zero", ["--neurons", 60, "--target-synapses", 0, "-o", "x.pt"], ["--target-synapses"]),
    ("synapses-above-one", ["--neurons", 60, "--target-synapses", 1.5, "-o", "x.pt"], ["--target-synapses"]),
    ("synapses-nan", ["--neurons", 60, "--target-synapses", "nan", "-o", "x.pt"], ["--target-synapses"]),
    ("neurons-negative", ["--neurons", 60, "--target-neurons", -0.2, "-o", "x.pt"], ["--target-neurons"]),
    ("neurons-zero", ["--neurons", 60, "--target-neurons", 0, "-o", "x.pt"], ["--target-neurons"]),
    ("too-few-neurons", ["--neurons", 1, "-o", "x.pt"], ["--neurons"]),
    ("no-iterations", ["--neurons", 60, "--max-iterations", 0, "-o", "x.pt"], ["--max-iterations"]),
    ("no-inputs", ["--neurons", 60, "--inputs", 0, "-o", "x.pt"], ["--inputs"]),
    ("inputs-with-checkpoint", ["text.ckpt.npz", "--inputs", 3, "-o", "x.pt"], ["--inputs"]),
    ("missing-checkpoint", ["missing.ckpt.npz", "-o", "x.pt"], ["missing.ckpt.npz"]),
    ("not-a-checkpoint", ["text.ckpt.npz", "-o", "x.pt"], ["text.ckpt.npz"]),
    ("report-is-a-file", ["--neurons", 60, "--report", "text.ckpt.npz", "-o", "x.pt"], ["--report"]),
    ("output-is-a-folder", ["--neurons", 60, "-o", "."], ["--output"]),
]


@pytest.mark.parametrize("argv,names", [(a, n) for _, a, n in USER_ERRORS], ids=[i for i, _, _ in USER_ERRORS])
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_user_errors_exit_2_with_one_line(work: Path, capsys: Any, argv: List[Any], names: List[str], as_json: bool) -> None:
    before = {p.name for p in work.iterdir()}
    rc, out, err = call(capsys, "prune", "lnp", *argv, *(["--json"] if as_json else []))
    assert_user_error(rc, out, err, *names)
    assert {p.name for p in work.iterdir()} == before, "a failed command left files behind"


@pytest.mark.parametrize(
    "argv,mentions",
    [
        (["--neurons", "60"], "--output"),
        (["--neurons", "60", "-o", "x.pt", "--target-synapses", "half"], "--target-synapses"),
        (["--neurons", "many", "-o", "x.pt"], "--neurons"),
    ],
    ids=["missing-output", "bad-float", "bad-integer"],
)
def test_usage_errors_exit_2(work: Path, capsys: Any, argv: List[str], mentions: str) -> None:
    rc, out, err = call(capsys, "prune", "lnp", *argv)
    assert rc == 2 and out == ""
    assert mentions in err and "Traceback" not in err


def test_help_has_an_example(capsys: Any) -> None:
    rc, out, err = call(capsys, "prune", "lnp", "--help")
    assert rc == 0, err
    assert "Example: spikeedge prune lnp" in " ".join(out.split())
    for option in ("--target-synapses", "--target-neurons", "--report", "--neurons", "--seed"):
        assert option in out
