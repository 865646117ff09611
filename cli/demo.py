"""``spikeedge demo``: the main job end to end on built-in data."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOpt, Seed, emit, one_thread_pool, out_console, require_offline, stages


def demo(
    quick: bool = typer.Option(False, "--quick", help="A small network, for smoke tests (< 30 s)."),
    out: Path = typer.Option(Path("spikeedge-demo"), "--out", help="Folder for the checkpoint, model.seb and the report."),
    seed: int = Seed(),
    as_json: bool = JsonOpt,
) -> None:
    """Build an HRSNN, LNP-prune it, train it on Mackey-Glass tau=17, export int8, run it event-driven.

    Example: spikeedge demo --quick --out demo-out
    """
    require_offline()
    from ..offline.pipeline import demo as run_demo
    one_thread_pool()

    with stages(7, quiet=as_json) as advance:
        summary = run_demo(out, quick=quick, seed=seed, stage=advance)
    emit(summary, as_json, human=_show)


def _show(s: dict) -> None:
    from rich.markdown import Markdown

    out_console.print(Markdown(Path(s["files"]["report"]).read_text()))
