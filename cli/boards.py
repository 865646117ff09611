"""``spikeedge boards list|show|detect``: the supported boards and which one this machine is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import typer
from rich.markup import escape
from rich.table import Table

from ..board import detect as detection
from ..board import profile
from .common import JsonOpt, emit, out_console

app = typer.Typer(help="Supported boards and their profiles. Example: spikeedge boards detect", no_args_is_help=True)


def _row(board: profile.Board) -> Dict[str, Any]:
    pm = board.power_meter
    return {
        "name": board.name,
        "display_name": board.display_name,
        "support": board.support,
        "os": board.software.os,
        "python": board.software.python,
        "power_meter": pm.kind,
        "power_total": list(pm.total_rails),
        "backend": board.backend.recommended,
    }


@app.command("list")
def list_(as_json: bool = JsonOpt) -> None:
    """The supported boards: support level, OS and Python, power meter, recommended backend.

    Example: spikeedge boards list --json
    """
    rows = [_row(b) for b in profile.list_boards()]

    def human(result: Dict[str, Any]) -> None:
        table = Table("name", "board", "support", "Python", "power meter", "backend")
        for column in (table.columns[0], table.columns[2], table.columns[4]):
            column.no_wrap = True
        for r in result["boards"]:
            table.add_row(r["name"], r["display_name"], r["support"], r["python"], r["power_meter"], r["backend"])
        out_console.print(table)

    emit({"boards": rows}, as_json, human)


@app.command("show")
def show(name: str = typer.Argument(..., help="Board name, e.g. rpi5 (see spikeedge boards list)."), as_json: bool = JsonOpt) -> None:
    """One board's profile: identity strings, OS, power meter and rails, backend, install notes.

    Example: spikeedge boards show jetson-orin-nano --json
    """
    board = profile.get_board(name)

    def human(d: Dict[str, Any]) -> None:
        pm, sw = d["power_meter"], d["software"]
        lines = [
            "[bold]%s[/bold] (%s), %s, support: %s" % (escape(d["display_name"]), d["name"], d["arch"], d["support"]),
            "OS: %s; Python %s; glibc %s" % (escape(sw["os"]), sw["python"], sw["glibc"] or "varies"),
            "power meter: %s%s" % (pm["kind"], " (fallback %s)" % pm["fallback"] if pm["fallback"] else ""),
        ]
        if pm["rails"]:
            lines.append("  rails: %s" % ", ".join(pm["rails"]))
            lines.append("  total: %s" % (pm["total"] or "sum of " + " + ".join(pm["sum"])))
        for chip in pm["i2c"]:
            lines.append("  I2C bus %d address %s: %s" % (chip["bus"], chip["address"], ", ".join(chip["rails"])))
        lines += ["  - " + escape(n) for n in pm["notes"]]
        lines.append("backend: %s - %s" % (d["backend"]["recommended"], escape(d["backend"]["reason"])))
        lines.append("install:")
        lines += ["  - " + escape(n) for n in d["install_notes"]]
        for line in lines:
            out_console.print(line, highlight=False)

    emit(board.to_dict(), as_json, human)


@app.command("detect")
def detect(
    root: Path = typer.Option(Path("/"), "--root", help="Root of the file system to inspect (a copy of a board's /proc, /etc and /sys)."),
    as_json: bool = JsonOpt,
) -> None:
    """Which supported board this machine is, and the evidence: device-tree model and compatible,
    L4T release, CPU vendor, power sensors in sysfs. An unknown machine is reported, not an error.

    Example: spikeedge boards detect --json
    """
    found = detection.detect(root)

    def human(d: Dict[str, Any]) -> None:
        if d["detected"]:
            out_console.print("[bold]%s[/bold] (%s): %s" % (escape(d["display_name"]), d["board"], escape(d["reason"])), highlight=False)
            out_console.print("power meter: %s; backend: %s; support: %s" % (d["power_meter"], d["backend"], d["support"]), highlight=False)
        else:
            out_console.print("no supported board detected: %s" % escape(d["reason"]), highlight=False)
        for sensor in d["evidence"]["power_sensors"]:
            out_console.print("sensor: %s %s at %s" % (sensor["kind"], sensor["device"], escape(sensor["path"])), highlight=False)
        for w in d["warnings"]:
            out_console.print("warning: %s" % escape(w), style="yellow", highlight=False)

    emit(found.to_dict(), as_json, human)
