"""Lyapunov Noise Pruning against its baselines and ablations on four tasks; writes
``docs/results/lnp.md`` (tables, target check) and ``docs/results/lnp.json`` (raw numbers).

Per seed: one random HRSNN (``--neurons``, one input, one output) is pruned ONCE by LNP, without
task data, and that same pruned network is trained (ridge readout, ``pipeline.train_model``) on
each task: Mackey-Glass (sMAPE, NeuroBench protocol), Lorenz and Rossler (NRMSE over the same
autoregressive windows) and digits (accuracy). Rows: the dense HRSNN; LNP; activity-based pruning
(AP) of the dense network trained on the task, to LNP's neuron and synapse counts; random and
magnitude pruning of the untrained network to LNP's counts; homogeneous time constants before
LNP; LNP with each step switched off. Per row and task: counts, metric, SynOps per inference on
the event-driven runtime after training, largest Lyapunov exponent, LNP wall time. Plus one timed
LNP run on a larger network. Every finished (row, seed, task) is cached, so an interrupted run
continues where it stopped. The rows and tasks are defined in ``lnp_setup.py``, the report
(aggregation, target check, lnp.md and lnp.json) is written by ``lnp_report.py``.

    python benchmarks/lnp_eval.py [--seeds 5] [--neurons 500] [--target-neurons 0.5]
        [--target-synapses 0.5] [--timing-neurons 2000] [--cache out/lnp-eval-cache] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from spikeedge.offline import lnp as lnp_pkg
from spikeedge.offline.baselines import prune_activity, prune_magnitude, prune_random
from spikeedge.offline.checkpoint import load_checkpoint, save_checkpoint
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.pipeline import export_bundle, score, train_model
from spikeedge.offline.surgery import arrays_of, build_hrsnn
from spikeedge.offline.train import FloatStepper
from spikeedge.runtime.bundle import write_atomic
from spikeedge.runtime.sessions import open_session
from spikeedge.tasks.metrics import nrmse
from spikeedge.tasks.protocols import forecast_windows
from spikeedge.tasks.registry import load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when loaded by path (tests)
from lnp_report import aggregate, environment, unstrict, write_report  # noqa: E402
from lnp_setup import METRIC, QUICK_LNP, QUICK_ROWS, REPO, ROWS, TASKS, code_fingerprint, say  # noqa: E402


# -- cache ---------------------------------------------------------------------------------------

class Cache:
    """Finished results in ``results.json`` (rewritten atomically after each) and pruned networks
    as checkpoints, under a folder named by the settings and code fingerprint."""

    def __init__(self, root: Path, settings: Dict[str, Any]) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + code_fingerprint().encode()).hexdigest()[:16]
        self.dir = root / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "results.json"
        fresh = {"settings": settings, "results": {}, "lnp_runs": {}, "timing": {}, "invocations": []}
        self.data = json.loads(self.path.read_text()) if self.path.exists() else fresh
        self.data["invocations"].append(datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        self.save()

    def get(self, key: str, part: str = "results") -> Optional[Dict[str, Any]]:
        return self.data[part].get(key)

    def put(self, key: str, value: Dict[str, Any], part: str = "results") -> None:
        self.data[part][key] = value
        self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, allow_nan=True).encode("utf-8"))

    def model_path(self, name: str) -> Path:
        return self.dir / ("%s.ckpt.npz" % name)


# -- networks --------------------------------------------------------------------------------------

def homogeneous(model: HRSNN) -> HRSNN:
    """The same network with every neuron's tau_mem and tau_syn set to the mean of the drawn ones."""
    a = arrays_of(model)
    a.tau_mem[:] = a.tau_mem.mean()
    a.tau_syn[:] = a.tau_syn.mean()
    return build_hrsnn(model.cfg, a)


def lnp_config(args, seed: int, switches: Dict[str, Any]):
    extra = dict(QUICK_LNP) if args.quick else {}
    extra.update(switches)
    return lnp_pkg.LnpConfig(target_neurons=args.target_neurons, target_synapses=args.target_synapses, seed=seed, **extra)


def run_lnp(model: HRSNN, cfg) -> Dict[str, Any]:
    t0 = time.perf_counter()
    res = lnp_pkg.lnp_prune(model, cfg)
    wall = time.perf_counter() - t0
    summary = res.summary()
    return {"model": res.model, "summary": summary, "wall_seconds": wall}


def lnp_network(cache: Cache, args, seed: int, base: HRSNN, row: str, kind: str, switches: Dict[str, Any]):
    """The LNP-pruned network of ``row`` for ``seed``, from the cache or by running LNP."""
    path = cache.model_path("%s-s%d" % (row, seed))
    if path.exists():
        model, record = load_checkpoint(path)
        return model, record["lnp"]
    start = homogeneous(base) if kind == "lnp-homogeneous" else copy.deepcopy(base)
    say("seed %d: LNP for row %s (%d neurons) ..." % (seed, row, start.cfg.n_neurons))
    out = run_lnp(start, lnp_config(args, seed, switches))
    info = {"summary": out["summary"], "wall_seconds": out["wall_seconds"], "tau_mem_cv": tau_cv(out["model"])}
    say("seed %d: LNP %s done in %.1f s: %d neurons, %d synapses" % (seed, row, out["wall_seconds"],
                                                                   out["summary"]["neurons"], out["summary"]["synapses"]))
    save_checkpoint(out["model"], path, {"lnp": info})
    return load_checkpoint(path)[0], info  # the checkpointed form, so a resumed run trains the same network


def tau_cv(model: HRSNN) -> float:
    t = model.tau_mem.double().numpy()
    return float(t.std() / t.mean())


# -- measurements ----------------------------------------------------------------------------------

def network_key(model: HRSNN) -> str:
    a = arrays_of(model)
    h = hashlib.sha256()
    for x in (a.tau_mem, a.tau_syn, a.w_in, a.w_rec, a.bias):
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


_ANALYSIS: Dict[str, Dict[str, float]] = {}


def analyse(model: HRSNN, seed: int) -> Dict[str, float]:
    """``analyse_network`` with LNP's default settings; networks that are identical (the three
    forecast tasks train only the readout of the same network) are measured once."""
    from spikeedge.offline.lnp.analysis import analyse_network

    key = network_key(model) + str(seed)
    if key not in _ANALYSIS:
        out = analyse_network(model, lnp_pkg.LnpConfig(seed=seed))
        _ANALYSIS[key] = {k: float(out[k]) for k in ("lyapunov_max", "spectral_radius", "ipr", "mean_rate")}
    return _ANALYSIS[key]


def task_metric(model: HRSNN, task, short_horizon: int) -> Dict[str, Any]:
    """The float model's score: sMAPE (NeuroBench) for Mackey-Glass, NRMSE averaged over the
    forecast windows for Lorenz and Rossler, accuracy for digits.

    Lorenz and Rossler also get the error of the first ``short_horizon`` autoregressive steps,
    normalised by the standard deviation of the whole series (a short span's own spread would
    inflate it): a 750-step free-running forecast of a chaotic system outlives its predictability
    by many Lyapunov times, so the full-window NRMSE mostly measures how the divergence looks."""
    if task.name in ("lorenz", "rossler"):
        preds = forecast_windows(FloatStepper(model), task.windows)
        per = np.array([nrmse(np.ravel(w.test_y), np.ravel(p)) for w, p in zip(task.windows, preds)])
        scale = float(np.std(task.series))
        short = []
        for w, p in zip(task.windows, preds):
            err = np.ravel(w.test_y)[:short_horizon] - np.ravel(p)[:short_horizon]
            short.append(float(np.sqrt(np.mean(err ** 2)) / scale) if np.all(np.isfinite(err)) else float("inf"))
        return {"nrmse": float(per.mean()), "nrmse_windows_std": float(per.std()), "diverged_windows": int((~np.isfinite(per)).sum()),
                "nrmse_short": float(np.mean(short)), "short_horizon": short_horizon}
    return score(FloatStepper(model), task)


def runtime_cost(model: HRSNN, record: Dict[str, Any], task) -> Dict[str, Any]:
    """Export the trained model to an int8 bundle and run it on the event-driven runtime over the
    task's test inputs (forecasts: every window's test span, teacher forced, as one batch; digits:
    the test images). SynOps per inference = SynOps per step x steps per inference (1 for a
    forecast, the sequence length for a classification)."""
    if task.kind == "forecast":
        xs = np.stack([np.asarray(w.test_x, np.float64) for w in task.windows]).reshape(len(task.windows), -1, task.n_inputs)
        steps = 1
    else:
        xs = np.asarray(task.x_test, np.float64)
        steps = xs.shape[1]
    with tempfile.TemporaryDirectory() as d:
        bundle = export_bundle(model, record, task, Path(d) / "model.seb")
    summary = open_session(bundle, len(xs)).run(xs).summary()
    layer = bundle.layers[0]
    return {
        "synops_per_step": summary["synops_per_step"],
        "synops_per_inference": summary["synops_per_step"] * steps,
        "steps_per_inference": steps,
        "spike_rate": summary["spike_rate"][layer.name],
        "bundle_synapses": {"input": layer.w_in.nnz, "recurrent": layer.w_rec.nnz, "readout": int(np.count_nonzero(bundle.readout.w))},
    }


def evaluate(model: HRSNN, record: Dict[str, Any], task, seed: int, short_horizon: int) -> Dict[str, Any]:
    syn = model.n_synapses()
    out = {
        "neurons": model.cfg.n_neurons,
        "synapses_recurrent": syn["recurrent"],
        "synapses_input": syn["input"],
        "synapses_readout": syn["readout"],
        "synapses_without_readout": syn["input"] + syn["recurrent"],
        "synapses_with_readout": syn["input"] + syn["recurrent"] + syn["readout"],
        "ridge_lambda": record["training"].get("lambda"),
    }
    out.update(task_metric(model, task, short_horizon))
    out.update(runtime_cost(model, record, task))
    out.update(analyse(model, seed))
    return out


def training_inputs(task) -> np.ndarray:
    """What activity-based pruning counts spikes on: the data the readout is trained on."""
    if task.kind == "forecast":
        return np.asarray(task.windows[0].train_x, np.float64).reshape(1, -1, task.n_inputs)
    return np.asarray(task.x_train, np.float64)


# -- the run --------------------------------------------------------------------------------------

def run_seed(cache: Cache, args, seed: int, rows, tasks: Dict[str, Any]) -> None:
    base = HRSNN(HrsnnConfig(n_neurons=args.neurons, seed=seed))
    networks: Dict[str, Any] = {}  # row -> (untrained network, pruning record)
    lnp_info: Dict[str, Any] = {}
    for key, _, kind, switches in rows:
        if switches is not None:
            networks[key] = lnp_network(cache, args, seed, base, key, kind, switches)
            lnp_info[key] = networks[key][1]
    counts = lnp_info["lnp"]["summary"]
    n_neurons, n_synapses = int(counts["neurons"]), int(counts["synapses"])
    for key, _, kind, _ in rows:
        if kind == "random":
            networks[key] = prune_random(base, n_neurons, n_synapses, seed=seed)
        elif kind == "magnitude":
            networks[key] = prune_magnitude(base, n_neurons, n_synapses)
        elif kind == "dense":
            networks[key] = (base, {"method": "none"})
    for name, task in tasks.items():
        trained_dense = None
        for key, _, kind, _ in rows:
            ck = "%s|%d|%s" % (key, seed, name)
            if cache.get(ck) is not None:
                continue
            t0 = time.perf_counter()
            if kind == "activity":
                if trained_dense is None:
                    trained_dense, _ = train_model(copy.deepcopy(base), task)
                net, prune_rec = prune_activity(trained_dense, training_inputs(task), n_neurons, n_synapses)
            else:
                net, prune_rec = networks[key]
                if kind in ("lnp", "lnp-homogeneous"):
                    prune_rec = {"method": key, "lnp": prune_rec["summary"]}
            model, record = train_model(copy.deepcopy(net), task)
            if kind == "dense":
                trained_dense = model
            record["pruning"] = prune_rec
            result = evaluate(model, record, task, seed, args.short_horizon)
            result["pruning"] = {k: v for k, v in prune_rec.items() if k != "kept_neurons"}
            if key in lnp_info:
                result["lnp_wall_seconds"] = lnp_info[key]["wall_seconds"]
                result["lnp_phase_seconds"] = lnp_info[key]["summary"]["phase_seconds"]
                result["tau_mem_cv"] = lnp_info[key]["tau_mem_cv"]
            else:
                result["tau_mem_cv"] = tau_cv(model)
            result["seconds"] = time.perf_counter() - t0
            cache.put(ck, result)
            m = METRIC[name][0]
            say("seed %d %-13s %-22s %s %.4g  neurons %d  rec. synapses %d  SynOps/inf %.0f  lambda_max %.3g  (%.1f s)"
                % (seed, name, key, m, result[m], result["neurons"], result["synapses_recurrent"],
                   result["synops_per_inference"], result["lyapunov_max"], result["seconds"]))
    cache.put(str(seed), lnp_info, "lnp_runs")


def run_timing(cache: Cache, args) -> Dict[str, Any]:
    ck = str(args.timing_neurons)
    if cache.get(ck, "timing") is None:
        model = HRSNN(HrsnnConfig(n_neurons=args.timing_neurons, seed=0))
        say("timing: LNP on %d neurons ..." % args.timing_neurons)
        load_before = os.getloadavg()[0]
        out = run_lnp(model, lnp_config(args, 0, {}))
        s = out["summary"]
        cache.put(ck, {"neurons_start": args.timing_neurons, "wall_seconds": out["wall_seconds"], "summary": s,
                       "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                       "load_average_1min": [load_before, os.getloadavg()[0]]}, "timing")
        say("timing: %.1f s, %d iterations, %d neurons, %d synapses" % (out["wall_seconds"], s["iterations"], s["neurons"], s["synapses"]))
    return cache.get(ck, "timing")


def command_line(argv) -> str:
    """How this run was started, relative to the repository root where possible."""
    def rel(p: str) -> str:
        full = os.path.abspath(p)
        return os.path.relpath(full, REPO) if full.startswith(str(REPO) + os.sep) else p

    python = rel(sys.executable) if os.path.abspath(sys.executable).startswith(str(REPO) + os.sep) else "python"
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(shlex.quote(a) for a in [python, rel(sys.argv[0] if argv is None else __file__)] + args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    ap.add_argument("--neurons", type=int, default=500)
    ap.add_argument("--target-neurons", type=float, default=0.5, help="kept fraction of neurons")
    ap.add_argument("--target-synapses", type=float, default=0.5, help="kept fraction of recurrent synapses")
    ap.add_argument("--timing-neurons", type=int, default=2000, help="neurons of the timed LNP run (0: skip)")
    ap.add_argument("--short-horizon", type=int, default=50,
                    help="Lorenz/Rossler: also score the first N forecast steps (default 50, about one Lyapunov time)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of %s" % ", ".join(TASKS))
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "lnp-eval-cache")
    ap.add_argument("--out", type=Path, default=None, help="folder for lnp.md and lnp.json (default docs/results; "
                    "with --quick out/lnp-eval-quick)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 100 neurons, fewer rows, short LNP loop, 300-neuron timing")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: the networks are small, and on a shared 2-core machine two "
                         "threads made each step tens of times slower waiting for each other)")
    ap.add_argument("--render", type=Path, metavar="LNP_JSON",
                    help="only rewrite the report from an existing lnp.json (its numbers, command and date unchanged)")
    args = ap.parse_args(argv)
    if args.render:
        doc = unstrict(json.loads(args.render.read_text()))
        doc["rendered_by"] = command_line(argv)
        write_report(doc, args.render)
        return 0
    if args.quick:
        args.seeds, args.neurons = 1, 100
        args.timing_neurons = min(args.timing_neurons, 300)
    tasks_wanted = [t for t in args.tasks.split(",") if t]
    if "mackey-glass" not in tasks_wanted or any(t not in TASKS for t in tasks_wanted):
        ap.error("--tasks must include mackey-glass and name only %s" % ", ".join(TASKS))
    rows = [r for r in ROWS if not args.quick or r[0] in QUICK_ROWS]
    seeds = list(range(args.seeds))
    torch.set_num_threads(args.threads)
    settings = {"neurons": args.neurons, "target_neurons": args.target_neurons, "target_synapses": args.target_synapses,
                "quick": args.quick, "short_horizon": args.short_horizon, "torch_threads": args.threads}
    env = environment()  # at the start: the code this process imported
    cache = Cache(args.cache, settings)
    say("cache %s (%d results already there)" % (cache.dir, len(cache.data["results"])))
    tasks = {name: load_task(name) for name in tasks_wanted}
    for seed in seeds:
        run_seed(cache, args, seed, rows, tasks)
    timing = run_timing(cache, args) if args.timing_neurons > 0 else None
    shown = [t for t in TASKS if t in tasks]
    agg = aggregate(cache, rows, seeds, shown)
    doc = {
        "command": command_line(argv),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "invocations": cache.data["invocations"],
        "environment": env,
        "settings": dict(settings, seeds=seeds, timing_neurons=args.timing_neurons, tasks=shown,
                         forecast_steps={k: len(t.windows[0].test_y) for k, t in tasks.items() if t.kind == "forecast"}),
        "rows": [r[0] for r in rows],
        "row_labels": {r[0]: r[1] for r in rows},
        "lnp_runs": {str(s): cache.get(str(s), "lnp_runs") for s in seeds},
        "timing": timing,
        "results": {"%s|%d|%s" % (r[0], s, t): cache.get("%s|%d|%s" % (r[0], s, t)) for r in rows for s in seeds for t in shown},
        "aggregate": agg,
    }
    out = args.out or (REPO / "out" / "lnp-eval-quick" if args.quick else REPO / "docs" / "results")
    write_report(doc, out / "lnp.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
