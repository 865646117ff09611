"""``spikeedge profile``: per-layer spike rates, synaptic operations, time per phase, peak memory,
and power and energy per inference when a meter is present (``measure/profile.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import typer

from ..errors import CheckFailed, SpikeedgeError
from .common import BackendOpt, JsonOpt, emit, in_range, out_console


def profile(
    model: Path = typer.Argument(..., help="A bundle (.seb) or a step graph (.onnx, .tflite)."),
    input: Optional[Path] = typer.Option(None, "--input", help=".npz with array x, as for spikeedge run."),
    task: Optional[str] = typer.Option(None, "--task", help="Instead of --input: the first --samples inputs of a task's test split."),
    samples: int = typer.Option(16, "--samples", callback=in_range(1, 10**6), help="With --task: how many inputs."),
    repeats: int = typer.Option(1, "--repeats", callback=in_range(1, 10**5), help="Run the inputs this many times."),
    meter: str = typer.Option("auto", "--meter", help="auto (the board's sensor; none found: no power figures), none, a meter kind, or estimate (synaptic operations x energy per op, labelled as an estimate)."),
    root: str = typer.Option("/", "--root", help="Root of the file system to read sensors from."),
    baseline: float = typer.Option(1.0, "--baseline", callback=in_range(0, 3600), help="Seconds of idle power measured first."),
    backend: str = BackendOpt,
    threads: int = typer.Option(1, "--threads", callback=in_range(1, 256), help="Interpreter threads (onnx, tflite)."),
    to: Optional[str] = typer.Option(None, "--to", help="Profile on this board over SSH instead of here: [USER@]HOST[:PORT] (its runtime comes from spikeedge flash)."),
    inventory: Optional[Path] = typer.Option(None, "--inventory", help="Profile on every board of an Ansible YAML inventory."),
    group: Optional[str] = typer.Option(None, "--group", help="Only this inventory group."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)."),
    identity: Optional[str] = typer.Option(None, "--identity", help="Private key file for the boards."),
    remote_dir: str = typer.Option(".spikeedge", "--remote-dir", help="The boards' spikeedge folder (as given to spikeedge flash)."),
    as_json: bool = JsonOpt,
) -> None:
    """On-device profile of a model, here or on boards over SSH (the results come back).

    Example: spikeedge profile model.seb --task mackey-glass --meter auto --json
    """
    if to is not None or inventory is not None:
        _remote(model, input, task, samples, repeats, meter, baseline, backend, threads, to, inventory, group, known_hosts, identity, remote_dir, as_json)
        return
    from ..runtime.backends import backend_of, open_model
    from ..errors import MeasurementError
    from ..measure.profile import profile_model
    from .run import _io, load_images, load_inputs

    if (input is None) == (task is None):
        raise SpikeedgeError("give either --input FILE.npz or --task T")
    if samples < 1 or repeats < 1 or baseline < 0:
        raise SpikeedgeError("--samples and --repeats must be >= 1, --baseline >= 0")
    session = open_model(model, backend, threads=threads)
    conv, shape, _ = _io(session)
    if input is not None:
        xs = load_images(input, shape) if conv else load_inputs(input, shape)
    else:
        from ..tasks.registry import load_task

        spec = load_task(str(task), repeats=max(1, min(samples, 30)))
        if spec.kind == "forecast":
            xs = np.stack([w.train_x for w in spec.windows]).reshape(len(spec.windows), -1, 1)[:samples]
        else:
            xs = np.asarray(spec.x_test[:samples], np.float64)
            if conv:
                xs = xs[:, 0].reshape((xs.shape[0],) + tuple(shape))
    m = None
    note = None
    if meter != "none":
        from .power import open_cli_meter

        try:
            m = open_cli_meter(meter, root, ops_source=lambda: float(session.synops))
        except MeasurementError as exc:
            if meter != "auto":
                raise
            note = "no power figures: %s" % exc
    report = profile_model(session, xs, meter=m, baseline_s=baseline, repeats=repeats)
    report.update({"model": str(model), "backend": backend_of(model)})
    if note:
        report["power_note"] = note
    emit(report, as_json, human=_show)
    failure = (report.get("power") or {}).get("failure")
    if failure:
        raise CheckFailed(failure)


def _show(r: Dict[str, Any]) -> None:
    p = out_console.print
    p("%s: %d inferences, %.3f ms per inference, %.4f ms per step" % (r["model"], r["inferences"], r["ms_per_inference"], r["ms_per_step"]), highlight=False, markup=False)
    for name, rate in r["spike_rate"].items():
        p("  layer %-12s spike rate %.4f" % (name, rate), highlight=False, markup=False)
    p("  synaptic operations per inference %.0f" % r["synops_per_inference"], highlight=False)
    p("  time per phase: " + ", ".join("%s %.1f%%" % (k, 100 * v) for k, v in r["phases_share"].items()), highlight=False, markup=False)
    for layer, mats in (r.get("accumulation") or {}).items():
        for which, a in mats.items():
            if a.get("hybrid") and "switch_activity" in a:
                sw = a["switch_activity"]
                p("  %s %s accumulation: dense product above %s active sources (measured: event %.2f us + %.3f us per source, dense %.1f us); steps event %d, dense %d" % (
                    layer, which, "never" if sw is None else "%.1f%%" % (100 * sw), 1e3 * a["event_fixed_ms"], 1e3 * a["event_ms_per_source"],
                    1e3 * a["dense_ms"], a["steps"]["event"], a["steps"]["dense"]), highlight=False, markup=False)
    p("  peak traced memory %.1f kB" % (r["memory"]["traced_peak_bytes"] / 1024), highlight=False)
    pw = r.get("power")
    if pw:
        e = pw["energy_per_inference_j"]
        p("  energy per inference (%s): gross %.3g J, dynamic %s J%s" % (
            pw["label"], e["gross"], "%.3g" % e["dynamic"] if e["dynamic"] is not None else "-",
            "; %d samples at %.0f Hz" % (pw["samples"], pw["sampling_rate_hz"]) if "samples" in pw else ""), highlight=False, markup=False)
    elif r.get("power_note"):
        p("  " + r["power_note"], highlight=False, markup=False)


def _remote(model: Path, input: Optional[Path], task: Optional[str], samples: int, repeats: int, meter: str, baseline: float,
            backend: str, threads: int, to: Optional[str], inventory: Optional[Path], group: Optional[str],
            known_hosts: Optional[Path], identity: Optional[str], remote_dir: str, as_json: bool) -> None:
    """The same profile run by each board's runtime; inputs other than --task are not sent."""
    from ..deploy.fleet import Access, run_jobs
    from ..deploy.remote import remote_command
    from .deploy import _finish, _targets

    if input is not None:
        raise SpikeedgeError("--input with --to/--inventory: profile on boards with --task T (the board generates or reads the data)")
    if task is None:
        raise SpikeedgeError("give --task T")
    if not model.is_file():
        raise SpikeedgeError("%s: no such file" % model)
    targets = _targets(to, inventory, group)
    argv = ["profile", "{model}", "--task", task, "--samples", str(samples), "--repeats", str(repeats), "--meter", meter,
            "--baseline", str(baseline), "--backend", backend, "--threads", str(threads)]
    results = run_jobs(targets, "profile", lambda conn: remote_command(conn, remote_dir, argv, model, "profile"),
                       Access(known_hosts, False, identity))
    _finish(results, as_json)
