"""Timescale optimisation: Bayesian optimisation of the membrane time-constant distribution.

Each neuron keeps its quantile ``u_i`` in the starting gamma distribution; a candidate
``(mean, shape)`` redraws ``tau_i = max(tau_min, F^{-1}_{gamma(shape, mean/shape)}(u_i))``, so the
ranking of neurons (which are slow, which fast) and their heterogeneity survive while the
distribution moves. A homogeneous network (all ``tau_i`` equal) has only its mean optimised.

Task-agnostic objective (maximised), on the same noise drive as the rest of LNP::

    f = -|lambda_1 - lambda*| - dist(mean_rate, [r_lo, r_hi])

``lambda_1``: largest exponent of the smoothed map, per step ("edge of chaos" at ``lambda* = 0``);
``dist``: how far the mean spike probability is outside the allowed range. Search space: mean in
``[0.5, 2] x`` the configured mean (log scale), shape in ``[1, 10]``; budget ``bo_evaluations``
per iteration (a third random, then expected-improvement-driven GP suggestions from
``bayes_opt``). A candidate replaces the current distribution only if it improves ``f`` by more
than 1e-3, so the loop can settle.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
from scipy import stats

from ..surgery import HrsnnArrays

SHAPE_BOUNDS = (1.0, 10.0)
MEAN_FACTOR_BOUNDS = (0.5, 2.0)


def quantiles(tau: np.ndarray, mean: float, shape: float) -> np.ndarray:
    """Each neuron's quantile in gamma(shape, mean/shape), kept away from 0 and 1."""
    return np.clip(stats.gamma.cdf(tau, shape, scale=mean / shape), 1e-6, 1 - 1e-6)


def redraw(u: np.ndarray, mean: float, shape: float, tau_min: float, homogeneous: bool) -> np.ndarray:
    if homogeneous:
        return np.full(len(u), max(mean, tau_min))
    return np.maximum(stats.gamma.ppf(u, shape, scale=mean / shape), tau_min)


def objective(exponent: float, mean_rate: float, target: float, rate_range: Tuple[float, float]) -> float:
    lo, hi = rate_range
    return -abs(exponent - target) - max(0.0, lo - mean_rate, mean_rate - hi)


def optimise(
    arrays: HrsnnArrays,
    u: np.ndarray,
    current: Dict[str, float],
    base_mean: float,
    tau_min: float,
    homogeneous: bool,
    evaluate: Callable[[HrsnnArrays], Tuple[float, float]],
    target: float,
    rate_range: Tuple[float, float],
    budget: int,
    seed: int,
) -> Tuple[HrsnnArrays, Dict[str, float]]:
    """One round of BO; returns the (possibly unchanged) arrays and the distribution in use
    (``mean``, ``shape``, ``objective``, ``evaluations``)."""
    from bayes_opt import BayesianOptimization

    def score(mean: float, shape: float) -> Tuple[float, HrsnnArrays]:
        cand = arrays.copy()
        cand.tau_mem = redraw(u, mean, shape, tau_min, homogeneous)
        exponent, rate = evaluate(cand)
        return objective(exponent, rate, target, rate_range), cand

    cur_f, _ = score(current["mean"], current["shape"])
    bounds = {"log_mean": tuple(math.log(base_mean * f) for f in MEAN_FACTOR_BOUNDS)}
    if not homogeneous:
        bounds["shape"] = SHAPE_BOUNDS
    # no duplicate points: bayes_opt would print about them on stdout (and break --json output)
    opt = BayesianOptimization(f=None, pbounds=bounds, random_state=seed, verbose=0, allow_duplicate_points=False)
    seen = set()
    start = {"log_mean": float(np.clip(math.log(current["mean"]), *bounds["log_mean"]))}
    if not homogeneous:
        start["shape"] = float(np.clip(current["shape"], *SHAPE_BOUNDS))
    opt.register(params=start, target=cur_f)
    seen.add(tuple(start[k] for k in sorted(bounds)))
    best = (cur_f, arrays, dict(current))
    rng = np.random.default_rng(seed)
    for i in range(budget):
        if i < budget // 3:
            params = {k: float(rng.uniform(*b)) for k, b in bounds.items()}
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # GP fit convergence chatter
                params = {k: float(v) for k, v in opt.suggest().items()}
        key = tuple(params[k] for k in sorted(bounds))
        if key in seen:  # the GP proposes a point it already has: explore at random instead
            params = {k: float(rng.uniform(*b)) for k, b in bounds.items()}
            key = tuple(params[k] for k in sorted(bounds))
        seen.add(key)
        mean, shape = math.exp(params["log_mean"]), params.get("shape", current["shape"])
        f, cand = score(mean, shape)
        opt.register(params=params, target=f)
        if f > best[0] + 1e-3:
            best = (f, cand, {"mean": mean, "shape": shape})
    f, chosen, dist = best
    return chosen, dict(dist, objective=f, evaluations=budget + 1)
