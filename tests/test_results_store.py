"""The results store (``results/store.py``, ``results/schema.py``): round trips, migrations from
every earlier schema version, refusal of foreign/corrupt/newer files without touching them, two
processes writing at once, a writer killed mid-write, and an interrupted bench."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from results_records import make_record

from spikeedge.results import schema
from spikeedge.results.store import Store, default_db_path, encode
from spikeedge.errors import DataError

TESTS = Path(__file__).resolve().parent


def stored(record: Dict[str, Any]) -> Dict[str, Any]:
    return encode(record)[0]


def test_default_path_follows_the_environment(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("SPIKEEDGE_RESULTS_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "spikeedge" / "results.sqlite"
    with Store() as store:  # creates the folders
        store.add_run(make_record(seed=1))
    assert (tmp_path / "xdg" / "spikeedge" / "results.sqlite").is_file()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "spikeedge" / "results.sqlite"
    monkeypatch.setenv("SPIKEEDGE_RESULTS_DB", str(tmp_path / "x.sqlite"))
    assert default_db_path() == tmp_path / "x.sqlite"


def test_round_trip_references_and_filters(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    recs = [make_record(seed=1), make_record(seed=2, board="orin-nano", label="v2"),
            make_record(seed=3, backend="onnx", task__name="digits", task__metric="accuracy", task__value=0.91,
                        task__higher_is_better=True)]
    recs[0]["latency"]["mean_ms"] = np.float32(2.5)  # numpy values are stored as plain numbers
    with Store(db) as store:
        assert store.add_run(recs[0]) == recs[0]["run_id"]
        assert store.add_runs(recs[1:]) == [r["run_id"] for r in recs[1:]]
    with Store(db, create=False) as store:
        assert store.count() == 3
        assert store.get(recs[0]["run_id"]) == stored(recs[0])
        assert store.get(recs[0]["run_id"])["latency"]["mean_ms"] == 2.5
        assert store.get(recs[1]["run_id"][:6].upper())["run_id"] == recs[1]["run_id"]
        assert store.get("latest")["run_id"] == recs[2]["run_id"]  # newest by created time
        assert store.get("latest~2")["run_id"] == recs[0]["run_id"]
        assert [r["run_id"] for r in store.runs()] == [r["run_id"] for r in reversed(recs)]
        assert [r["run_id"] for r in store.runs(board="orin-nano")] == [recs[1]["run_id"]]
        assert [r["run_id"] for r in store.runs(backend="onnx", task="digits")] == [recs[2]["run_id"]]
        assert [r["run_id"] for r in store.runs(label="v2")] == [recs[1]["run_id"]]
        assert len(store.runs(model="mg.seb")) == 3 and len(store.runs(model="5eb00")) == 3 and store.runs(model="beef") == []
        assert len(store.runs(limit=2)) == 2
        s = store.summaries(task="digits")[0]
        assert (s["metric"], s["metric_value"], s["backend"], s["mean_ms"]) == ("accuracy", 0.91, "onnx", recs[2]["latency"]["mean_ms"])
        for ref, words in (("latest~3", "holds 3 runs"), ("abcdef", "no such run"), ("ab", "not a run reference"),
                           ("latest~x", "not a run reference")):
            with pytest.raises(DataError, match=words):
                store.get(ref)


def test_ambiguous_prefix_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "r.sqlite") as store:
        store.add_runs([make_record(seed=1, run_id="abcd" + "0" * 28), make_record(seed=2, run_id="abcd" + "1" * 28)])
        with pytest.raises(DataError, match="more than one run"):
            store.get("abcd")
        assert store.get("abcd1")["run_id"].endswith("1")


def test_duplicates_and_bad_records_store_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "r.sqlite") as store:
        store.add_run(make_record(seed=1))
        with pytest.raises(DataError, match="already in"):
            store.add_run(make_record(seed=1))
        with pytest.raises(DataError, match="already in"):  # all or nothing: seed 2 is not kept either
            store.add_runs([make_record(seed=2), make_record(seed=1)])
        with pytest.raises(DataError, match="task.higher_is_better"):
            store.add_runs([make_record(seed=3), make_record(seed=4, task__higher_is_better="yes")])
        assert store.count() == 1


@pytest.mark.parametrize("change, words", [
    ({"schema": "spikeedge.bench/2"}, "schema"),
    ({"run_id": "not-hex!"}, "run_id"),
    ({"created": "23/11/2026"}, "created"),
    ({"latency__mean_ms": None}, "latency.mean_ms"),
    ({"latency__mean_ms": float("nan")}, "not JSON-able"),
    ({"board": 3}, "board"),
    ({"model__file_bytes": 1.5}, "model.file_bytes"),
    ({"power__energy_per_inference_j": None}, "power.energy_per_inference_j"),
    ({"task__value": True}, "task.value"),
])
def test_invalid_records_are_refused(tmp_path: Path, change: Dict[str, Any], words: str) -> None:
    with Store(tmp_path / "r.sqlite") as store:
        with pytest.raises(DataError, match=words.replace(".", r"\.")):
            store.add_run(make_record(seed=1, **change))
        record = make_record(seed=1)
        del record["workload"]
        with pytest.raises(DataError, match="workload is missing"):
            store.add_run(record)
        assert store.count() == 0


def _build_old(db: Path, version: int, records: List[Dict[str, Any]]) -> None:
    """A database of schema ``version``, written the way that version wrote runs."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("BEGIN")
    schema.upgrade(conn, 0, version)
    for r in records:
        plain, text = encode(r)
        schema.MIGRATIONS[version - 1].insert(conn, plain, text)
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("version", range(0, schema.CURRENT))
def test_migrates_every_earlier_version(tmp_path: Path, version: int) -> None:
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    recs = [make_record(seed=i, label="l%d" % i, power=i % 2 == 0) for i in range(5)]
    if version == 0:
        sqlite3.connect(str(old)).close()  # an empty SQLite file: a new store
        recs = []
    else:
        _build_old(old, version, recs)
    with Store(old) as store:
        assert sqlite3.connect(str(old)).execute("PRAGMA user_version").fetchone()[0] == schema.CURRENT
        assert store.runs() == [stored(r) for r in reversed(recs)]  # nothing lost or changed
        migrated = store.summaries()
    with Store(new) as store:  # the same runs written by today's code
        store.add_runs(recs)
        assert store.summaries() == migrated  # backfilled columns equal freshly written ones
    with Store(old) as store:  # opening again changes nothing
        assert store.count() == len(recs)


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    _build_old(db, 1, [make_record(seed=i) for i in range(50)])
    code = ("import sys, time\nfrom spikeedge.results.store import Store\n"
            "while not __import__('os').path.exists(sys.argv[2]): time.sleep(0.005)\n"
            "s = Store(sys.argv[1]); print(s.count()); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(tmp_path / "go")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs  # a second migration would fail (duplicate column)
    assert [o[0].strip() for o in outs] == ["50", "50"]


def _refused_untouched(path: Path, *words: str) -> None:
    before = path.read_bytes()
    with pytest.raises(DataError) as info:
        Store(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for w in words:
        assert w in message
    assert path.read_bytes() == before


def test_foreign_corrupt_and_newer_files_are_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(np.random.default_rng(0).bytes(8192))
    _refused_untouched(junk, "not a spikeedge results database")

    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(str(foreign))
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    _refused_untouched(foreign, "not a spikeedge results database")

    good = tmp_path / "good.sqlite"
    with Store(good) as store:
        store.add_runs([make_record(seed=i) for i in range(20)])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(data[: len(data) // 2])
    _refused_untouched(truncated, "unreadable results database")

    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(data)
    conn = sqlite3.connect(str(newer))
    conn.execute("PRAGMA user_version = %d" % (schema.CURRENT + 1))
    conn.commit()
    conn.close()
    _refused_untouched(newer, "newer than this spikeedge knows")

    with pytest.raises(DataError, match="no results database"):
        Store(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()
    with pytest.raises(DataError, match="is a folder"):
        Store(tmp_path)


WRITER = """
import sys, time, os
sys.path.insert(0, %r)
from results_records import make_record
from spikeedge.results.store import Store
db, go, first, n, samples = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
records = [make_record(seed=first + i, samples_per_trial=samples) for i in range(n)]
while not os.path.exists(go):
    time.sleep(0.002)
with Store(db) as store:
    for r in records:
        store.add_run(r)
        sys.stdout.write(r["run_id"] + "\\n")
        sys.stdout.flush()
""" % str(TESTS)


def _writer(db: Path, go: Path, first: int, n: int, samples: int) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(go), str(first), str(n), str(samples)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    db, go = tmp_path / "r.sqlite", tmp_path / "go"
    procs = [_writer(db, go, 0, 200, 4), _writer(db, go, 10_000, 200, 4)]
    time.sleep(1.0)  # both have built their records and wait at the barrier
    go.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    written = [line for o in outs for line in o[0].split()]
    assert len(written) == 400
    with Store(db) as store:
        runs = {r["run_id"]: r for r in store.runs()}
    assert set(runs) == set(written)
    for seed in (0, 199, 10_000, 10_199):
        r = stored(make_record(seed=seed, samples_per_trial=4))
        assert runs[r["run_id"]] == r


@pytest.mark.slow
def test_a_killed_writer_leaves_only_whole_runs(tmp_path: Path) -> None:
    db, go = tmp_path / "r.sqlite", tmp_path / "go"
    go.touch()
    n = 60
    proc = _writer(db, go, 0, n, 2000)  # 10,000 samples: about 200 kB of JSON per run
    committed = []
    assert proc.stdout is not None
    while len(committed) < 8:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        committed.append(line.strip())
    time.sleep(np.random.default_rng().uniform(0.0, 0.05))  # land somewhere inside a later write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    committed += proc.stdout.read().split()
    conn = sqlite3.connect(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    expected = {r["run_id"]: r for r in (stored(make_record(seed=i, samples_per_trial=2000)) for i in range(n))}
    with Store(db) as store:
        runs = store.runs()
        summaries = store.summaries()
    ids = [r["run_id"] for r in runs]
    assert set(committed) <= set(ids) and len(ids) <= len(committed) + 1  # at most the one whose print was cut off
    assert len(ids) < n, "the writer finished before it was killed; nothing was tested"
    for r in runs:  # every stored run is whole: exactly the record written, columns filled
        assert r == expected[r["run_id"]]
    assert all(s["mean_ms"] is not None and s["board"] == "rpi5" for s in summaries)


def _bench_like(store: Store, trials: int, interrupt_at: int) -> None:
    """What bench does: every trial first, add_run only once the run is complete."""
    rng = np.random.default_rng(0)
    means = []
    for t in range(trials):
        if t == interrupt_at:
            raise KeyboardInterrupt
        means.append(float(rng.lognormal(0.7, 0.05, 100).mean()))
    store.add_run(make_record(seed=7, latency__trial_means_ms=means))


def test_an_interrupted_bench_stores_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    db = tmp_path / "r.sqlite"
    with Store(db) as store:
        with pytest.raises(KeyboardInterrupt):
            _bench_like(store, trials=5, interrupt_at=3)
        assert store.count() == 0
        # Ctrl-C inside the write itself (after some rows were inserted): rolled back, store usable.
        from spikeedge.results import store as store_module

        real_insert = schema.MIGRATIONS[-1].insert
        calls = []

        def insert_then_interrupt(conn: Any, plain: Dict[str, Any], text: str) -> None:
            calls.append(plain["run_id"])
            if len(calls) == 3:
                raise KeyboardInterrupt
            real_insert(conn, plain, text)

        monkeypatch.setattr(store_module.schema, "MIGRATIONS", schema.MIGRATIONS[:-1] + [schema.MIGRATIONS[-1]._replace(insert=insert_then_interrupt)])
        with pytest.raises(KeyboardInterrupt):
            store.add_runs([make_record(seed=i) for i in range(5)])
        monkeypatch.undo()
        assert len(calls) == 3 and store.count() == 0
        _bench_like(store, trials=5, interrupt_at=-1)
        assert store.count() == 1
    with Store(db) as store:
        assert [r["run_id"] for r in store.runs()] == [make_record(seed=7)["run_id"]]


def test_neurobench_columns_from_old_and_new_records(tmp_path: Path) -> None:
    """Version 3's columns under NeuroBench's names: an old record (``synops_per_inference``,
    ``activation_sparsity``) migrated from a version-2 store gives Dense, Effective and
    ActivationSparsity and no MAC/AC split; a record with NeuroBench's names gives all of them."""
    db = tmp_path / "v2.sqlite"
    old = make_record(seed=1)
    old["workload"].pop("SynapticOperations", None)
    old["workload"].pop("ActivationSparsity", None)
    _build_old(db, 2, [old])
    new = make_record(seed=2)
    new["workload"]["SynapticOperations"] = {"Effective_MACs": 10.0, "Effective_ACs": 90.0, "Dense": 1000.0, "Effective": 100.0}
    new["workload"]["ActivationSparsity"] = 0.9
    new["task"]["std"] = 2.3
    with Store(db) as store:
        store.add_run(new)
        rows = {r["run_id"]: r for r in store.summaries()}
    a, b = rows[old["run_id"]], rows[new["run_id"]]
    assert a["Dense"] == old["workload"]["synops_per_inference"]["dense"] and a["Effective_MACs"] is None
    assert a["ActivationSparsity"] == old["workload"]["activation_sparsity"] and a["metric_std"] is None
    assert (b["Effective_MACs"], b["Effective_ACs"], b["Dense"], b["Effective"], b["ActivationSparsity"], b["metric_std"]) == (10.0, 90.0, 1000.0, 100.0, 0.9, 2.3)
