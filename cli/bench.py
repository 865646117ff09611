"""``spikeedge bench``: the field benchmark (``measure/bench.py``, ``docs/bench.md``), here or on
boards over SSH, one run record per model file; the records go to the results store only once
every run has finished, so an interrupted bench stores nothing."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from ..errors import CheckFailed, MeasurementError, SpikeedgeError
from .common import JsonOpt, emit, err_console, in_range, out_console
from .deploy import GroupOpt, IdentityOpt, InvOpt, KnownOpt, RemoteOpt, ToOpt

SUFFIXES = {"event": ".seb", "onnx": ".onnx", "tflite": ".tflite"}


def bench(
    models: List[Path] = typer.Argument(..., metavar="MODEL...", help="Model files: a bundle (.seb, backend event), .onnx (onnx), .tflite (tflite); one run per file."),
    task: str = typer.Option(..., "--task", help="mackey-glass, lorenz, rossler, digits, mnist or npz (with --data)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Comma list of event,onnx,tflite; a backend no MODEL is for is looked up beside the first MODEL (model.seb -> model.onnx). Default: each MODEL's own."),
    trials: int = typer.Option(5, "--trials", callback=in_range(1, 1000), help="Timed passes over the samples (NeuroBench: 5, each within 5% of the mean)."),
    warmup: int = typer.Option(5, "--warmup", callback=in_range(0, 100000), help="Untimed inferences first."),
    samples: Optional[int] = typer.Option(None, "--samples", callback=in_range(1, 10**7), help="Samples per trial (default: 30 forecast windows, or up to 1,000 test inputs)."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder or the .npz file of task 'npz'."),
    meter: str = typer.Option("auto", "--meter", help="auto (the board's sensor; none found: no power figures), none, a meter kind, or estimate (a CPU model from the board profile's measured idle/load power x time where it has them, else synaptic operations x energy per op; labelled estimate)."),
    root: str = typer.Option("/", "--root", help="Root of the file system to read sensors and board facts from."),
    baseline: float = typer.Option(2.0, "--baseline", callback=in_range(0, 3600), help="Seconds of idle power measured before the trials."),
    threads: int = typer.Option(1, "--threads", callback=in_range(1, 256), help="Interpreter threads (onnx, tflite)."),
    label: Optional[str] = typer.Option(None, "--label", help="A name for these runs in the results store (e.g. a release)."),
    board: Optional[str] = typer.Option(None, "--board", help="The board profile to record (spikeedge boards list) when detection cannot tell, e.g. under emulation; an inventory's spikeedge_board does the same per host."),
    db: Optional[Path] = typer.Option(None, "--db", help="Results database (default $SPIKEEDGE_RESULTS_DB, else ~/.local/share/spikeedge/results.sqlite)."),
    no_store: bool = typer.Option(False, "--no-store", help="Print the records only; store nothing."),
    to: Optional[str] = ToOpt,
    inventory: Optional[Path] = InvOpt,
    group: Optional[str] = GroupOpt,
    known_hosts: Optional[Path] = KnownOpt,
    identity: Optional[str] = IdentityOpt,
    remote_dir: str = RemoteOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Field benchmark (NeuroBench system track): latency, power, energy, workload, task metric.

    Example: spikeedge bench model.seb --backend event,onnx,tflite --task mackey-glass --label v0.2 --json
    """
    files = pick_models(models, backend)
    argv = ["--task", task, "--trials", str(trials), "--warmup", str(warmup), "--meter", meter, "--baseline", str(baseline), "--threads", str(threads)]
    argv += (["--samples", str(samples)] if samples is not None else []) + (["--label", label] if label is not None else [])
    argv += ["--board", board] if board is not None else []
    if to is not None or inventory is not None:
        if data is not None:
            raise SpikeedgeError("--data with --to/--inventory: the board reads its own data; bench a built-in task remotely")
        records, hosts = _remote(files, argv, to, inventory, group, known_hosts, identity, remote_dir)
    else:
        records, hosts = _local(files, task, trials, warmup, samples, data, meter, root, baseline, threads, label, as_json, board), None
    failures = [r["power_failure"] for r in records if r.get("power_failure")]
    ids = _store(records, db) if not no_store and not failures else None  # rejected power: store nothing
    result: Dict[str, Any] = {"runs": records, "stored": ids is not None, "run_ids": ids, "db": str(_db_path(db)) if ids is not None else None}
    if hosts is not None:
        result["hosts"] = hosts
    emit(result, as_json, human=_show)
    if failures:
        raise CheckFailed("%s%s" % (failures[0], " (and %d more run(s)); nothing stored" % (len(failures) - 1) if len(failures) > 1 else "; nothing stored"))
    failed = [h["target"] for h in hosts or [] if not h["ok"]]
    if failed:
        raise CheckFailed("%d of %d host(s) failed: %s" % (len(failed), len(hosts or []), ", ".join(failed)))


def pick_models(models: List[Path], backend: Optional[str]) -> List[Path]:
    """The files to bench, one per backend: the MODELs given, and for a --backend that none of
    them is for, the sibling with that suffix beside the first MODEL."""
    from ..runtime.backends import BACKENDS, backend_of

    by_kind: Dict[str, Path] = {}
    for m in models:
        kind = backend_of(m)
        if kind in by_kind:
            raise SpikeedgeError("%s and %s: two %s models; bench one model per backend in a run" % (by_kind[kind], m, kind))
        by_kind[kind] = m
    if backend is None:
        return list(models)
    wanted = [b.strip() for b in backend.split(",") if b.strip()]
    for b in wanted:
        if b not in BACKENDS:
            raise SpikeedgeError("--backend: %r is not one of %s" % (b, ", ".join(BACKENDS)))
    for kind, m in by_kind.items():
        if kind not in wanted:
            raise SpikeedgeError("%s: a %s model, but --backend lists %s" % (m, kind, ",".join(wanted)))
    files = []
    for b in wanted:
        f = by_kind.get(b) or models[0].with_suffix(SUFFIXES[b])
        if not f.is_file():
            fmt_name = "bundle" if b == "event" else b
            raise SpikeedgeError("--backend %s: no %s beside %s (spikeedge export CKPT --format %s -o %s, or give the file)" % (b, f, models[0], fmt_name, f))
        files.append(f)
    return files


def _local(files: List[Path], task: str, trials: int, warmup: int, samples: Optional[int], data: Optional[str], meter: str, root: str,
           baseline: float, threads: int, label: Optional[str], quiet: bool, board: Optional[str] = None) -> List[Dict[str, Any]]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..runtime.backends import open_model
    from ..measure.bench import bench_model

    for f in files:  # every file loads before any trial runs: a bad third file fails in seconds
        open_model(f)
    records = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console, disable=quiet, transient=True) as bar:
        for f in files:
            tid = bar.add_task(f.name, total=None)

            def progress(done: int, total: int, phase: str, tid: Any = tid, name: str = f.name) -> None:
                _report(bar, tid, done, total, "%s: %s" % (name, phase))

            m, note = _open_meter(meter, root)
            try:
                records.append(bench_model(f, task, trials=trials, warmup=warmup, samples=samples, meter=m, root=root, label=label,
                                           threads=threads, progress=progress, baseline_s=baseline, data=data, meter_note=note,
                                           board=board))
            finally:
                if m is not None:
                    m.close()
    return records


def _report(bar: Any, tid: Any, done: int, total: int, text: str) -> None:
    """Move the progress bar (between inferences; a Ctrl-C here or anywhere ends the bench)."""
    bar.update(tid, completed=done, total=total, description=text)


def _open_meter(kind: str, root: str) -> Any:
    """(meter, note): ``auto`` without a sensor benches without power figures and says so."""
    if kind == "none":
        return None, "no power figures: --meter none"
    from .power import open_cli_meter

    try:
        return open_cli_meter(kind, root), None
    except MeasurementError as exc:
        if kind != "auto":
            raise
        return None, "no power figures: %s" % exc


def _remote(files: List[Path], argv: List[str], to: Optional[str], inventory: Optional[Path], group: Optional[str],
            known_hosts: Optional[Path], identity: Optional[str], remote_dir: str) -> Any:
    """Each board benches an uploaded, sha256-checked copy of every file with its own runtime
    (``spikeedge bench ... --no-store --json``); its records come back tagged with the SSH
    target. Boards that failed are listed; the others' records are kept."""
    from ..deploy.fleet import Access, run_jobs
    from ..deploy.remote import remote_command
    from .deploy import _targets

    for f in files:
        if not f.is_file():
            raise SpikeedgeError("%s: no such file" % f)
    targets = _targets(to, inventory, group)

    async def job(conn: Any) -> Any:
        result = None
        runs: List[Dict[str, Any]] = []
        ok = True
        for f in files:
            declared = ["--board", conn.target.board] if conn.target.board and "--board" not in argv else []  # the inventory's spikeedge_board
            r = await remote_command(conn, remote_dir, ["bench", "{model}"] + argv + declared + ["--no-store"], f, "bench")
            ok = ok and r.ok
            result = result or r
            if r is not result:
                result.steps += r.steps
            for rec in r.report.get("runs", []):
                rec["model"]["path"] = str(f)  # the file benched, not the board's scratch copy
                rec["model"]["name"] = f.name  # (the copy is named by its sha256: runs of one file would not group)
                rec["environment"]["ssh_target"] = conn.target.name
                runs.append(rec)
        result.report = {"runs": runs}
        result.ok = ok
        return result

    results = run_jobs(targets, "bench", job, Access(known_hosts, False, identity))
    records = [rec for r in results if r.ok for rec in r.report.get("runs", [])]
    hosts = [dict(asdict(r), report=None) for r in results]
    return records, hosts


def _db_path(db: Optional[Path]) -> Path:
    from ..results.store import default_db_path

    return db if db is not None else default_db_path()


def _store(records: List[Dict[str, Any]], db: Optional[Path]) -> List[str]:
    """Every record in one transaction, after the last run finished."""
    from ..results.store import Store

    if not records:
        return []
    with Store(db) as store:
        return store.add_runs(records)


def _show(r: Dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    for rec in r["runs"]:
        lat, pw, wl, rep = rec["latency"], rec["power"], rec["workload"], rec["repeatability"]
        t = Table(title=escape("%s on %s (%s, %s)" % (rec["model"]["name"], rec["board"], rec["backend"], rec["environment"].get("hostname"))),
                  show_header=False)
        t.add_column("figure")
        t.add_column("value", justify="right")
        rows = [
            ("task %s" % rec["task"]["name"], "%s %.4g on %d samples" % (rec["task"]["metric"], rec["task"]["value"], rec["task"]["samples"])),
            ("execution time", "%.4g ms ± %.2g (SE), p50 %.4g, p99 %.4g" % (lat["mean_ms"], lat["sem_ms"], lat["p50_ms"], lat["p99_ms"])),
            ("throughput", "%.4g inferences/s" % lat["throughput_per_s"] if lat["throughput_per_s"] else "-"),
            ("trials", "%d x %d samples, means %s ms" % (rec["protocol"]["trials"], rec["protocol"]["samples_per_trial"],
                                                          ", ".join("%.4g" % m for m in lat["trial_means_ms"]))),
            ("pre-processing", "%.3g ms per sample" % lat["preprocess_ms"]),
            ("activation sparsity", "%.4f" % wl["activation_sparsity"] if wl["activation_sparsity"] is not None else "-"),
            ("synaptic ops / inference", "%.4g effective, %.4g dense" % (wl["synops_per_inference"]["effective"], wl["synops_per_inference"]["dense"])),
            ("footprint", "%s B dense, file %d B" % (rec["model"]["footprint_bytes"], rec["model"]["file_bytes"])),
        ]
        if pw is not None:
            e = pw["energy_per_inference_j"]
            rows.append(("power (%s)" % (pw["label"] if pw["meter"] == pw["label"] else "%s, %s" % (pw["label"], pw["meter"])), "idle %s W, active %.4g W, dynamic %s W" % (
                _num(pw["idle_w"]), pw["active_w"], _num(pw["dynamic_w"]))))
            rows.append(("energy / inference", "%.4g J total, %s J dynamic" % (e["total"], _num(e["dynamic"]))))
        for a, b in rows:
            t.add_row(escape(a), escape(b))
        out_console.print(t)
        for note in [n for n in rec.get("notes") or [] if n != rep["warning"]]:
            out_console.print("  note: " + note, markup=False, highlight=False)
        if not rep["ok"]:
            err_console.print("warning: %s: %s" % (rec["model"]["name"], rep["warning"]), style="yellow", markup=False, highlight=False,
                              soft_wrap=True)
    if r["stored"]:
        out_console.print("stored %d run(s) in %s" % (len(r["run_ids"]), r["db"]), markup=False, highlight=False)
    for h in r.get("hosts") or []:
        if not h["ok"]:
            out_console.print("%s: FAILED: %s" % (h["target"], h["error"]), markup=False, highlight=False)


def _num(v: Any) -> str:
    return "-" if v is None else "%.4g" % v
