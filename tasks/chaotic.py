"""Lorenz and Rössler trajectories: small chaotic forecasting tasks made on the spot.

Classic fourth-order Runge-Kutta with ``substeps`` steps per output sample (``None`` picks enough
steps to keep the inner step at or below ``max_step``). The right-hand sides work on Python
floats because numpy's per-call overhead on a 3-vector would make the loop ten times slower;
the result is a numpy array. The first ``transient`` time units are integrated and dropped so
the samples lie on the attractor.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError

State = Tuple[float, float, float]


def _integrate(rhs: Callable[[float, float, float], State], x0: Sequence[float], n_points: int,
               dt: float, substeps: Optional[int], max_step: float, transient: float,
               name: str) -> np.ndarray:
    if int(n_points) != n_points or n_points < 1:
        raise DataError("%s: n_points must be a positive integer, got %r" % (name, n_points))
    if not (dt > 0 and math.isfinite(dt)) or transient < 0:
        raise DataError("%s: need dt > 0 and transient >= 0" % name)
    if len(x0) != 3:
        raise DataError("%s: x0 must have 3 values, got %d" % (name, len(x0)))
    if substeps is None:
        substeps = max(1, int(math.ceil(dt / max_step - 1e-9)))
    if substeps < 1:
        raise DataError("%s: substeps must be >= 1" % name)
    h = dt / substeps
    h2, h6 = h / 2.0, h / 6.0

    def step(s: State) -> State:
        x, y, z = s
        a = rhs(x, y, z)
        b = rhs(x + h2 * a[0], y + h2 * a[1], z + h2 * a[2])
        c = rhs(x + h2 * b[0], y + h2 * b[1], z + h2 * b[2])
        d = rhs(x + h * c[0], y + h * c[1], z + h * c[2])
        return (x + h6 * (a[0] + 2 * b[0] + 2 * c[0] + d[0]),
                y + h6 * (a[1] + 2 * b[1] + 2 * c[1] + d[1]),
                z + h6 * (a[2] + 2 * b[2] + 2 * c[2] + d[2]))

    s = (float(x0[0]), float(x0[1]), float(x0[2]))
    for _ in range(int(round(transient / h))):
        s = step(s)
    out = np.empty((int(n_points), 3))
    for i in range(int(n_points)):
        out[i] = s
        for _ in range(substeps):
            s = step(s)
    if not np.all(np.isfinite(out)):
        raise DataError("%s: the trajectory diverged; use a smaller dt or more substeps" % name)
    return out


def lorenz(n_points: int, dt: float = 0.01, *, sigma: float = 10.0, rho: float = 28.0,
           beta: float = 8.0 / 3.0, x0: Sequence[float] = (1.0, 1.0, 1.0),
           transient: float = 10.0, substeps: Optional[int] = None) -> np.ndarray:
    """``(n_points, 3)`` samples of the Lorenz system, ``dt`` apart (inner step <= 0.0025)."""

    def rhs(x: float, y: float, z: float) -> State:
        return sigma * (y - x), x * (rho - z) - y, x * y - beta * z

    return _integrate(rhs, x0, n_points, dt, substeps, 0.0025, transient, "lorenz")


def rossler(n_points: int, dt: float = 0.1, *, a: float = 0.2, b: float = 0.2, c: float = 5.7,
            x0: Sequence[float] = (1.0, 1.0, 1.0), transient: float = 100.0,
            substeps: Optional[int] = None) -> np.ndarray:
    """``(n_points, 3)`` samples of the Rössler system, ``dt`` apart (inner step <= 0.01)."""

    def rhs(x: float, y: float, z: float) -> State:
        return -y - z, x + a * y, b + z * (x - c)

    return _integrate(rhs, x0, n_points, dt, substeps, 0.01, transient, "rossler")
