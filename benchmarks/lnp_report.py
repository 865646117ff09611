"""The LNP evaluation's report writers: aggregation over seeds, the target check, the markdown
(``lnp.md``) and the strict JSON (``lnp.json``), and the environment record they carry.
``lnp_eval.py`` runs the experiment and calls ``write_report``."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

import spikeedge
from spikeedge.runtime.bundle import write_atomic

from lnp_setup import METRIC, QUICK_LNP, REPO, ROWS, code_fingerprint, say

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


def aggregate(cache: Any, rows, seeds: List[int], tasks: List[str]) -> Dict[str, Any]:
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
