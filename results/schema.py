"""The results database's schema: every version's DDL, in order, and how each version wrote a run.

``PRAGMA user_version`` holds the schema version and ``PRAGMA application_id`` marks the file as
a spikeedge results database (any other SQLite file is refused, never "upgraded"). Version *n*
is reached from *n - 1* by ``MIGRATIONS[n - 1].upgrade``; the store runs the missing steps in one
``BEGIN IMMEDIATE`` transaction, so two processes opening an old file migrate it exactly once.

A migration is history: once released it never changes. Each keeps the ``insert`` its version
used, so the tests can build a database of every earlier version the way that version wrote it
(``tests/test_results_store.py``), and the store writes with the newest one.

The full run record (JSON text) is the source of truth in every version; the other columns are
copies of a few fields for filtering and listing without parsing every record.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Dict, List, NamedTuple, Optional

APPLICATION_ID = 0x53455231  # "SER1": spikeedge results, in the SQLite file header


class Migration(NamedTuple):
    version: int  # the version this step produces
    why: str
    upgrade: Callable[[sqlite3.Connection], None]  # from version - 1 to version, inside the caller's transaction
    insert: Callable[[sqlite3.Connection, Dict[str, Any], str], None]  # how this version stored (record, record JSON)


# --- version 1: the record as JSON, keyed by run id, ordered by creation time -----------------

def _upgrade_1(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA application_id = %d" % APPLICATION_ID)
    conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, created TEXT NOT NULL, record TEXT NOT NULL)")
    conn.execute("CREATE INDEX runs_created ON runs (created)")


def _insert_1(conn: sqlite3.Connection, record: Dict[str, Any], text: str) -> None:
    conn.execute("INSERT INTO runs (run_id, created, record) VALUES (?, ?, ?)", (record["run_id"], record["created"], text))


# --- version 2: what `results list` and the filters need, as columns ---------------------------

V2_COLUMNS = ("label", "board", "backend", "model_name", "model_sha256", "task", "metric", "metric_value",
              "mean_ms", "energy_j", "power_label")


def _get(record: Dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)  # type: ignore[assignment]
    return record


def v2_values(record: Dict[str, Any]) -> List[Any]:
    """The version-2 columns of ``record`` (absent fields: NULL)."""
    return [record.get("label"), record.get("board"), record.get("backend"), _get(record, "model", "name"),
            _get(record, "model", "sha256"), _get(record, "task", "name"), _get(record, "task", "metric"),
            _get(record, "task", "value"), _get(record, "latency", "mean_ms"),
            _get(record, "power", "energy_per_inference_j", "total"), _get(record, "power", "label")]


def _upgrade_2(conn: sqlite3.Connection) -> None:
    types = {"metric_value": "REAL", "mean_ms": "REAL", "energy_j": "REAL"}
    for name in V2_COLUMNS:
        conn.execute("ALTER TABLE runs ADD COLUMN %s %s" % (name, types.get(name, "TEXT")))
    sets = ", ".join("%s = ?" % name for name in V2_COLUMNS)
    rows = conn.execute("SELECT rowid, record FROM runs").fetchall()
    for rowid, text in rows:  # backfill from the JSON (the record is unchanged)
        conn.execute("UPDATE runs SET %s WHERE rowid = ?" % sets, v2_values(json.loads(text)) + [rowid])
    for name in ("board", "backend", "model_sha256", "task", "label"):
        conn.execute("CREATE INDEX runs_%s ON runs (%s)" % (name, name))


def _insert_2(conn: sqlite3.Connection, record: Dict[str, Any], text: str) -> None:
    names = ("run_id", "created", "record") + V2_COLUMNS
    conn.execute("INSERT INTO runs (%s) VALUES (%s)" % (", ".join(names), ", ".join("?" * len(names))),
                 [record["run_id"], record["created"], text] + v2_values(record))


# --- version 3: NeuroBench's metrics under NeuroBench's names, and the task metric's spread -------

V3_COLUMNS = ("Effective_MACs", "Effective_ACs", "Dense", "Effective", "ActivationSparsity", "ConnectionSparsity",
              "Footprint", "metric_std")


def v3_values(record: Dict[str, Any]) -> List[Any]:
    """The version-3 columns of ``record``. Records written before NeuroBench's names
    (``workload.synops_per_inference``, ``workload.activation_sparsity``) fill Dense, Effective and
    ActivationSparsity from those; their MAC/AC split and spread stay NULL (never measured)."""
    so = _get(record, "workload", "SynapticOperations")
    if not isinstance(so, dict):
        old = _get(record, "workload", "synops_per_inference") or {}
        so = {"Dense": old.get("dense") if isinstance(old, dict) else None, "Effective": old.get("effective") if isinstance(old, dict) else None}
    sparsity = _get(record, "workload", "ActivationSparsity")
    if sparsity is None:
        sparsity = _get(record, "workload", "activation_sparsity")
    return [so.get("Effective_MACs"), so.get("Effective_ACs"), so.get("Dense"), so.get("Effective"), sparsity,
            _get(record, "model", "connection_sparsity"), _get(record, "model", "footprint_bytes"), _get(record, "task", "std")]


def _upgrade_3(conn: sqlite3.Connection) -> None:
    for name in V3_COLUMNS:
        conn.execute("ALTER TABLE runs ADD COLUMN %s REAL" % name)
    sets = ", ".join("%s = ?" % name for name in V3_COLUMNS)
    for rowid, text in conn.execute("SELECT rowid, record FROM runs").fetchall():
        conn.execute("UPDATE runs SET %s WHERE rowid = ?" % sets, v3_values(json.loads(text)) + [rowid])


def _insert_3(conn: sqlite3.Connection, record: Dict[str, Any], text: str) -> None:
    names = ("run_id", "created", "record") + V2_COLUMNS + V3_COLUMNS
    conn.execute("INSERT INTO runs (%s) VALUES (%s)" % (", ".join(names), ", ".join("?" * len(names))),
                 [record["run_id"], record["created"], text] + v2_values(record) + v3_values(record))


MIGRATIONS = [
    Migration(1, "runs table: run id, creation time and the record as JSON", _upgrade_1, _insert_1),
    Migration(2, "columns and indexes for label, board, backend, model, task and key metrics, backfilled", _upgrade_2, _insert_2),
    Migration(3, "NeuroBench's metric names as columns (Effective_MACs, Effective_ACs, Dense, ...) and the metric's std, backfilled",
              _upgrade_3, _insert_3),
]
SUMMARY_COLUMNS = V2_COLUMNS + V3_COLUMNS  # what Store.summaries returns besides run id and creation time
CURRENT = MIGRATIONS[-1].version


def upgrade(conn: sqlite3.Connection, start: int, stop: Optional[int] = None) -> None:
    """Run the steps from version ``start`` to ``stop`` (default: the newest) and set
    ``user_version``; the caller holds the transaction."""
    stop = CURRENT if stop is None else stop
    for step in MIGRATIONS[start:stop]:
        step.upgrade(conn)
        conn.execute("PRAGMA user_version = %d" % step.version)
