"""``spikeedge report -o report.html``: the results store's runs as one self-contained HTML page
(tables and matplotlib figures embedded, nothing fetched), ``results/report.py``; PNGs for
slides with ``--png-dir``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import typer

from ..errors import DataError
from .common import JsonOpt, emit, out_console


def report(
    output: Path = typer.Option(..., "-o", "--output", help="The HTML file to write (replaced atomically)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Results database (default: $SPIKEEDGE_RESULTS_DB, else the user's data folder)."),
    board: Optional[str] = typer.Option(None, "--board", help="Only runs on this board."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Only runs on this backend (event, onnx, tflite)."),
    model: Optional[str] = typer.Option(None, "--model", help="Only runs of this model (file name or start of its sha256)."),
    task: Optional[str] = typer.Option(None, "--task", help="Only runs on this task."),
    label: Optional[str] = typer.Option(None, "--label", help="Only runs with this --label."),
    png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Also write each figure as DIR/<plot>.png (for slides)."),
    title: str = typer.Option("spikeedge field benchmark report", "--title", help="The page's title."),
    as_json: bool = JsonOpt,
) -> None:
    """Write an offline HTML report of benchmark runs: summary table, latency distributions,
    energy per inference by board and backend, task metric vs synaptic operations with the Pareto
    front, power traces and each board's environment.

    Example: spikeedge report -o report.html --task mackey-glass --png-dir slides/
    """
    from ..results.report import write_report
    from ..results.store import Store

    with Store(db, create=False) as store:
        records = store.runs(board=board, backend=backend, model=model, task=task, label=label)
        where = store.path
    if not records:
        chosen = " ".join("--%s %s" % (k, v) for k, v in (("board", board), ("backend", backend), ("model", model),
                                                          ("task", task), ("label", label)) if v is not None)
        raise DataError("%s: no runs%s" % (where, " matching " + chosen if chosen else ""))
    result = write_report(records, output, png_dir=png_dir, title=title)
    result["db"] = str(where)
    emit(result, as_json, human=_show)


def _show(r: Dict[str, Any]) -> None:
    p = out_console.print
    p("%s: %d runs, plots: %s" % (r["output"], r["runs"], ", ".join(r["plots"]) or "none"), highlight=False, markup=False)
    for key, why in sorted(r["omitted"].items()):
        p("  no %s plot: %s" % (key, why), highlight=False, markup=False)
    for path in r["pngs"]:
        p("  %s" % path, highlight=False, markup=False)
