"""Noise pruning of synapses (Moore & Chaudhuri 2020), modulated by local Lyapunov exponents.

Linearised rate model of the network around its noise-driven operating point::

    tau_i dx_i/dt = -x_i + g_i sum_j W_ij x_j + noise,   i.e.  A = diag(1/tau_mem) (G W - I)

with linear-response gains ``g_i`` of each LIF neuron under its own independent noisy input
(``dynamics.linear_response_gains``: the derivative of its mean spike probability with respect to
a constant extra input current, positive also for a neuron that stayed silent on the trace).
The stationary covariance under unit white noise solves ``A C + C A^T + I = 0``. Synapse
``(i <- j)`` scores ``|A_ij| (C_ii + C_jj - 2 sign(A_ij) C_ij)`` (Moore & Chaudhuri score the
entries of the dynamics matrix: ``A_ij = g_i W_ij / tau_i``, so a synapse onto a neuron that
hardly responds, or a slow one, weighs less than its ``|W_ij|``) times the Lyapunov factor: the
harmonic mean of the stabilities ``q`` of its two ends, where each end's local exponent is first
averaged over its closed neighbourhood ``N[v]`` in the synapse graph (``neighbourhood_mean``) and
``q = exp(-m (l - l_min) / (l_max - l_min))``, so a synapse in a region that expands
perturbations is dropped first.
Probabilities ``p = min(1, kappa * score)`` sum to the synapse target; kept weights become
``W_ij / p_ij`` so that the pruned matrix equals the dense one in expectation.
"""

from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackNoConvergence, eigs


def rate_gains(rates: np.ndarray, width: float) -> np.ndarray:
    """Slope of a logistic escape-noise neuron firing at ``rates`` (0 for a silent neuron)."""
    return rates * (1.0 - rates) / width


def neighbourhood_mean(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each neuron's closed neighbourhood in the (undirected) graph of ``w``."""
    nz = (w != 0) | (w.T != 0)
    np.fill_diagonal(nz, True)
    return (nz @ values) / nz.sum(axis=1)


def rate_model_matrix(w: np.ndarray, tau_mem: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``A = diag(1/tau) (diag(g) W - I)``."""
    return (gains[:, None] * w - np.eye(len(w))) / tau_mem[:, None]


def max_real_eigenvalue(a: np.ndarray) -> float:
    """Largest real part of ``a``'s eigenvalues (ARPACK; dense fallback)."""
    if len(a) > 50:
        try:
            v0 = np.random.default_rng(0).standard_normal(len(a))  # a fixed start (ARPACK's own is random): reproducible
            return float(np.max(eigs(a, k=2, which="LR", return_eigenvectors=False, tol=1e-6, maxiter=5000, v0=v0).real))
        except (ArpackNoConvergence, ValueError, RuntimeError):
            pass
    return float(np.max(np.linalg.eigvals(a).real))


def stationary_covariance(a: np.ndarray) -> Tuple[np.ndarray, float]:
    """``C`` with ``A C + C A^T + I = 0``, and the shift applied.

    A non-stable ``A`` (some eigenvalue with real part >= 0) has no stationary covariance: it is
    shifted to ``A - s I`` with ``s = max Re(lambda) + 0.05 * min_i(1/tau_i)``, a warning is given
    and ``s`` is returned so the record shows it.
    """
    top = max_real_eigenvalue(a)
    shift = 0.0
    if top >= 0:
        shift = top + 0.05 * float(np.min(-np.diag(a)[np.diag(a) < 0], initial=1.0))
        warnings.warn("LNP: the linearised rate model is not stable (max Re eigenvalue %.3g); shifted by %.3g" % (top, shift), RuntimeWarning)
        a = a - shift * np.eye(len(a))
    c = scipy.linalg.solve_continuous_lyapunov(a, -np.eye(len(a)))
    return 0.5 * (c + c.T), shift


def lyapunov_factors(local: np.ndarray, strength: float) -> np.ndarray:
    """Per-neuron stabilities ``q_i`` in ``[exp(-strength), 1]``: 1 for the most contracting."""
    span = float(np.ptp(local))
    if span <= 0 or strength == 0:
        return np.ones_like(local)
    return np.exp(-strength * (local - local.min()) / span)


def synapse_scores(w: np.ndarray, cov: np.ndarray, targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Moore & Chaudhuri's noise-pruning score of each listed synapse ``(target <- source)``."""
    wij = w[targets, sources]
    dii, djj = cov[targets, targets], cov[sources, sources]
    return np.abs(wij) * np.maximum(dii + djj - 2.0 * np.sign(wij) * cov[targets, sources], 0.0)


def harmonic_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 2.0 * a * b / np.maximum(a + b, 1e-300)


def keep_probabilities(scores: np.ndarray, target: float) -> np.ndarray:
    """``p = min(1, kappa * scores)`` with ``sum(p) = target`` (``kappa`` by bisection).

    Zero scores get ``p = 0`` unless the target needs them (then they share what is left evenly).
    """
    m = len(scores)
    if target >= m:
        return np.ones(m)
    if target <= 0:
        return np.zeros(m)
    positive = scores > 0
    if positive.sum() <= target:  # every scored synapse kept; the rest filled uniformly
        p = positive.astype(np.float64)
        rest = (~positive).sum()
        if rest:
            p[~positive] = (target - positive.sum()) / rest
        return p
    lo, hi = 0.0, 1.0 / scores[positive].min()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.minimum(1.0, mid * scores).sum() < target:
            lo = mid
        else:
            hi = mid
    return np.minimum(1.0, hi * scores)


def systematic_sample(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bool mask where item ``i`` is chosen with probability exactly ``p_i`` and the count is
    ``floor`` or ``ceil`` of ``sum(p)`` (systematic sampling over a random order), so the synapse
    target is met exactly rather than only in expectation as independent coin flips would."""
    order = rng.permutation(len(p))
    cum = np.cumsum(p[order])
    u = rng.random()
    chosen = (np.floor(cum - u) - np.floor(cum - p[order] - u)) > 0
    mask = np.zeros(len(p), bool)
    mask[order] = chosen
    return mask
