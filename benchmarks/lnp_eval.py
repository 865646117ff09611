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
continues where it stopped.

    python benchmarks/lnp_eval.py [--seeds 5] [--neurons 500] [--target-neurons 0.5]
        [--target-synapses 0.5] [--timing-neurons 2000] [--cache out/lnp-eval-cache] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

import spikeedge
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

REPO = Path(__file__).resolve().parent.parent
TASKS = ("mackey-glass", "lorenz", "rossler", "digits")
METRIC = {"mackey-glass": ("smape", "sMAPE", "lower"), "lorenz": ("nrmse", "NRMSE", "lower"),
          "rossler": ("nrmse", "NRMSE", "lower"), "digits": ("accuracy", "accuracy", "higher")}
# Rows: (key, label, how the network is obtained, LnpConfig switches for LNP rows).
ROWS = [
    ("dense", "dense HRSNN", "dense", None),
    ("lnp", "LNP", "lnp", {}),
    ("activity", "activity-based pruning (AP)", "activity", None),
    ("random", "random pruning", "random", None),
    ("magnitude", "magnitude pruning", "magnitude", None),
    ("lnp-homogeneous", "LNP, homogeneous time constants", "lnp-homogeneous", {}),
    ("lnp-no-noise", "LNP without noise pruning", "lnp", {"noise_pruning": False}),
    ("lnp-no-betweenness", "LNP without betweenness neuron pruning", "lnp", {"neuron_pruning_by_betweenness": False}),
    ("lnp-no-delocalisation", "LNP without delocalisation", "lnp", {"delocalisation": False}),
    ("lnp-no-timescales", "LNP without timescale optimisation", "lnp", {"timescale_optimisation": False}),
    ("lnp-no-modulation", "LNP without Lyapunov modulation", "lnp", {"lyapunov_modulation": False}),
]
QUICK_ROWS = ("dense", "lnp", "activity", "random", "magnitude", "lnp-homogeneous", "lnp-no-noise")
# Quick mode: a shorter LNP loop, so that the smoke test exercises every path in minutes.
QUICK_LNP = {"max_iterations": 8, "prune_iterations": 3, "bo_evaluations": 3, "noise_steps": 200, "transient_steps": 50}


def say(msg: str) -> None:
    print("[lnp_eval %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# -- cache ---------------------------------------------------------------------------------------

# Bump when this script's measurements change (what is computed, not how the report looks): it
# is part of the cache key, with a hash of the library sources, so stale results are not reused.
EVAL_VERSION = 2


def code_fingerprint() -> str:
    """Hash of every library source the results depend on: a change invalidates the cache."""
    h = hashlib.sha256(b"lnp_eval %d" % EVAL_VERSION)
    for sub in ("offline", "tasks", "runtime"):
        for p in sorted((REPO / sub).rglob("*.py")):
            h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


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


# -- aggregation and report -----------------------------------------------------------------------

FIELDS = ["neurons", "synapses_recurrent", "synapses_without_readout", "synapses_with_readout", "metric", "nrmse_short",
          "synops_per_inference", "lyapunov_max", "spectral_radius", "lnp_wall_seconds", "tau_mem_cv"]


def mean_std(values: List[float]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; none with one value) over seeds."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return {"mean": None, "std": None, "n": 0, "values": values}
    v = v[~np.isnan(v)]
    mean = float(v.mean()) if np.all(np.isfinite(v)) else float("inf")
    std = float(v.std(ddof=1)) if v.size > 1 and np.all(np.isfinite(v)) else None
    return {"mean": mean, "std": std, "n": int(v.size), "values": [float(x) for x in v]}


def aggregate(cache: Cache, rows, seeds: List[int], tasks: List[str]) -> Dict[str, Any]:
    agg: Dict[str, Any] = {}
    for name in tasks:
        m = METRIC[name][0]
        agg[name] = {}
        for key, _, _, _ in rows:
            res = [cache.get("%s|%d|%s" % (key, s, name)) for s in seeds]
            res = [r for r in res if r is not None]
            if not res:
                continue
            agg[name][key] = {f: mean_std([r.get(m if f == "metric" else f) for r in res]) for f in FIELDS}
            agg[name][key]["synapse_shortfall"] = [r["pruning"].get("synapse_shortfall", 0) for r in res]
            agg[name][key]["synapses_requested"] = [r["pruning"].get("requested", {}).get("synapses") for r in res]
            agg[name][key]["silent_neurons"] = [r["pruning"].get("silent_neurons") for r in res]
    return agg


def fmt(ms: Dict[str, Any], spec: str, scale: float = 1.0) -> str:
    if ms is None or ms["mean"] is None:
        return "–"
    if not math.isfinite(ms["mean"]):
        return "inf"
    s = spec % (ms["mean"] * scale)
    if ms["std"] is not None:
        s += " ± " + spec % (ms["std"] * scale)
    return s


def target_check(doc: Dict[str, Any]) -> Dict[str, Any]:
    """The stated targets, each decided from this run's numbers (means over seeds; per-seed
    counts alongside)."""
    agg, lnp_runs, timing = doc["aggregate"], doc["lnp_runs"], doc.get("timing")
    mg = agg["mackey-glass"]
    dense, lnp, ap = mg["dense"], mg["lnp"], mg.get("activity")
    runs = [r["lnp"]["summary"] for r in lnp_runs.values() if r]
    removed_n = [1 - r["kept_neurons"] for r in runs]
    removed_s = [1 - r["kept_synapses"] for r in runs]
    sm_d, sm_l = dense["metric"]["mean"], lnp["metric"]["mean"]
    sm_ap = ap["metric"]["mean"] if ap else None
    rel = (sm_l - sm_d) / sm_d
    checks = {
        "removed_neurons_min": min(removed_n),
        "removed_synapses_min": min(removed_s),
        "sparsity_met": min(removed_n) >= 0.5 and min(removed_s) >= 0.5,
        "smape_dense": sm_d,
        "smape_lnp": sm_l,
        "smape_activity": sm_ap,
        "smape_relative_to_dense": rel,
        "within_10pct_met": rel <= 0.10,
        "no_worse_than_ap_met": sm_ap is not None and sm_l <= sm_ap,
        "synapses_lnp": lnp["synapses_recurrent"]["mean"],
        "synapses_activity": ap["synapses_recurrent"]["mean"] if ap else None,
    }
    per_seed = []
    for seed in doc["settings"]["seeds"]:
        r = {k: doc["results"].get("%s|%d|mackey-glass" % (k, seed)) for k in ("dense", "lnp", "activity")}
        if r["dense"] and r["lnp"]:
            no_worse = r["activity"] is not None and r["lnp"]["smape"] <= r["activity"]["smape"]
            per_seed.append((r["lnp"]["smape"] <= 1.1 * r["dense"]["smape"], no_worse))
    checks["seeds"] = len(per_seed)
    checks["seeds_within_10pct"] = sum(a for a, _ in per_seed)
    checks["seeds_no_worse_than_ap"] = sum(b for _, b in per_seed)
    checks["accuracy_target_met"] = checks["sparsity_met"] and checks["within_10pct_met"] and checks["no_worse_than_ap_met"]
    if timing is not None:
        checks["timing_neurons"] = timing["neurons_start"]
        checks["timing_seconds"] = timing["wall_seconds"]
        checks["timing_cores"] = timing["cpu_count"]
        checks["timing_met"] = timing["neurons_start"] >= 2000 and timing["wall_seconds"] <= 300 and timing["cpu_count"] <= 2
    return checks


def met(flag: bool) -> str:
    return "**met**" if flag else "**not met**"


def environment() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "spikeedge": spikeedge.__version__, "numpy": np.__version__,
                "torch": torch.__version__}
    for mod, name in (("scipy", "scipy"), ("networkx", "networkx"), ("sklearn", "scikit-learn"), ("bayes_opt", "bayesian-optimization")):
        try:
            versions[name] = __import__(mod).__version__
        except Exception:  # an optional dependency that LNP may not use
            versions[name] = "not installed"

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "offline", "tasks", "runtime", "benchmarks")
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0],
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "versions": versions, "git_commit": git("rev-parse", "HEAD"), "git_uncommitted": dirty.splitlines(),
            "code_fingerprint": code_fingerprint()[:16]}


def where_lnp_does_not_win(agg: Dict[str, Any], rows: List[Any]) -> List[str]:
    """Every row whose mean task metric beats LNP's, per task, computed from the aggregates; a
    difference larger than the two standard deviations added together is called clear."""
    labels = {key: label for key, label, _, _ in rows}
    L = ["## Where LNP does not win", "",
         "Per task, every other row whose mean metric is better than LNP's (\"clear\" when the gap exceeds the sum of "
         "the two standard deviations over seeds, otherwise within the seed-to-seed spread).", ""]
    for name in agg:
        m, mlabel, better = METRIC[name]
        lnp = agg[name].get("lnp")
        if lnp is None or lnp["metric"]["mean"] is None:
            continue
        scale, unit = (100.0, " points") if m == "accuracy" else (1.0, "")
        lm, ls = lnp["metric"]["mean"], lnp["metric"]["std"] or 0.0
        beaten = []
        for key, a in agg[name].items():
            if key == "lnp" or a["metric"]["mean"] is None:
                continue
            gap = (a["metric"]["mean"] - lm) if better == "higher" else (lm - a["metric"]["mean"])
            if gap > 0:
                clear = gap > ls + (a["metric"]["std"] or 0.0)
                beaten.append("%s %.3f vs LNP %.3f (by %.3f%s, %s)" % (labels.get(key, key), a["metric"]["mean"] * scale, lm * scale,
                                                                        gap * scale, unit, "clear" if clear else "within the spread"))
        L += ["- **%s** (%s): %s." % (name, mlabel, "; ".join(beaten) if beaten else "no row beats LNP on the mean")]
    return L + [""]


def markdown(doc: Dict[str, Any], json_name: str = "lnp.json") -> str:
    env, args, agg, chk = doc["environment"], doc["settings"], doc["aggregate"], doc["target_check"]
    rows = [r for r in ROWS if r[0] in doc["rows"]]
    L = ["# LNP evaluation: Lyapunov Noise Pruning against baselines and ablations", ""]
    L += ["Generated by `benchmarks/lnp_eval.py`; every number below comes from the run recorded here "
          "(raw numbers: `%s`). Method: `../../../shared/methods/lnp.md`, implementation `offline/lnp/`." % json_name, ""]
    L += ["- command: `%s`%s" % (doc["command"], "" if "rendered_by" not in doc else
                                  " (report text re-rendered from the saved numbers by `%s`)" % doc["rendered_by"]),
          "- date: %s%s" % (doc["date"], "" if len(doc["invocations"]) < 2 else
                            " (results computed over %d invocations resumed from the cache, the first on %s)"
                            % (len(doc["invocations"]), doc["invocations"][0])),
          "- machine: %s, %d cores (torch threads %d), %s; 1-minute load average at the start %.2f (the machine is shared, "
          "so wall times include other processes' load)" % (env["cpu"], env["cores"], env["torch_threads"], env["platform"],
                                                            env["load_average_1min_at_start"]),
          "- libraries: " + ", ".join("%s %s" % kv for kv in env["versions"].items()),
          "- code: git %s%s; fingerprint of offline/, tasks/, runtime/ sources %s" % (
              env["git_commit"][:12], " with uncommitted changes in " + ", ".join(sorted({x[3:] for x in env["git_uncommitted"]}))
              if env["git_uncommitted"] else "", env["code_fingerprint"]),
          "- seeds %s; HRSNN of %d neurons (`HrsnnConfig` defaults otherwise); LNP targets: keep %.0f%% of neurons, %.0f%% "
          "of recurrent synapses%s" % (args["seeds"], args["neurons"], 100 * args["target_neurons"], 100 * args["target_synapses"],
                                       "; **quick mode** (shortened LNP loop: %s)" % QUICK_LNP if args["quick"] else ""), ""]

    L += ["## Target check", ""]
    L += ["- Sparsity: LNP removed at least %.1f%% of neurons and %.1f%% of recurrent synapses in every seed "
          "(target ≥ 50%% of each): %s." % (100 * chk["removed_neurons_min"], 100 * chk["removed_synapses_min"], met(chk["sparsity_met"]))]
    L += ["- Mackey-Glass sMAPE: dense %.3f, LNP %.3f (%+.1f%% relative to dense; target within +10%%): %s (within 10%% "
          "of dense in %d of %d seeds)." % (chk["smape_dense"], chk["smape_lnp"], 100 * chk["smape_relative_to_dense"],
                                           met(chk["within_10pct_met"]), chk["seeds_within_10pct"], chk["seeds"])]
    if chk["smape_activity"] is not None:
        same = abs(chk["synapses_activity"] - chk["synapses_lnp"]) < 0.5
        L += ["- LNP %.3f vs activity-based pruning %.3f (target: LNP no worse): %s (LNP no worse in %d of %d seeds). %s"
              % (chk["smape_lnp"], chk["smape_activity"], met(chk["no_worse_than_ap_met"]), chk["seeds_no_worse_than_ap"], chk["seeds"],
                 "Both at the same neuron and recurrent synapse counts." if same else
                 "Same neuron count, but **not the same synapse count**: AP kept %.0f recurrent synapses on average, LNP "
                 "%.0f (AP keeps every synapse left among its neurons; see *Equal counts*)."
                 % (chk["synapses_activity"], chk["synapses_lnp"]))]
    else:
        L += ["- LNP vs activity-based pruning: AP row not run: **not met** (not measured)."]
    L += ["- Accuracy target as a whole (all three above): %s." % met(chk["accuracy_target_met"])]
    if "timing_seconds" in chk:
        L += ["- LNP on %d neurons took %.1f s on %d cores (target ≤ 300 s for 2,000 neurons on 2 cores): %s."
              % (chk["timing_neurons"], chk["timing_seconds"], chk["timing_cores"], met(chk["timing_met"]))]
    L += ["", "Means over seeds; ± is the sample standard deviation over seeds.", ""]

    L += ["## Per task", "",
          "Columns: neurons; recurrent synapses; synapses without the readout (input + recurrent) and with it; the task "
          "metric of the float model; synaptic operations per inference on the event-driven int8 runtime after training "
          "(per step × steps per inference: 1 for forecasts, the sequence length for digits; test inputs); largest Lyapunov "
          "exponent and spectral radius of the trained network (`lnp.analysis.analyse_network`, LNP's default settings); "
          "LNP wall time (one LNP run per seed, shared by all tasks). Synapse counts are the float model's non-zero weights: "
          "the ridge readout gives neurons that never spike on the training data exactly zero weights, so the readout "
          "count can be below neurons × outputs.", ""]
    for name in agg:
        m, mlabel, better = METRIC[name]
        L += ["### %s (%s, %s is better)" % (name, mlabel, better), ""]
        horizon = m == "nrmse"
        extra = " NRMSE, first %d steps |" % args["short_horizon"] if horizon else ""
        L += ["| row | neurons | rec. synapses | synapses w/o readout | with readout | %s |%s SynOps / inference "
              "| λ_max | spectral radius | LNP s |" % (mlabel, extra), "|---" * (11 if horizon else 10) + "|"]
        spec = "%.1f%%" if m == "accuracy" else "%.3f"
        scale = 100.0 if m == "accuracy" else 1.0
        for key, label, _, _ in rows:
            a = agg[name].get(key)
            if a is None:
                continue
            cells = [label, fmt(a["neurons"], "%.0f"), fmt(a["synapses_recurrent"], "%.0f"), fmt(a["synapses_without_readout"], "%.0f"),
                     fmt(a["synapses_with_readout"], "%.0f"), fmt(a["metric"], spec, scale)]
            cells += [fmt(a["nrmse_short"], "%.3f")] if horizon else []
            cells += [fmt(a["synops_per_inference"], "%.0f"), fmt(a["lyapunov_max"], "%.3f"), fmt(a["spectral_radius"], "%.3f"),
                      fmt(a["lnp_wall_seconds"], "%.1f")]
            L += ["| " + " | ".join(cells) + " |"]
        if horizon:
            means = [a["metric"]["mean"] for a in agg[name].values() if a["metric"]["mean"] is not None]
            if means and min(means) >= 1.0:
                L += ["", "Every row's full-window NRMSE is ≥ 1 (lowest %.3f): over the %d-step free-running forecast no model "
                      "does better than predicting the series mean, so differences in that column say little; the "
                      "first-%d-steps column (about one Lyapunov time of either series as sampled) compares the early part "
                      "of the forecasts, normalised by the standard deviation of the whole series."
                      % (min(means), args["forecast_steps"][name], args["short_horizon"])]
        L += [""]

    L += where_lnp_does_not_win(agg, rows)
    short = [(name, key, a) for name in agg for key, a in agg[name].items() if any(a["synapse_shortfall"])]
    L += ["## Equal counts", "",
          "Random, magnitude and activity-based pruning keep exactly LNP's neuron count, then remove recurrent synapses "
          "down to LNP's synapse count. When fewer synapses than that are left among the kept neurons, all are kept: ", ""]
    if short:
        L += ["| task | row | LNP's recurrent synapses (requested) | achieved | seeds short |", "|---|---|---|---|---|"]
        L += ["| %s | %s | %s | %s | %d of %d |" % (name, doc["row_labels"][key], fmt(mean_std(a["synapses_requested"]), "%.0f"),
                                                  fmt(a["synapses_recurrent"], "%.0f"), sum(1 for x in a["synapse_shortfall"] if x),
                                                  len(a["synapse_shortfall"])) for name, key, a in short]
    else:
        L += ["they reached LNP's neuron and recurrent synapse counts exactly in every seed and task (no shortfall)."]
    L += [""]
    silent = [(name, mean_std(a["silent_neurons"])) for name in agg for key, a in agg[name].items() if key == "activity"]
    if silent:
        L += ["Neurons of the trained dense network that never spiked on the task's training inputs (what AP removes "
              "first): " + "; ".join("%s %s of %d" % (name, fmt(ms, "%.0f"), args["neurons"]) for name, ms in silent) + ".", ""]

    L += ["## LNP runs (task-agnostic, once per seed)", ""]
    phases = sorted({p for info in doc["lnp_runs"].values() for r in info.values() for p in r["summary"]["phase_seconds"]})
    L += ["| row | neurons kept | synapses kept | iterations | wall s | %s | τ_mem CV after |" % " | ".join("%s (s)" % p for p in phases),
          "|---|---|---|---|---|%s---|" % ("---|" * len(phases))]
    for key, label, _, sw in rows:
        if sw is None:
            continue
        runs = [doc["lnp_runs"][s][key] for s in doc["lnp_runs"] if key in doc["lnp_runs"][s]]
        if not runs:
            continue
        col = lambda f: fmt(mean_std([f(r) for r in runs]), "%.1f")  # noqa: E731
        L += ["| %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt(mean_std([r["summary"]["kept_neurons"] for r in runs]), "%.1f%%", 100),
            fmt(mean_std([r["summary"]["kept_synapses"] for r in runs]), "%.1f%%", 100),
            col(lambda r: r["summary"]["iterations"]), col(lambda r: r["wall_seconds"]),
            " | ".join(col(lambda r, p=p: r["summary"]["phase_seconds"].get(p)) for p in phases),
            fmt(mean_std([r["tau_mem_cv"] for r in runs]), "%.3f"))]
    L += ["", "τ_mem CV: coefficient of variation of the membrane time constants of the pruned network (0 = homogeneous; "
          "the homogeneous-ablation row starts at 0 and shows whether LNP's timescale step made them diverse again).", ""]

    t = doc.get("timing")
    if t is not None:
        s = t["summary"]
        L += ["## Timing: one LNP run on %d neurons" % t["neurons_start"], "",
              "| | |", "|---|---|",
              "| wall time | %.1f s |" % t["wall_seconds"],
              "| iterations | %d (stopped: %s) |" % (s["iterations"], s["stopped"]),
              "| neurons | %d → %d |" % (s["start"]["neurons"], s["neurons"]),
              "| recurrent synapses | %d → %d |" % (s["start"]["synapses"], s["synapses"]),
              "| cores / torch threads | %d / %d |" % (t["cpu_count"], t["torch_threads"]),
              "| 1-minute load average before / after (other processes share the machine) | %.2f / %.2f |"
              % tuple(t["load_average_1min"])]
        L += ["| phase %s | %.1f s |" % (p, v) for p, v in s["phase_seconds"].items()]
        L += [""]
    return "\n".join(L)


def strict(obj: Any) -> Any:
    """``obj`` with non-finite numbers as strings ("inf", "nan"), so the file is strict JSON."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


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


def write_report(doc: Dict[str, Any], json_path: Path) -> None:
    """Decide the targets from ``doc`` and write it as ``json_path`` and the ``.md`` beside it."""
    doc["target_check"] = target_check(doc)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(json_path, json.dumps(strict(doc), indent=1, allow_nan=False).encode("utf-8"))
    write_atomic(json_path.with_suffix(".md"), markdown(doc, json_path.name).encode("utf-8"))
    say("wrote %s and %s" % (json_path.with_suffix(".md"), json_path))


def unstrict(obj: Any) -> Any:
    """The inverse of ``strict``: "inf", "-inf" and "nan" strings back to floats."""
    if isinstance(obj, dict):
        return {k: unstrict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unstrict(v) for v in obj]
    if obj in ("inf", "-inf", "nan"):
        return float(obj)
    return obj


if __name__ == "__main__":
    sys.exit(main())
