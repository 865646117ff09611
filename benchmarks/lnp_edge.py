"""LNP on a network with real recurrent dynamics (issue 20): the ``edge`` regime, Mackey-Glass,
10 seeds, paired Wilcoxon signed-rank tests of LNP against every baseline and ablation; writes
``docs/results/lnp_edge.md`` and ``lnp_edge.json`` (tables by ``lnp_edge_report.py``).

Per seed: one random HRSNN in the ``edge`` regime (``offline.lnp.regime``) is pruned by LNP
(full mode: Kron fill-in and regrowth allowed; and subgraph mode: neither), without task data.
Every other row is brought to the full LNP network's neuron and recurrent-synapse counts:
random and magnitude pruning (plain, and with LNP's post-processing: the uniform ``1/p``
rescale where it applies and the same timescale search), activity-based pruning of the dense
network trained on the task, and LNP with each step switched off. Each network's readout is
trained by ridge regression (``pipeline.train_model``: lambda chosen on the held-out end of the
training span) and scored by sMAPE over the 30 NeuroBench windows. Dense and LNP are also
exported to int8 and scored on the event-driven runtime. Each network's dynamics (largest
Lyapunov exponent, spectral radius, fraction of neurons spiking under independent noise) are
measured before training. Finished (row, seed) results are cached, so a run can be resumed or
split over processes (``--seeds 0-4`` and ``--seeds 5-9``, then ``--report``); the cache is keyed
by the settings only and records the code fingerprint it was started with: clear it after a code change.

    python benchmarks/lnp_edge.py [--seeds 0-9] [--neurons 300] [--cache out/lnp-edge-cache] [--report]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from spikeedge.offline.baselines import prune_activity, prune_magnitude, prune_random
from spikeedge.offline.hrsnn import HRSNN
from spikeedge.offline.lnp import LnpConfig, lnp_prune
from spikeedge.offline.lnp.analysis import analyse_network
from spikeedge.offline.lnp.regime import REGIMES, regime_config
from spikeedge.offline.pipeline import export_bundle, score, train_model
from spikeedge.offline.surgery import arrays_of, build_hrsnn
from spikeedge.offline.train import FloatStepper
from spikeedge.runtime.bundle import write_atomic
from spikeedge.runtime.sessions import open_session
from spikeedge.tasks.registry import load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lnp_setup import REPO, code_fingerprint, say  # noqa: E402

TARGET_NEURONS, TARGET_SYNAPSES = 0.5, 0.2
# The loop's budget, the same for every LNP row and the baselines' timescale search, cut from the
# defaults (10 BO evaluations, targets reached at iteration 6, 3 settled iterations) to fit 10 seeds
# of 15 rows on the shared 2-core machine.
LOOP = {"bo_evaluations": 5, "prune_iterations": 4, "patience": 2}
# (key, label, kind, LnpConfig switches): kinds "lnp" and "lnp-homogeneous" run LNP on the start
ROWS = [
    ("dense", "dense HRSNN (edge regime)", "dense", None),
    ("lnp", "LNP (full: Kron fill-in, regrowth)", "lnp", {}),
    ("lnp-subgraph", "LNP, subgraph mode", "lnp", {"subgraph": True}),
    ("lnp-no-rescale", "LNP without the 1/p rescale", "lnp", {"rescale": False}),
    ("random", "random pruning", "random", None),
    ("magnitude", "magnitude pruning", "magnitude", None),
    ("random-post", "random + 1/p rescale + timescale search", "random-post", None),
    ("magnitude-post", "magnitude + timescale search", "magnitude-post", None),
    ("activity", "activity-based pruning (AP) of the trained dense", "activity", None),
    ("lnp-homogeneous", "LNP, homogeneous time constants", "lnp-homogeneous", {}),
    ("lnp-no-noise", "LNP without noise pruning (step 1)", "lnp", {"noise_pruning": False}),
    ("lnp-no-modulation", "LNP without Lyapunov modulation (step 1)", "lnp", {"lyapunov_modulation": False}),
    ("lnp-no-betweenness", "LNP without betweenness (step 2)", "lnp", {"neuron_pruning_by_betweenness": False}),
    ("lnp-no-delocalisation", "LNP without delocalisation (step 3)", "lnp", {"delocalisation": False}),
    ("lnp-no-timescales", "LNP without timescale search (step 4)", "lnp", {"timescale_optimisation": False}),
]
INT8_ROWS = ("dense", "lnp", "lnp-subgraph")


def timescale_search(model: HRSNN, seed: int) -> HRSNN:
    """LNP's step 4 alone (the same loop, stopping rule and BO budget) on an already pruned net."""
    off = dict(noise_pruning=False, lyapunov_modulation=False, neuron_pruning_by_betweenness=False, delocalisation=False)
    return lnp_prune(model, LnpConfig(target_neurons=1.0, target_synapses=1.0, seed=seed, **LOOP, **off)).model


def rescaled(model: HRSNN, factor: float) -> HRSNN:
    a = arrays_of(model)
    a.w_rec = a.w_rec * factor
    return build_hrsnn(model.cfg, a)


def homogeneous(model: HRSNN) -> HRSNN:
    a = arrays_of(model)
    a.tau_mem[:] = a.tau_mem.mean()
    a.tau_syn[:] = a.tau_syn.mean()
    return build_hrsnn(model.cfg, a)


def dynamics(model: HRSNN, seed: int) -> Dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = analyse_network(model, LnpConfig(seed=seed))
    return {k: float(row[k]) for k in ("lyapunov_max", "spectral_radius", "active_fraction", "mean_rate", "ipr")}


def int8_smape(model: HRSNN, record: Dict[str, Any], task) -> float:
    with tempfile.TemporaryDirectory() as d:
        bundle = export_bundle(model, record, task, Path(d) / "model.seb")
    return float(score(open_session(bundle), task)["smape"])


def networks_for_seed(args, seed: int, task, cached: Dict[str, Any]) -> Dict[str, Any]:
    """(network, info) of every row not yet cached for ``seed``."""
    base = HRSNN(regime_config(args.regime, n_neurons=args.neurons, seed=seed))
    out: Dict[str, Any] = {}
    lnp_counts = None
    for key, _, kind, switches in ROWS:
        if switches is None:
            continue
        if key in cached:
            continue
        start = homogeneous(base) if kind == "lnp-homogeneous" else copy.deepcopy(base)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lnp_prune(start, LnpConfig(target_neurons=TARGET_NEURONS, target_synapses=TARGET_SYNAPSES, seed=seed,
                                             **LOOP, **switches))
        wall = time.perf_counter() - t0
        s = res.summary()
        info = {"lnp_wall_seconds": wall, "iterations": s["iterations"], "phase_seconds": s["phase_seconds"],
                "regrown": int(sum(r.get("regrown", 0) for r in res.record)),
                "max_covariance_shift": float(max(r.get("shift", 0.0) for r in res.record))}
        say("seed %d %-22s LNP %.1f s: %d neurons, %d synapses" % (seed, key, wall, s["neurons"], s["synapses"]))
        if key == "lnp":
            lnp_counts = (s["neurons"], s["synapses"])
        out[key] = (res.model, info)
    n_n, n_s = lnp_counts or (cached["lnp"]["neurons"], cached["lnp"]["synapses"])
    for key, _, kind, _ in ROWS:
        if key in cached:
            continue
        if kind == "dense":
            out[key] = (base, {})
        elif kind in ("random", "random-post"):
            net, rec = prune_random(base, n_n, n_s, seed=seed)
            info = {"synapse_shortfall": rec["synapse_shortfall"]}
            if kind == "random-post":  # each kept synapse had p = n_s / available: rescale by 1/p, then step 4
                factor = rec["synapses_after_neuron_removal"] / max(1, rec["synapses"])
                net = timescale_search(rescaled(net, factor), seed)
                info["rescale"] = factor
            out[key] = (net, info)
        elif kind in ("magnitude", "magnitude-post"):
            net, rec = prune_magnitude(base, n_n, n_s)
            out[key] = (timescale_search(net, seed) if kind == "magnitude-post" else net, {"synapse_shortfall": rec["synapse_shortfall"]})
    return out, base, (n_n, n_s)


def rightmost(a: np.ndarray, k: int = 6) -> np.ndarray:
    v = np.linalg.eigvals(a)
    return v[np.argsort(-v.real, kind="stable")[:k]]


def step1_diagnostics(base: HRSNN, seed: int) -> Dict[str, Any]:
    """Step 1 on the starting network, against magnitude: rank correlations, how many keep
    decisions the Lyapunov modulation changes, silent neurons' gains, and how well the 6
    rightmost eigenvalues of the rate model ``A`` survive keeping TARGET_SYNAPSES of the
    synapses (no neuron removed) by noise pruning (with and without the 1/p rescale) and by
    magnitude (largest |w|), at equal counts: relative error ``sum|e - e0| / sum|e0|``."""
    from scipy.stats import spearmanr

    from spikeedge.offline.lnp.analysis import full_analysis, noise_frames
    from spikeedge.offline.lnp.loop import synapse_survival_scores
    from spikeedge.offline.lnp.noise import keep_probabilities, rate_model_matrix, systematic_sample

    a, cfg = arrays_of(base), LnpConfig(seed=seed)
    frames = noise_frames(a.n, cfg.noise_steps, cfg.transient_steps, cfg.noise_std, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an, _ = full_analysis(a, frames, base.cfg, cfg)
        t, s, plain, _ = synapse_survival_scores(a, an.gains, an.local, LnpConfig(seed=seed, lyapunov_modulation=False))
        _, _, modulated, _ = synapse_survival_scores(a, an.gains, an.local, cfg)
    count = int(round(TARGET_SYNAPSES * len(t)))
    e0 = rightmost(rate_model_matrix(a.w_rec, a.tau_mem, an.gains))

    def err(w: np.ndarray) -> float:
        return float(np.abs(rightmost(rate_model_matrix(w, a.tau_mem, an.gains)) - e0).sum() / np.abs(e0).sum())

    def noise_pruned(scores, rescale: bool):
        p = keep_probabilities(scores, count)
        ch = systematic_sample(p, np.random.default_rng(seed))
        w = np.zeros_like(a.w_rec)
        w[t[ch], s[ch]] = a.w_rec[t[ch], s[ch]] / (p[ch] if rescale else 1.0)
        return w, ch

    w_n, ch_plain = noise_pruned(plain, True)
    w_nr, _ = noise_pruned(plain, False)
    w_mod, ch_mod = noise_pruned(modulated, True)
    order = np.argsort(-np.abs(a.w_rec[t, s]), kind="stable")[: int(ch_plain.sum())]
    w_m = np.zeros_like(a.w_rec)
    w_m[t[order], s[order]] = a.w_rec[t[order], s[order]]
    silent = an.rates == 0
    return {
        "spearman_noise_vs_w_tau": float(spearmanr(plain, np.abs(a.w_rec[t, s]) * (a.tau_mem[t] + a.tau_mem[s]))[0]),
        "spearman_modulated_vs_plain": float(spearmanr(modulated, plain)[0]),
        "modulation_changed_decisions": float((ch_plain != ch_mod).mean()),
        "silent_neurons": int(silent.sum()),
        "silent_gain_median": float(np.median(an.gains[silent])) if silent.any() else None,
        "active_gain_median": float(np.median(an.gains[~silent])) if (~silent).any() else None,
        "spectrum_error_noise": err(w_n), "spectrum_error_noise_no_rescale": err(w_nr),
        "spectrum_error_noise_modulated": err(w_mod), "spectrum_error_magnitude": err(w_m),
    }


def run_seed(args, seed: int, task, cache: Dict[str, Any], save) -> None:
    cached = {k.split("|")[0]: v for k, v in cache["results"].items() if k.endswith("|%d" % seed)}
    if "step1" not in cached:
        cache["results"]["step1|%d" % seed] = step1_diagnostics(HRSNN(regime_config(args.regime, n_neurons=args.neurons, seed=seed)), seed)
        save()
        say("seed %d step 1: %s" % (seed, cache["results"]["step1|%d" % seed]))
    if all(key in cached for key, *_ in ROWS):
        return
    nets, base, (n_n, n_s) = networks_for_seed(args, seed, task, cached)
    trained_dense = None
    for key, _, kind, _ in ROWS:
        if key in cached:
            continue
        t0 = time.perf_counter()
        if kind == "activity":
            if trained_dense is None:
                trained_dense, _ = train_model(copy.deepcopy(base), task)
            x = np.asarray(task.windows[0].train_x, np.float64).reshape(1, -1, task.n_inputs)
            net, rec = prune_activity(trained_dense, x, n_n, n_s)
            info = {"synapse_shortfall": rec["synapse_shortfall"]}
        else:
            net, info = nets[key]
        result = dict(info, neurons=net.cfg.n_neurons, synapses=int(net.n_synapses()["recurrent"]), **dynamics(net, seed))
        model, record = train_model(copy.deepcopy(net), task)
        if kind == "dense":
            trained_dense = model
        result["smape"] = float(score(FloatStepper(model), task)["smape"])
        result["ridge_lambda"] = record["training"]["lambda"]
        if key in INT8_ROWS:
            result["int8_smape"] = int8_smape(model, record, task)
        result["seconds"] = time.perf_counter() - t0
        cache["results"]["%s|%d" % (key, seed)] = result
        save()
        say("seed %d %-22s sMAPE %.3f%s  n %d s %d  lam %.3f rho %.2f active %.2f (%.1f s)" % (
            seed, key, result["smape"], "  int8 %.3f" % result["int8_smape"] if "int8_smape" in result else "",
            result["neurons"], result["synapses"], result["lyapunov_max"], result["spectral_radius"], result["active_fraction"], result["seconds"]))


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def seeds_of(text: str) -> List[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--neurons", type=int, default=300)
    ap.add_argument("--regime", default="edge", choices=sorted(REGIMES))
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "lnp-edge-cache")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    ap.add_argument("--report", action="store_true", help="only write the report from the cache")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = {"neurons": args.neurons, "regime": args.regime, "target_neurons": TARGET_NEURONS, "target_synapses": TARGET_SYNAPSES,
                "loop": LOOP, "rows": [r[0] for r in ROWS]}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = args.cache / key / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = json.loads(path.read_text()) if path.exists() else {"settings": settings, "results": {}, "code_fingerprint": code_fingerprint()}

    def save() -> None:  # another process may have added seeds: merge before writing
        if path.exists():
            other = json.loads(path.read_text())["results"]
            cache["results"] = dict(other, **cache["results"])
        write_atomic(path, json.dumps(cache, indent=1).encode())

    if not args.report:
        cache.setdefault("invocations", []).append({"argv": " ".join(sys.argv[1:] if argv is None else argv), "commit": git_commit(),
                                                    "started": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())})
        task = load_task("mackey-glass")
        for seed in seeds_of(args.seeds):
            run_seed(args, seed, task, cache, save)
    if path.exists():
        cache["results"] = dict(json.loads(path.read_text())["results"], **cache["results"])
    from lnp_edge_report import write_report

    write_report(cache, ROWS, seeds_of(args.seeds), args.out, " ".join(["python", "benchmarks/lnp_edge.py"] + list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
