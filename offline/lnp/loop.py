"""The LNP loop: noise pruning of synapses, neuron pruning, delocalisation, timescales, repeat.

Each iteration moves the network a geometric step towards the neuron and synapse targets (they
are reached at iteration ``prune_iterations``); later iterations only refine the time constants.
The loop stops at ``max_iterations`` or when the recorded quantities change by less than
``tolerance`` (relative) for ``patience`` consecutive iterations.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ...errors import ModelError
from ..hrsnn import HRSNN
from ..surgery import HrsnnArrays, arrays_of, build_hrsnn
from .analysis import full_analysis, noise_frames, quick_exponent
from .config import LnpConfig
from .graph import betweenness, delocalise, kron_reduce, regrow
from .noise import (
    harmonic_mean,
    keep_probabilities,
    lyapunov_factors,
    neighbourhood_mean,
    rate_model_matrix,
    stationary_covariance,
    synapse_scores,
    systematic_sample,
)
from .timescales import optimise, quantiles

Progress = Optional[Callable[[int, int, Dict[str, Any]], None]]


@dataclass
class LnpResult:
    model: HRSNN  # the pruned network (physically smaller; readout untrained)
    record: List[Dict[str, Any]]  # row 0 = the starting network, then one row per iteration
    phase_seconds: Dict[str, float]
    stopped: str  # "converged" | "max_iterations"
    config: LnpConfig
    start: Dict[str, int] = field(default_factory=dict)  # neurons and synapses before pruning
    kept: Optional[np.ndarray] = None  # each kept neuron's index in the starting network

    def summary(self) -> Dict[str, Any]:
        last = self.record[-1]
        return {
            "neurons": last["neurons"],
            "synapses": last["synapses"],
            "start": self.start,
            "kept_neurons": last["neurons"] / self.start["neurons"],
            "kept_synapses": last["synapses"] / self.start["synapses"],
            "iterations": len(self.record) - 1,
            "stopped": self.stopped,
            "lyapunov_max": last["lyapunov_max"],
            "spectral_radius": last["spectral_radius"],
            "ipr": last["ipr"],
            "seconds": round(sum(self.phase_seconds.values()), 3),
            "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
            "config": asdict(self.config),
        }


CHANGE_KEYS = ("neurons", "synapses", "spectral_radius", "ipr")


def relative_change(old: Dict[str, Any], new: Dict[str, Any]) -> float:
    """Largest relative change of the recorded measures (the exponent relative to at least 0.05,
    since it is near zero at the edge of chaos)."""
    ch = [abs(new[k] - old[k]) / max(abs(old[k]), 1e-12) for k in CHANGE_KEYS]
    ch.append(abs(new["lyapunov_max"] - old["lyapunov_max"]) / max(abs(old["lyapunov_max"]), 0.05))
    return float(max(ch))


def schedule(start: int, target: int, iteration: int, over: int) -> int:
    """Geometric path from ``start`` to ``target``, reached at iteration ``over``."""
    frac = min(1.0, iteration / max(1, over))
    return int(round(start * (target / start) ** frac)) if start > 0 and target > 0 else target


def lnp_prune(model: HRSNN, cfg: LnpConfig, progress: Progress = None) -> LnpResult:
    """Prune ``model`` (untrained) to the configured neuron and synapse fractions with LNP."""
    mcfg = model.cfg
    phases = {k: 0.0 for k in ("analysis", "neuron_pruning", "noise_pruning", "delocalisation", "timescales")}
    rng = np.random.default_rng(cfg.seed)
    arrays = arrays_of(model)
    n0, s0 = arrays.n, arrays.n_synapses
    if n0 < 2 or s0 == 0:
        raise ModelError("LNP needs a recurrent network with synapses (got %d neurons, %d synapses)" % (n0, s0))
    if not (0 < cfg.target_neurons <= 1 and 0 < cfg.target_synapses <= 1):
        raise ModelError("LNP targets are kept fractions in (0, 1]")
    n_target = max(2, int(round(cfg.target_neurons * n0)))
    s_target = max(1, int(round(cfg.target_synapses * s0)))
    source_sign = np.where(arrays.w_rec.sum(axis=0) < 0, -1.0, 1.0)
    weight_std = mcfg.rec_gain * mcfg.threshold / np.sqrt(max(1.0, s0 / n0))  # as HRSNN draws them
    homogeneous = float(np.ptp(arrays.tau_mem)) == 0.0
    dist = {"mean": float(arrays.tau_mem.mean()) if homogeneous else mcfg.tau_mem_mean, "shape": mcfg.tau_mem_shape}
    u = quantiles(arrays.tau_mem, mcfg.tau_mem_mean, mcfg.tau_mem_shape)
    frames = noise_frames(n0, cfg.noise_steps, cfg.transient_steps, cfg.noise_std, cfg.seed)
    orig = np.arange(n0)  # each kept neuron's index in the starting network (its noise column)

    def measure(arr: HrsnnArrays, iteration: int, t0: float, extra: Dict[str, Any]):
        t = time.perf_counter()
        an, row = full_analysis(arr, frames, mcfg, cfg, orig)
        phases["analysis"] += time.perf_counter() - t
        row = dict(iteration=iteration, neurons=arr.n, synapses=arr.n_synapses, tau_mem_mean=float(arr.tau_mem.mean()), tau_mem_shape=dist["shape"], **row, **extra)
        row["seconds"] = round(time.perf_counter() - t0, 4)
        return an, row

    an, first = measure(arrays, 0, time.perf_counter(), {"change": None, "shift": 0.0, "added_back": 0, "regrown": 0})
    record = [first]
    settled, stopped = 0, "max_iterations"
    for it in range(1, cfg.max_iterations + 1):
        t0 = time.perf_counter()
        n_t, s_t = schedule(n0, n_target, it, cfg.prune_iterations), schedule(s0, s_target, it, cfg.prune_iterations)
        gains = an.gains
        local = an.local
        shift, added, regrown = 0.0, 0, 0
        removed = np.zeros((0, 2), np.int64)
        removed_w = np.zeros(0)
        if cfg.subgraph:  # neurons first, so that the synapse step can meet its count within what is left
            arrays, keep, t_np = _prune_neurons(arrays, n_t, gains, source_sign, cfg, rng, it)
            if keep is not None:
                u, source_sign, orig, gains, local = u[keep], source_sign[keep], orig[keep], gains[keep], local[keep]
            phases["neuron_pruning"] += t_np
        # 1. synapses: noise pruning to this iteration's count, less what delocalisation adds back
        count = arrays.n_synapses
        n_add = int(round(cfg.delocalise_fraction * (count - s_t))) if (cfg.delocalisation and count > s_t) else 0
        if count > s_t - n_add:
            t = time.perf_counter()
            removed, removed_w, shift = _prune_synapses(arrays, s_t - n_add, gains, local, cfg, rng)
            phases["noise_pruning"] += time.perf_counter() - t
        # 2. neurons: lowest betweenness out, their paths rerouted (Kron reduction)
        if not cfg.subgraph:
            arrays, keep, t_np = _prune_neurons(arrays, n_t, gains, source_sign, cfg, rng, it)
            phases["neuron_pruning"] += t_np
            if keep is not None:
                u, source_sign, orig = u[keep], source_sign[keep], orig[keep]
                new_index = np.cumsum(keep) - 1
                both = keep[removed[:, 0]] & keep[removed[:, 1]] if len(removed) else np.zeros(0, bool)
                removed, removed_w = new_index[removed[both]], removed_w[both]
        # 3. delocalisation: add back the removed synapses that most raise local heterogeneity;
        #    then (full mode only), if neuron pruning took more synapses than the target allows,
        #    grow the difference where it most raises local heterogeneity (same criterion)
        t = time.perf_counter()
        if n_add:
            arrays.w_rec, added = delocalise(arrays.w_rec, removed, removed_w, min(n_add, s_t - arrays.n_synapses), rng)
        if arrays.n_synapses < s_t and not cfg.subgraph:
            arrays.w_rec, regrown = regrow(arrays.w_rec, s_t - arrays.n_synapses, source_sign, weight_std, rng, ranked=cfg.delocalisation)
        phases["delocalisation"] += time.perf_counter() - t
        # 4. timescales: Bayesian optimisation of the membrane time-constant distribution
        bo = None
        if cfg.timescale_optimisation:
            t = time.perf_counter()
            arrays, bo = optimise(
                arrays, u, dist, mcfg.tau_mem_mean if not homogeneous else dist["mean"], mcfg.tau_min, homogeneous,
                lambda cand: quick_exponent(cand, frames, mcfg, cfg, orig), cfg.target_exponent, tuple(cfg.rate_range),
                cfg.bo_evaluations, cfg.seed + it,
            )
            dist = {"mean": bo["mean"], "shape": bo["shape"]}
            phases["timescales"] += time.perf_counter() - t
        an, row = measure(arrays, it, t0, {"shift": shift, "added_back": added, "regrown": regrown, "bo_objective": None if bo is None else bo["objective"]})
        row["change"] = relative_change(record[-1], row)
        record.append(row)
        if progress:
            progress(it, cfg.max_iterations, row)
        settled = settled + 1 if (it >= cfg.prune_iterations and row["change"] < cfg.tolerance) else 0
        if settled >= cfg.patience:
            stopped = "converged"
            break
    pruned = build_hrsnn(replace(mcfg, tau_mem_mean=dist["mean"], tau_mem_shape=dist["shape"]), arrays)
    return LnpResult(pruned, record, phases, stopped, cfg, {"neurons": n0, "synapses": s0}, orig)


def synapse_survival_scores(arrays: HrsnnArrays, gains: np.ndarray, local: np.ndarray, cfg: LnpConfig):
    """(targets, sources, scores, shift): step 1's score of every synapse (see ``noise``)."""
    targets, sources = np.nonzero(arrays.w_rec)
    shift = 0.0
    if cfg.noise_pruning:
        a = rate_model_matrix(arrays.w_rec, arrays.tau_mem, gains)
        cov, shift = stationary_covariance(a)
        scores = synapse_scores(a, cov, targets, sources)  # on A's entries g_i W_ij / tau_i (the coupling the dynamics see)
    else:
        scores = np.ones(len(targets))
    if cfg.lyapunov_modulation:
        lbar = neighbourhood_mean(local, arrays.w_rec) if cfg.neighbourhood_average else local
        q = lyapunov_factors(lbar, cfg.modulation)
        scores = scores * harmonic_mean(q[targets], q[sources])
    return targets, sources, scores, shift


def _prune_synapses(arrays: HrsnnArrays, target: int, gains, local, cfg: LnpConfig, rng):
    """Keep ``target`` synapses of ``arrays`` (in place) by their survival probabilities, kept
    weights rescaled by ``1/p`` (``cfg.rescale``); returns the removed (target, source) pairs,
    their weights and the covariance shift."""
    targets, sources, scores, shift = synapse_survival_scores(arrays, gains, local, cfg)
    p = keep_probabilities(scores, target)
    chosen = systematic_sample(p, rng)
    before = arrays.w_rec
    arrays.w_rec = np.zeros_like(before)
    scale = 1.0 / p[chosen] if cfg.rescale else 1.0
    arrays.w_rec[targets[chosen], sources[chosen]] = before[targets[chosen], sources[chosen]] * scale
    removed = np.stack([targets[~chosen], sources[~chosen]], axis=1)
    return removed, before[removed[:, 0], removed[:, 1]], shift


def _prune_neurons(arrays: HrsnnArrays, n_t: int, gains, source_sign, cfg: LnpConfig, rng, it: int):
    """(arrays, keep mask or None, seconds): the ``arrays.n - n_t`` neurons of lowest betweenness
    (or random ones, the ablation) removed; full mode reroutes their paths by Kron reduction,
    subgraph mode keeps only the synapses among the kept neurons, unchanged."""
    t = time.perf_counter()
    if arrays.n <= n_t:
        return arrays, None, time.perf_counter() - t
    if cfg.neuron_pruning_by_betweenness:
        order = np.argsort(betweenness(arrays.w_rec, cfg.betweenness_samples, cfg.seed + it), kind="stable")
    else:
        order = rng.permutation(arrays.n)
    keep = np.ones(arrays.n, bool)
    keep[order[: arrays.n - n_t]] = False
    w_kept = None if cfg.subgraph else kron_reduce(arrays.w_rec, gains, keep, source_sign)
    arrays = arrays.subset(keep)
    if w_kept is not None:
        arrays.w_rec = w_kept
    return arrays, keep, time.perf_counter() - t
