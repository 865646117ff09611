"""The results store: every finished ``spikeedge bench`` run, one SQLite file (``docs/results-store.md``).

Why SQLite: one file, in the standard library, atomic transactions and safe concurrent writers.
A run is one row written in one ``BEGIN IMMEDIATE`` transaction, so a run is either stored whole
or not at all (a killed or interrupted writer leaves nothing half-written), and two processes
writing at once queue on the lock (WAL journal, 30 s busy timeout) instead of losing rows.
Commits are ``synchronous = FULL``: a finished run survives a power cut on the board.

A file that is not ours (random bytes, another application's SQLite database, a truncated or
corrupt file, a schema newer than this code) is refused with a one-line ``DataError`` naming it,
and never written to: the check reads the header before anything could change the file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from ..errors import DataError
from . import schema

RECORD_SCHEMA = "spikeedge.bench/1"
BUSY_TIMEOUT_S = 30.0
_SQLITE_MAGIC = b"SQLite format 3\x00"
_REF = re.compile(r"^(latest)(?:~(\d+))?$|^([0-9a-f]{4,64})$")
_RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")
_CREATED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def default_db_path() -> Path:
    """``$SPIKEEDGE_RESULTS_DB``, else ``$XDG_DATA_HOME/spikeedge/results.sqlite``, else
    ``~/.local/share/spikeedge/results.sqlite``."""
    if os.environ.get("SPIKEEDGE_RESULTS_DB"):
        return Path(os.environ["SPIKEEDGE_RESULTS_DB"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "spikeedge" / "results.sqlite"


# --- what a record must look like: the fields compare, list and export read --------------------
# kind: str, num, int, bool, dict, list; a trailing "?" allows None.
_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("schema", "str"), ("run_id", "str"), ("created", "str"), ("label", "str?"), ("model", "dict"),
    ("model.name", "str"), ("model.sha256", "str"), ("model.file_bytes", "int?"), ("model.footprint_bytes", "int?"),
    ("task", "dict"), ("task.name", "str"), ("task.metric", "str"), ("task.value", "num?"), ("task.higher_is_better", "bool"),
    ("backend", "str"), ("threads", "int?"), ("board", "str"), ("protocol", "dict"),
    ("latency", "dict"), ("latency.mean_ms", "num"), ("latency.sem_ms", "num?"), ("latency.p50_ms", "num?"),
    ("latency.p99_ms", "num?"), ("latency.throughput_per_s", "num?"), ("latency.trial_means_ms", "list?"),
    ("latency.samples_ms", "list?"), ("repeatability", "dict"), ("repeatability.ok", "bool?"), ("power", "dict?"),
    ("workload", "dict?"), ("environment", "dict?"),
)
_POWER_FIELDS = (("power.label", "str"), ("power.active_w", "num?"), ("power.idle_w", "num?"), ("power.dynamic_w", "num?"),
                 ("power.energy_per_inference_j", "dict"), ("power.energy_per_inference_j.total", "num?"),
                 ("power.energy_per_inference_j.dynamic", "num?"))


def _is(value: Any, kind: str) -> bool:
    if value is None:
        return kind.endswith("?")
    kind = kind.rstrip("?")
    if kind == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "dict": dict, "list": list}[kind])


def validate(record: Any) -> None:
    """Raise ``DataError`` unless ``record`` is a ``spikeedge.bench/1`` run record with the keys
    and types the store, compare and export rely on (all keys present; unknown values None)."""
    if not isinstance(record, dict):
        raise DataError("run record: expected a JSON object, got %s" % type(record).__name__)
    if record.get("schema") != RECORD_SCHEMA:
        raise DataError("run record: schema %r, expected %r" % (record.get("schema"), RECORD_SCHEMA))
    fields = _FIELDS + (_POWER_FIELDS if record.get("power") is not None else ())
    for path, kind in fields:
        node: Any = record
        *parents, key = path.split(".")
        for part in parents:
            node = node[part]  # parents are checked first (earlier in the table)
        if key not in node:
            raise DataError("run record %s: %s is missing" % (record.get("run_id"), path))
        if not _is(node[key], kind):
            raise DataError("run record %s: %s should be %s, got %r" % (record.get("run_id"), path, kind, node[key]))
    if not _RUN_ID.match(record["run_id"]):
        raise DataError("run record: run_id %r is not 8-64 lowercase hex digits" % record["run_id"])
    if not _CREATED.match(record["created"]):
        raise DataError("run record %s: created %r is not UTC ISO-8601 (YYYY-MM-DDTHH:MM:SSZ)" % (record["run_id"], record["created"]))


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays (duck-typed: no numpy import here) as plain JSON values."""
    for attr in ("tolist", "item"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    raise TypeError("%s is not JSON-able" % type(obj).__name__)


def encode(record: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """The record as stored (plain JSON types) and its JSON text; ``DataError`` if it is not a
    valid run record. What is validated is exactly what is written."""
    try:
        text = json.dumps(record, default=_plain, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise DataError("run record %s: not JSON-able (%s)" % (record.get("run_id") if isinstance(record, dict) else "?", exc)) from None
    plain = json.loads(text)
    validate(plain)
    return plain, text


class Store:
    """The results database at ``path`` (default ``default_db_path()``); a context manager.

    Opening creates the file (and its folders) when ``create`` and it is absent, and migrates an
    older schema in place; ``create=False`` (the read-only commands) refuses a missing file, an
    empty one and an SQLite file that is not yet a store, and leaves them as they were."""

    def __init__(self, path: Union[str, Path, None] = None, create: bool = True) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self._conn = self._open(create)

    # --- opening -------------------------------------------------------------------------------
    def _open(self, create: bool) -> sqlite3.Connection:
        p = self.path
        if p.is_dir():
            raise DataError("%s: is a folder, not a results database" % p)
        if p.exists():
            with open(p, "rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
            if head and head != _SQLITE_MAGIC:
                raise DataError("%s: not a spikeedge results database (not an SQLite file)" % p)
            if not head and not create:  # SQLite would happily make a store of it: reading must not
                raise DataError("%s: an empty file, not a results database (spikeedge bench stores its runs there; --db chooses another)" % p)
        elif not create:
            raise DataError("%s: no results database here (spikeedge bench stores its runs there; --db chooses another)" % p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            with self._errors():
                self._check_ours(conn)
                if not create and conn.execute("PRAGMA application_id").fetchone()[0] != schema.APPLICATION_ID:
                    raise DataError("%s: an empty SQLite file, not a results database (read commands never create one)" % p)
                _set_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")  # migrate once, even with two processes opening at once
                try:
                    version = self._check_ours(conn)
                    if version < schema.CURRENT:
                        schema.upgrade(conn, version)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_ours(self, conn: sqlite3.Connection) -> int:
        """The schema version, or ``DataError`` for a foreign or too-new file (nothing written)."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != schema.APPLICATION_ID:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id or version or tables:
                raise DataError("%s: not a spikeedge results database (another application's SQLite file)" % self.path)
            return 0  # empty: a new store
        if version > schema.CURRENT:
            raise DataError("%s: results schema version %d is newer than this spikeedge knows (%d); upgrade spikeedge"
                            % (self.path, version, schema.CURRENT))
        return int(version)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as one-line ``DataError`` naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise DataError("%s: unreadable results database (%s)" % (self.path, exc)) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed whole or rolled back (also on Ctrl-C)."""
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # some errors (disk full) have rolled back already
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- writing -------------------------------------------------------------------------------
    def add_run(self, record: Dict[str, Any]) -> str:
        """Store one finished run (one transaction); returns its run id."""
        return self.add_runs([record])[0]

    def add_runs(self, records: List[Dict[str, Any]]) -> List[str]:
        """Store several runs, all or none (one transaction); duplicate run ids are refused."""
        encoded = [encode(r) for r in records]  # validate everything before taking the lock
        insert = schema.MIGRATIONS[-1].insert
        with self._write() as conn:
            for plain, text in encoded:
                try:
                    insert(conn, plain, text)
                except sqlite3.IntegrityError:
                    raise DataError("run %s is already in %s" % (plain["run_id"], self.path)) from None
        return [plain["run_id"] for plain, _ in encoded]

    # --- reading -------------------------------------------------------------------------------
    def _decode(self, run_id: str, text: str) -> Dict[str, Any]:
        """A stored record, checked as on writing: a row changed outside spikeedge (a list, a
        missing key) is a one-line ``DataError`` naming the run, never a traceback later in
        ``report`` or ``compare``."""
        try:
            record = json.loads(text)
        except ValueError:
            raise DataError("%s: run %s has an unreadable record" % (self.path, run_id)) from None
        if not isinstance(record, dict):
            raise DataError("%s: run %s: the stored record is a JSON %s, not an object (changed outside spikeedge?)" % (
                self.path, run_id, {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(record), "number")))
        try:
            validate(record)
        except DataError as exc:
            raise DataError("%s: run %s: the stored record is invalid (%s)" % (self.path, run_id, exc)) from None
        return record

    def get(self, ref: str) -> Dict[str, Any]:
        """The run named by ``ref``: its id, a unique prefix of 4+ hex digits, ``latest`` or
        ``latest~N`` (N runs before the newest)."""
        m = _REF.match(ref.strip().lower())
        if not m:
            raise DataError("%r: not a run reference (a run id or 4+ of its first hex digits, latest, latest~N)" % ref)
        with self._errors():
            if m.group(1):
                back = int(m.group(2) or 0)
                rows = self._conn.execute("SELECT run_id, record FROM runs ORDER BY created DESC, rowid DESC LIMIT 1 OFFSET ?",
                                          (back,)).fetchall()
                if not rows:
                    raise DataError("%s: %s holds %d runs" % (ref, self.path, self.count()))
            else:
                prefix = m.group(3)
                rows = self._conn.execute("SELECT run_id, record FROM runs WHERE substr(run_id, 1, ?) = ? LIMIT 2",
                                          (len(prefix), prefix)).fetchall()
                if not rows:
                    raise DataError("%s: no such run in %s" % (ref, self.path))
                if len(rows) > 1:
                    raise DataError("%s: more than one run starts with it in %s (give more digits)" % (ref, self.path))
        return self._decode(*rows[0])

    def _where(self, board: Optional[str], backend: Optional[str], model: Optional[str], task: Optional[str],
               label: Optional[str]) -> Tuple[str, List[Any]]:
        terms: List[str] = []
        args: List[Any] = []
        for column, value in (("board", board), ("backend", backend), ("task", task), ("label", label)):
            if value is not None:
                terms.append("%s = ?" % column)
                args.append(value)
        if model is not None:  # a model's file name or the start of its sha256
            terms.append("(model_name = ? OR substr(model_sha256, 1, ?) = ?)")
            args += [model, len(model), model.lower()]
        return (" WHERE " + " AND ".join(terms)) if terms else "", args

    def runs(self, board: Optional[str] = None, backend: Optional[str] = None, model: Optional[str] = None,
             task: Optional[str] = None, label: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Full records, newest first, filtered by exact board/backend/task/label and by model
        (file name or sha256 prefix)."""
        where, args = self._where(board, backend, model, task, label)
        sql = "SELECT run_id, record FROM runs%s ORDER BY created DESC, rowid DESC LIMIT ?" % where
        with self._errors():
            rows = self._conn.execute(sql, args + [-1 if limit is None else int(limit)]).fetchall()
        return [self._decode(*row) for row in rows]

    def summaries(self, board: Optional[str] = None, backend: Optional[str] = None, model: Optional[str] = None,
                  task: Optional[str] = None, label: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Like ``runs`` but only the indexed columns (no JSON parsing): what ``results list`` shows."""
        where, args = self._where(board, backend, model, task, label)
        names = ("run_id", "created") + schema.SUMMARY_COLUMNS
        sql = "SELECT %s FROM runs%s ORDER BY created DESC, rowid DESC LIMIT ?" % (", ".join(names), where)
        with self._errors():
            rows = self._conn.execute(sql, args + [-1 if limit is None else int(limit)]).fetchall()
        return [dict(zip(names, row)) for row in rows]

    def count(self) -> int:
        with self._errors():
            return int(self._conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _set_wal(conn: sqlite3.Connection) -> None:
    """WAL lets readers and one writer work at once; switching needs a moment alone with the
    file, so retry while another process holds it (the store works without WAL, only slower)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                return
        except sqlite3.OperationalError:
            pass
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)

