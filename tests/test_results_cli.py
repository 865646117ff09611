"""``spikeedge results list|compare|export``: output contracts, exit codes, and compare's
noise-aware rule on realistic runs (latency samples drawn from noise distributions): a planted
20% latency regression fails (exit 1), a 1% wobble does not."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, List

import pytest
from cli_helpers import assert_user_error, call, one_json
from results_records import make_record

from spikeedge.results.csv_export import COLUMNS
from spikeedge.results.store import Store


def _db(tmp_path: Path, records: List[Dict[str, Any]]) -> Path:
    db = tmp_path / "r.sqlite"
    with Store(db) as store:
        store.add_runs(records)
    return db


def test_list_table_json_and_filters(tmp_path: Path, capsys: Any) -> None:
    recs = [make_record(seed=1), make_record(seed=2, board="orin-nano", label="nightly"), make_record(seed=3, power=False)]
    db = _db(tmp_path, recs)
    rc, out, err = call(capsys, "results", "list", "--db", db, "--json")
    assert rc == 0, err
    r = one_json(out)
    assert r["db"] == str(db) and [s["run_id"] for s in r["runs"]] == [x["run_id"] for x in reversed(recs)]
    assert r["runs"][0]["energy_j"] is None and r["runs"][1]["energy_j"] == pytest.approx(recs[1]["power"]["energy_per_inference_j"]["total"])
    rc, out, _ = call(capsys, "results", "list", "--db", db, "--board", "orin-nano", "--label", "nightly", "--json")
    assert [s["run_id"] for s in one_json(out)["runs"]] == [recs[1]["run_id"]]
    rc, out, _ = call(capsys, "results", "list", "--db", db, "--limit", "1")
    assert rc == 0 and recs[2]["run_id"][:8] in out and recs[0]["run_id"][:8] not in out
    rc, out, _ = call(capsys, "results", "list", "--db", db, "--task", "nope")
    assert rc == 0 and "no runs" in out


def test_missing_and_corrupt_databases_are_user_errors(tmp_path: Path, capsys: Any) -> None:
    absent = tmp_path / "absent.sqlite"
    assert_user_error(*call(capsys, "results", "list", "--db", absent), str(absent))
    assert not absent.exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    assert_user_error(*call(capsys, "results", "compare", "latest~1", "latest", "--db", junk), str(junk), "not a spikeedge results database")
    assert junk.read_bytes() == b"not a database at all" * 100


def _compare(capsys: Any, tmp_path: Path, a: Dict[str, Any], b: Dict[str, Any]) -> Any:
    db = _db(tmp_path, [a, b])
    rc, out, err = call(capsys, "results", "compare", a["run_id"][:8], "latest", "--db", db, "--json")
    return rc, one_json(out), err


def _status(result: Dict[str, Any], metric: str) -> str:
    return next(row["status"] for row in result["rows"] if row["metric"] == metric)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_compare_flags_a_20_percent_regression(tmp_path: Path, capsys: Any, seed: int) -> None:
    a = make_record(seed=seed, mean_ms=2.0)
    b = make_record(seed=seed + 100, mean_ms=2.4)  # independent noise, 20% slower
    rc, r, err = _compare(capsys, tmp_path, a, b)
    assert rc == 1, err
    assert r["regressed"] and "latency.mean_ms" in r["regressions"] and "latency.p50_ms" in r["regressions"]
    assert "power.energy_per_inference_j.total" in r["regressions"]  # energy = power x time follows
    assert "task.smape" not in r["regressions"] and "model.file_bytes" not in r["regressions"]
    assert err.strip().splitlines()[-1].startswith("error: ") and "latency mean +" in err
    assert r["warnings"] == []


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_compare_ignores_a_1_percent_wobble(tmp_path: Path, capsys: Any, seed: int) -> None:
    a = make_record(seed=seed, mean_ms=2.0)
    b = make_record(seed=seed + 100, mean_ms=2.02)
    rc, r, err = _compare(capsys, tmp_path, a, b)
    assert rc == 0, err
    assert not r["regressed"] and r["regressions"] == []
    assert _status(r, "latency.mean_ms") == "same"


def test_compare_noise_raises_the_threshold_and_other_metrics_count(tmp_path: Path, capsys: Any) -> None:
    # Very noisy trials (8% drift between trials): an 8% slowdown is within the trial spread.
    a = make_record(seed=1, mean_ms=2.0, trial_drift=0.08)
    b = make_record(seed=2, mean_ms=2.16, trial_drift=0.08)
    _, r, _ = _compare(capsys, tmp_path / "noisy", a, b)
    row = next(row for row in r["rows"] if row["metric"] == "latency.mean_ms")
    assert row["basis"] in ("trial spread", "3 SE") and row["threshold"] > 0.05 * row["a"]
    # Accuracy falls by 2 points (more than 1 point): a regression, latency unchanged.
    acc = dict(task__name="digits", task__metric="accuracy", task__higher_is_better=True)
    a = make_record(seed=1, task__value=0.95, **acc)
    b = make_record(seed=2, task__value=0.93, **acc)
    rc, r, _ = _compare(capsys, tmp_path / "acc", a, b)
    assert rc == 1 and r["regressions"] == ["task.accuracy"]
    b = make_record(seed=2, task__value=0.945, **acc)  # half a point: not
    rc, r, _ = _compare(capsys, tmp_path / "acc2", a, b)
    assert rc == 0 and _status(r, "task.accuracy") == "same"
    # sMAPE is lower-is-better: 10% lower is an improvement.
    rc, r, _ = _compare(capsys, tmp_path / "smape", make_record(seed=1), make_record(seed=2, task__value=14.2 * 0.9))
    assert rc == 0 and _status(r, "task.smape") == "improved"


def test_compare_warns_about_different_things(tmp_path: Path, capsys: Any) -> None:
    a = make_record(seed=1)
    b = make_record(seed=2, board="orin-nano", backend="onnx", power__label="estimate")
    rc, r, err = _compare(capsys, tmp_path, a, b)
    assert rc == 0
    assert any("board (rpi5 vs orin-nano)" in w for w in r["warnings"]) and any("backend" in w for w in r["warnings"])
    assert "warning: A and B differ in board" in err
    assert _status(r, "power.energy_per_inference_j.total") == "n/a"  # measured vs estimate: not compared


def test_tables_are_whole_when_stdout_is_not_a_terminal(tmp_path: Path, capsys: Any) -> None:
    """`results list > runs.txt`, or in a CI log: rich squeezed the table into 80 columns, every
    cell cut to "lab…", "boa…", "1.4…" and the metric split over two lines. The table now takes
    the width it needs, and energies carry an SI prefix (a 1.7 nJ estimate was "1.72e-06" mJ)."""
    rec = make_record(seed=1, label="lnp-50%", board="jetson-orin-nano", model__name="mg-lnp50.tflite", backend="tflite",
                      power__label="estimate", power__energy_per_inference_j={"total": 1.72e-9, "dynamic": 1.72e-9})
    db = _db(tmp_path, [rec, make_record(seed=2, mean_ms=2.5)])
    rc, out, _ = call(capsys, "results", "list", "--db", db)
    assert rc == 0 and "…" not in out
    row = next(line for line in out.splitlines() if rec["run_id"][:8] in line)
    for cell in ("lnp-50%", "jetson-orin-nano", "tflite", "mg-lnp50.tflite", "smape 14.2", "1.72 nJ"):
        assert cell in row, (cell, row)
    rc, out, _ = call(capsys, "results", "compare", "latest~1", "latest", "--db", db)
    assert rc == 1 and "…" not in out
    assert any("latency mean (ms)" in line and "regressed" in line for line in out.splitlines()), out


def test_compare_warnings_are_one_line_each(tmp_path: Path, capsys: Any) -> None:
    """Each warning is one line on stderr, however narrow the console (stderr to a file or a CI
    log: rich wrapped them at 80 columns, splitting the two sha256s over three lines), and a
    model's sha256 is shown by its first 12 digits."""
    a = make_record(seed=1)
    b = make_record(seed=2, backend="onnx", model__sha256="f" * 64, model__name="a-much-longer-model-file-name-than-usual.onnx")
    db = _db(tmp_path, [a, b])
    for extra in ([], ["--json"]):
        rc, out, err = call(capsys, "results", "compare", a["run_id"][:8], "latest", "--db", db, *extra)
        lines = err.strip().splitlines()
        assert rc in (0, 1) and lines and all(line.startswith(("warning: ", "error: ")) for line in lines), err
        assert "f" * 64 not in err and "(%s vs %s)" % (a["model"]["sha256"][:12], "f" * 12) in err


def test_compare_table_and_bad_references(tmp_path: Path, capsys: Any) -> None:
    db = _db(tmp_path, [make_record(seed=1), make_record(seed=2, mean_ms=2.5)])
    rc, out, err = call(capsys, "results", "compare", "latest~1", "latest", "--db", db)
    assert rc == 1 and "latency mean" in out and "regressed" in out
    assert_user_error(*call(capsys, "results", "compare", "latest~5", "latest", "--db", db), "latest~5")
    assert_user_error(*call(capsys, "results", "compare", "zz", "latest", "--db", db), "zz")


def test_export_csv_gets_the_mode_a_plain_open_gives(tmp_path: Path, capsys: Any) -> None:
    """The temporary file behind the atomic rename is private (0600), and the exported CSV, meant
    for sharing, was left unreadable to everyone else (the report had the same fix)."""
    import os

    db = _db(tmp_path, [make_record(seed=1)])
    old = os.umask(0o022)
    try:
        rc, _, err = call(capsys, "results", "export", "--csv", tmp_path / "runs.csv", "--db", db)
    finally:
        os.umask(old)
    assert rc == 0, err
    assert (tmp_path / "runs.csv").stat().st_mode & 0o777 == 0o644


def test_export_csv_file_and_stdout(tmp_path: Path, capsys: Any) -> None:
    recs = [make_record(seed=1, label="a,b"), make_record(seed=2, power=False, board="orin-nano")]
    db = _db(tmp_path, recs)
    target = tmp_path / "runs.csv"
    rc, out, err = call(capsys, "results", "export", "--csv", target, "--db", db)
    assert rc == 0 and out == "" and "2 runs" in err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    newest, oldest = rows
    assert newest["run_id"] == recs[1]["run_id"] and newest["energy_total_j"] == "" and newest["power_label"] == ""
    assert oldest["label"] == "a,b" and oldest["repeatability_ok"] in ("true", "false")
    assert float(oldest["latency_mean_ms"]) == recs[0]["latency"]["mean_ms"]
    assert float(oldest["energy_dynamic_j"]) == pytest.approx(recs[0]["power"]["energy_per_inference_j"]["dynamic"])
    assert float(oldest["synops_effective"]) == 2.4e5 and int(oldest["file_bytes"]) == 48213
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    rc, out, _ = call(capsys, "results", "export", "--csv", "-", "--db", db, "--board", "orin-nano")
    assert rc == 0 and [r["run_id"] for r in csv.DictReader(io.StringIO(out))] == [recs[1]["run_id"]]
    missing = tmp_path / "nope" / "runs.csv"
    assert_user_error(*call(capsys, "results", "export", "--csv", missing, "--db", db), str(missing))


def test_a_stored_record_that_is_not_an_object_is_one_line_not_a_traceback(tmp_path: Path, capsys: Any) -> None:
    """Issue 18, item 16: a row changed outside spikeedge (its JSON a list, or a key gone)."""
    import sqlite3

    recs = [make_record(seed=1), make_record(seed=2)]
    db = _db(tmp_path, recs)
    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE runs SET record = ? WHERE run_id = ?", ("[1, 2, 3]", recs[1]["run_id"]))
    conn.commit()
    conn.close()
    for argv in (["report", "-o", tmp_path / "r.html"], ["results", "compare", "latest~1", "latest"], ["results", "export", "--csv", "-"]):
        assert_user_error(*call(capsys, *argv, "--db", db), str(db), recs[1]["run_id"], "JSON list, not an object")
    assert not (tmp_path / "r.html").exists()
    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE runs SET record = ? WHERE run_id = ?", ('{"schema": "spikeedge.bench/1"}', recs[1]["run_id"]))
    conn.commit()
    conn.close()
    assert_user_error(*call(capsys, "report", "-o", tmp_path / "r.html", "--db", db), str(db), "stored record is invalid")


def test_read_commands_never_make_a_store_of_an_empty_file(tmp_path: Path, capsys: Any) -> None:
    """Issue 18, item 16: a 0-byte --db file (or an SQLite file with nothing in it) is refused and left as it was."""
    import sqlite3

    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.sqlite"
    conn = sqlite3.connect(str(blank))
    conn.executescript("CREATE TABLE t (x); DROP TABLE t;")  # an SQLite header, no tables, no application id
    conn.close()
    assert blank.read_bytes().startswith(b"SQLite format 3")
    for db in (empty, blank):
        before = db.read_bytes()
        for argv in (["results", "list"], ["results", "compare", "latest~1", "latest"], ["results", "export", "--csv", "-"],
                     ["report", "-o", tmp_path / "r.html"]):
            assert_user_error(*call(capsys, *argv, "--db", db), str(db), "not a results database")
        assert db.read_bytes() == before
        assert not Path(str(db) + "-wal").exists() and not Path(str(db) + "-shm").exists()
