"""``spikeedge results list|compare|export``: the runs that ``spikeedge bench`` stored
(``results/``; ``docs/results-store.md``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

import typer

from ..errors import CheckFailed
from .common import JsonOpt, emit, err_console, in_range, out_console

app = typer.Typer(help="The results store: list, compare and export benchmark runs.", no_args_is_help=True)

DbOpt = typer.Option(None, "--db", help="Results database (default: $SPIKEEDGE_RESULTS_DB or ~/.local/share/spikeedge/results.sqlite).")
BoardOpt = typer.Option(None, "--board", help="Only runs on this board profile.")
BackendOpt = typer.Option(None, "--backend", help="Only runs on this backend (event, onnx, tflite).")
ModelOpt = typer.Option(None, "--model", help="Only runs of this model (file name or start of its sha256).")
TaskOpt = typer.Option(None, "--task", help="Only runs on this task.")
LabelOpt = typer.Option(None, "--label", help="Only runs with this label.")
LimitOpt = typer.Option(None, "--limit", callback=in_range(1, 10**9), help="At most this many runs, newest first.")


def _store(db: Optional[Path]) -> Any:
    from ..results.store import Store

    return Store(db, create=False)


def list_runs(db: Optional[Path] = DbOpt, board: Optional[str] = BoardOpt, backend: Optional[str] = BackendOpt,
              model: Optional[str] = ModelOpt, task: Optional[str] = TaskOpt, label: Optional[str] = LabelOpt,
              limit: Optional[int] = LimitOpt, as_json: bool = JsonOpt) -> None:
    """Stored runs, newest first.

    Example: spikeedge results list --board rpi5 --limit 10
    """
    with _store(db) as store:
        runs = store.summaries(board=board, backend=backend, model=model, task=task, label=label, limit=limit)
        emit({"runs": runs, "db": str(store.path)}, as_json, human=_show_list)


def _print_table(table: Any) -> None:
    """On a terminal, as wide as the terminal; into a file, a pipe or a CI log, as wide as the
    table needs (rich would squeeze it into 80 columns and cut every cell to "lab…")."""
    if out_console.is_terminal:
        out_console.print(table)
        return
    from rich.console import Console
    from rich.measure import Measurement

    need = Measurement.get(out_console, out_console.options.update_width(100000), table).maximum
    Console(width=max(need, 20), file=out_console.file).print(table)  # print(width=) cannot exceed the console's


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None else fmt % x


def _show_list(r: Dict[str, Any]) -> None:
    from rich.table import Table

    if not r["runs"]:
        out_console.print("no runs in %s" % r["db"], highlight=False, markup=False)
        return
    t = Table(title=r["db"], title_justify="left")
    from ..results.report import si

    for name in ("id", "created", "label", "board", "backend", "model", "task metric", "mean ms", "energy/inference"):
        t.add_column(name, justify="right" if name in ("task metric", "mean ms", "energy/inference") else "left",
                     no_wrap=name in ("id", "created"))
    for s in r["runs"]:
        metric = "-" if s["metric_value"] is None else "%s %.4g" % (s["metric"], s["metric_value"])
        energy = "-" if s["energy_j"] is None else si(s["energy_j"], "J") + (" est." if s["power_label"] == "estimate" else "")
        t.add_row(s["run_id"][:8], s["created"][:16].replace("T", " "), s["label"] or "", s["board"] or "", s["backend"] or "", s["model_name"] or "",
                  metric, _num(s["mean_ms"], "%.3f"), energy)
    _print_table(t)


def compare(a: str = typer.Argument(..., help="Baseline run: id, unique id prefix (4+ digits), latest or latest~N."),
            b: str = typer.Argument(..., help="Run compared against the baseline (same forms)."),
            db: Optional[Path] = DbOpt,
            k: float = typer.Option(3.0, "--k", callback=in_range(0, 1000), help="Standard errors a change must exceed (besides the relative floors)."),
            as_json: bool = JsonOpt) -> None:
    """Per-metric deltas of B against A; exit 1 when B regresses beyond noise (for CI).

    Example: spikeedge results compare latest~1 latest
    """
    from ..results.compare import compare_runs

    with _store(db) as store:
        result = compare_runs(store.get(a), store.get(b), k=k)
    for warning in result["warnings"]:
        err_console.print("warning: " + warning, highlight=False, markup=False, soft_wrap=True)  # one line, even in a log
    emit(result, as_json, human=_show_compare)
    if result["regressed"]:
        worst = [r for r in result["rows"] if r["status"] == "regressed"]
        raise CheckFailed("%s regresses against %s: %s" % (result["b"]["run_id"][:8], result["a"]["run_id"][:8], ", ".join(
            "%s %+.1f%%" % (r["label"], r["delta_pct"]) if r["delta_pct"] is not None else r["label"] for r in worst)))


def _show_compare(r: Dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="A %s  ->  B %s" % (r["a"]["run_id"][:8], r["b"]["run_id"][:8]), title_justify="left")
    for name in ("metric", "A", "B", "change", "threshold", "status"):
        t.add_column(name, justify="left" if name in ("metric", "status") else "right", no_wrap=name == "status")
    style = {"regressed": "[red]regressed[/red]", "improved": "[green]improved[/green]"}
    for row in r["rows"]:
        change = "-" if row["delta_pct"] is None else "%+.2f%%" % row["delta_pct"]
        thr = "-" if row["threshold"] is None else "%.3g (%s)" % (row["threshold"], row["basis"])
        t.add_row("%s%s" % (row["label"], " (%s)" % row["unit"] if row["unit"] else ""), _num(row["a"], "%.4g"), _num(row["b"], "%.4g"), change, thr,
                  style.get(row["status"], row["status"] if not row.get("note") else "n/a: " + row["note"]))
    _print_table(t)


def export(csv_path: str = typer.Option(..., "--csv", help="CSV file to write (- for stdout)."),
           db: Optional[Path] = DbOpt, board: Optional[str] = BoardOpt, backend: Optional[str] = BackendOpt,
           model: Optional[str] = ModelOpt, task: Optional[str] = TaskOpt, label: Optional[str] = LabelOpt,
           limit: Optional[int] = LimitOpt) -> None:
    """Runs as a flat CSV table, one row per run, newest first.

    Example: spikeedge results export --csv runs.csv --board rpi5
    """
    from ..results.csv_export import to_text, write_csv

    with _store(db) as store:
        records = store.runs(board=board, backend=backend, model=model, task=task, label=label, limit=limit)
    if csv_path == "-":
        sys.stdout.write(to_text(records))
        return
    n = write_csv(records, Path(csv_path))
    err_console.print("%d runs -> %s" % (n, csv_path), highlight=False, markup=False, soft_wrap=True)


app.command("list")(list_runs)
app.command("compare")(compare)
app.command("export")(export)
