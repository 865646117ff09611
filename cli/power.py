"""``spikeedge power watch|record``: live power readings and the energy of a command, from the
board's own sensors (``board/meters/``, ``board/sampler.py``)."""

from __future__ import annotations

import subprocess
import time
from typing import Any, Callable, Dict, List, Optional

import typer

from ..errors import CheckFailed, SpikeedgeError
from .common import JsonOpt, emit, err_console, in_range

app = typer.Typer(help="Power and energy from the board's sensors. Example: spikeedge power watch --duration 5", no_args_is_help=True)

MeterOpt = typer.Option("auto", "--meter", help="auto (the detected board's meter), a meter kind (ina3221-hwmon, ina3221-iio, tegrastats, rpi5-pmic, ina2xx-hwmon, ina2xx-i2c, rapl) or estimate.")
RootOpt = typer.Option("/", "--root", help="Root of the file system to read sensors from (tests point it at fixture trees).")


def open_cli_meter(kind: str, root: str, ops_source: Optional[Callable[[], float]] = None) -> Any:
    """The meter ``--meter`` names: ``auto`` takes the detected board's profile (its rails and
    total), else the first sensor found; ``estimate`` counts synaptic operations."""
    from ..board import meters as pm

    if kind == "estimate":
        return pm.EstimateMeter(root=root, ops_source=ops_source)
    if kind == "auto":
        from ..board.detect import detect

        found = detect(root)
        if found.board is not None and found.board.power_meter.kind != "none":
            return pm.open_board_meter(found.board.power_meter, root=root)
        return pm.detect_meter(root)
    return pm.open_meter(kind, root=root)


@app.command("watch")
def watch(
    meter: str = MeterOpt,
    root: str = RootOpt,
    interval: Optional[float] = typer.Option(None, "--interval", callback=in_range(0, 3600, lo_open=True), help="Seconds between readings (never below the sensor's refresh period)."),
    duration: Optional[float] = typer.Option(None, "--duration", callback=in_range(0, 10**7, lo_open=True), help="Stop after this many seconds (default: until Ctrl-C)."),
    as_json: bool = JsonOpt,
) -> None:
    """Live power per rail; on exit, the mean, minimum and maximum of each.

    Example: spikeedge power watch --duration 10 --json
    """
    if duration is not None and duration <= 0:
        raise SpikeedgeError("--duration: must be > 0")
    from ..board.sampler import Sampler

    m = open_cli_meter(meter, root)
    sampler = Sampler(m, interval).start()
    t0 = time.monotonic()
    shown = 0
    try:
        while duration is None or time.monotonic() - t0 < duration:
            time.sleep(min(0.5, duration or 0.5))
            if not as_json:
                for r in sampler.samples[shown:][-1:]:
                    rails = "  ".join("%s %.0f" % kv for kv in sorted(r.rails.items()))
                    err_console.print("%7.2f s  total %8.1f mW  %s" % (r.time_monotonic - t0, r.total_mw, rails), highlight=False, markup=False)
                shown = len(sampler.samples)
    except KeyboardInterrupt:
        pass
    sampler.mark("watch", t0, time.monotonic())
    result = sampler.stop()
    samples = sampler.samples
    rails: Dict[str, List[float]] = {}
    for r in samples:
        for k, v in r.rails.items():
            rails.setdefault(k, []).append(v)
    rails["total"] = [r.total_mw for r in samples]
    stats = {k: {"mean_mw": sum(v) / len(v), "min_mw": min(v), "max_mw": max(v)} for k, v in rails.items() if v}
    emit({"meter": result.meter, "label": result.label, "samples": result.samples, "seconds": result.duration_s,
          "sampling_rate_hz": result.effective_rate_hz, "energy_j": result.energy_j, "rails": stats, "error": result.error,
          "coverage": result.window("watch").coverage, "failure": result.failure}, as_json)
    meter_verdict(result)


@app.command("record", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def record(
    ctx: typer.Context,
    meter: str = MeterOpt,
    root: str = RootOpt,
    baseline: float = typer.Option(2.0, "--baseline", callback=in_range(0, 3600), help="Seconds of idle measurement before the command (0: none)."),
    interval: Optional[float] = typer.Option(None, "--interval", callback=in_range(0, 3600, lo_open=True), help="Seconds between readings."),
    as_json: bool = JsonOpt,
) -> None:
    """Energy of a command: idle baseline, then the command under the meter; gross and dynamic
    (above idle) energy, mean power, duration. Exit 1 when the command fails.

    Example: spikeedge power record --json -- spikeedge run model.seb --input x.npz
    """
    cmd = list(ctx.args)
    if not cmd:
        raise SpikeedgeError("power record: give the command after --, e.g. spikeedge power record -- sleep 1")
    if baseline < 0:
        raise SpikeedgeError("--baseline: must be >= 0")
    if meter == "estimate":
        raise SpikeedgeError("--meter estimate counts a model's synaptic operations: use spikeedge profile MODEL --meter estimate")
    from ..board.sampler import Sampler

    m = open_cli_meter(meter, root)
    sampler = Sampler(m, interval).start()
    base = sampler.measure_baseline(baseline) if baseline > 0 else None
    t0 = time.perf_counter()
    try:
        with sampler.window("command"):
            try:
                proc = subprocess.run(cmd)
            except FileNotFoundError:
                raise SpikeedgeError("power record: command not found: %s" % cmd[0]) from None
    finally:
        result = sampler.stop()
    w = result.window("command")
    summary = {"command": cmd, "returncode": proc.returncode, "seconds": time.perf_counter() - t0, "meter": result.meter,
               "label": w.label, "baseline_mw": base, "energy_j": {"gross": w.energy_j, "dynamic": w.dynamic_energy_j},
               "mean_power_mw": {"gross": w.mean_power_mw, "dynamic": w.dynamic_power_mw}, "samples": w.samples,
               "sampling_rate_hz": result.effective_rate_hz, "coverage": w.coverage, "error": result.error,
               "failure": result.failure}
    emit(summary, as_json)
    if proc.returncode != 0:
        raise CheckFailed("power record: the command exited with %d" % proc.returncode)
    meter_verdict(result)


def meter_verdict(result: Any) -> None:
    """After the output: exit 1 (``CheckFailed``, one line) when the readings cover too little of
    a window for NeuroBench's rules (``board.sampler.MIN_COVERAGE``); a meter that failed after
    enough was covered only warns on stderr."""
    if result is None:
        return
    if result.failure:
        raise CheckFailed(result.failure)
    if result.error:
        err_console.print("warning: power meter failed after the measured windows: %s" % result.error,
                          highlight=False, markup=False, soft_wrap=True)
