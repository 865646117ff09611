"""Lyapunov spectra by the QR (Benettin) method, for flows given by a vector field and its
Jacobian, and for (input-driven) maps given by a step and its Jacobian-vector product. The base of Lyapunov Noise Pruning (``../shared/methods/lnp.md``); checked against
systems with known exponents (a linear system exactly, Lorenz-63).

Method: integrate the state ``x`` and ``k`` tangent vectors ``Q`` with the variational equation
``dQ/dt = J(x) Q`` (classical RK4, the tangent stages evaluated at the state's RK4 stages);
every ``reorth`` steps replace ``Q`` by the Q factor of its QR decomposition and add
``log|diag R|`` to the running sums. Exponents = sums / elapsed time, in 1 / time unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Field = Callable[[np.ndarray], np.ndarray]


@dataclass
class LyapunovResult:
    exponents: np.ndarray  # (k,) largest first, per unit time
    vectors: np.ndarray  # (n, k) orthonormal tangent basis at the end (backward Lyapunov vectors)
    history: np.ndarray  # (n_reorth, k) running estimates, to judge convergence
    state: np.ndarray  # the final state


def _rk4_with_tangent(f: Field, jac: Callable[[np.ndarray], np.ndarray], x: np.ndarray, q: np.ndarray, dt: float):
    k1 = f(x)
    j1 = jac(x) @ q
    x2 = x + 0.5 * dt * k1
    k2 = f(x2)
    j2 = jac(x2) @ (q + 0.5 * dt * j1)
    x3 = x + 0.5 * dt * k2
    k3 = f(x3)
    j3 = jac(x3) @ (q + 0.5 * dt * j2)
    x4 = x + dt * k3
    k4 = f(x4)
    j4 = jac(x4) @ (q + dt * j3)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), q + dt / 6 * (j1 + 2 * j2 + 2 * j3 + j4)


def lyapunov_spectrum(
    f: Field,
    jac: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    dt: float,
    n_steps: int,
    k: Optional[int] = None,
    transient: int = 0,
    reorth: int = 1,
    seed: int = 0,
) -> LyapunovResult:
    """The ``k`` largest Lyapunov exponents of ``dx/dt = f(x)`` from ``x0``.

    ``transient`` steps are integrated first (state and tangents, sums discarded) so that the
    state is on the attractor and the tangent basis is aligned.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    n = x.size
    k = n if k is None else k
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k)))
    sums = np.zeros(k)
    history = []
    elapsed = 0.0
    for step in range(transient + n_steps):
        x, q = _rk4_with_tangent(f, jac, x, q, dt)
        if (step + 1) % reorth == 0:
            q, r = np.linalg.qr(q)
            d = np.diag(r)
            signs = np.where(d < 0, -1.0, 1.0)
            q = q * signs  # keep a continuous basis (positive diagonal of R)
            if step >= transient:
                sums += np.log(np.abs(d))
                elapsed += reorth * dt
                history.append(sums / elapsed)
    exps = sums / max(elapsed, 1e-300)
    return LyapunovResult(exps, q, np.array(history), x)


def lorenz_field(sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
    """Lorenz-63 vector field and Jacobian (a system with well-known exponents)."""

    def f(v):
        x, y, z = v
        return np.array([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])

    def jac(v):
        x, y, z = v
        return np.array([[-sigma, sigma, 0.0], [rho - z, -1.0, -x], [y, x, -beta]])

    return f, jac


@dataclass
class MapLyapunovResult:
    exponents: np.ndarray  # (k,) largest first, per step
    vectors: np.ndarray  # (n, k) orthonormal tangent basis at the end
    local: np.ndarray  # (n,) per-coordinate local exponents, per step (see map_lyapunov_spectrum)
    history: np.ndarray  # (n_reorth, k) running estimates
    state: np.ndarray


def map_lyapunov_spectrum(
    step: Callable[[np.ndarray, int], np.ndarray],
    jvp: Callable[[np.ndarray, int, np.ndarray], np.ndarray],
    x0: np.ndarray,
    n_steps: int,
    k: int,
    transient: int = 0,
    reorth: int = 1,
    seed: int = 0,
) -> MapLyapunovResult:
    """The ``k`` largest Lyapunov exponents of a (possibly input-driven) map ``x_{t+1} = step(x_t, t)``.

    ``jvp(x, t, Q)`` returns ``J_t(x) @ Q``. QR/Benettin as for flows, with one map application
    per step. Per-coordinate *local exponents* come with the spectrum: after each
    re-orthonormalisation the stretch ``log|R_kk|`` of direction ``k`` is shared among the
    coordinates by the squared components ``Q_ik^2`` of that direction; the part of each
    coordinate outside the k-dimensional subspace (``1 - sum_k Q_ik^2``) is given the smallest
    computed exponent, an upper bound for the rest of the spectrum. In matrix form this is the
    time average of ``diag(Q diag(l) Q^T + l_k (I - Q Q^T))``; summed over all coordinates it
    equals ``sum(l) + (n - k) l_k``.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    n = x.size
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k)))
    sums = np.zeros(k)
    shared = np.zeros(n)  # sum over reorthonormalisations of sum_k Q_ik^2 log|R_kk|
    outside = np.zeros(n)  # sum over steps of (1 - sum_k Q_ik^2)
    history = []
    elapsed = 0
    for t in range(transient + n_steps):
        q = jvp(x, t, q)
        x = step(x, t)
        if (t + 1) % reorth == 0:
            q, r = np.linalg.qr(q)
            d = np.diag(r)
            q = q * np.where(d < 0, -1.0, 1.0)
            if t >= transient:
                logs = np.log(np.maximum(np.abs(d), 1e-300))
                sums += logs
                sq = q * q
                shared += sq @ logs
                outside += reorth * (1.0 - sq.sum(axis=1))
                elapsed += reorth
                history.append(sums / elapsed)
    elapsed = max(elapsed, 1)
    exps = sums / elapsed
    local = (shared + exps[-1] * outside) / elapsed
    return MapLyapunovResult(exps, q, local, np.array(history), x)


def henon_map(a: float = 1.4, b: float = 0.3):
    """Hénon map and its JVP (exponents about 0.419 and -1.623, sum log(b))."""

    def step(v, _t):
        return np.array([1.0 - a * v[0] ** 2 + v[1], b * v[0]])

    def jvp(v, _t, q):
        return np.array([[-2.0 * a * v[0], 1.0], [b, 0.0]]) @ q

    return step, jvp
