"""Mackey-Glass series: shipped for tau = 17, generated here for any tau (NeuroBench's
forecasting task; nothing is downloaded).

``mackey_glass_series(17)`` is what the tasks score on: the series this generator made, stored in
``tasks/data/mackey_glass_tau17.npy`` (float64, 3,751 points) and read with its sha256 checked,
as NeuroBench ships its series. Regenerating it under another numpy moves points by more than
1e-6 from about step 1,777 on (the system is chaotic), and scores with it; the shipped file does
not move. ``mackey_glass(tau)`` stays for other tau and for checking the file.

``dx/dt = beta * x(t - tau) / (1 + x(t - tau)**n) - gamma * x(t)``, constant history ``x0`` for
``t <= 0``. The time origin follows NeuroBench's jitcdde recipe: integrate from 0; jitcdde's
``step_on_discontinuities()`` moves the start to ``t0 = tau``; samples are taken at
``linspace(t0, t0 + (n_points - 1) * L / points_per_lyapunov, n_points)``.

Integrator (why this one: fourth order, fully vectorised, about 0.05 s for 3,751 points).
The grid step is ``h = tau / m`` so that delayed times fall on grid points. Over any stretch
of at most ``tau`` the delayed input ``u(t) = beta x(t-tau) / (1 + x(t-tau)^n)`` is already
known, so the equation is linear there, ``x' = -gamma x + u(t)``, and is solved exactly:
``x[k+1] = e^(-gamma h) x[k] + integral of e^(-gamma (t[k+1] - s)) u(s) ds``. The integral uses
Simpson's rule, the delayed value at the half step comes from cubic Hermite interpolation of
the stored values and slopes, and the recurrence over the stretch is one cumulative sum.
Global error is O(h^4); outputs between grid points are Hermite-interpolated as well.
The slope at ``t = 0`` is the right-hand one (the equation's), as jitcdde uses.
"""

from __future__ import annotations

import io
import math
from typing import List, NamedTuple, Optional

import numpy as np

from ..errors import DataError
from .packaged import read_checked

# NeuroBench's 14 series: tau -> (Lyapunov time, initial condition = constant history).
NEUROBENCH_SERIES = {
    17: (197.0, 0.72066), 18: (138.0, 0.774431), 19: (315.0, 0.778347),
    20: (131.0, 0.922599), 21: (191.0, 0.947943), 22: (119.0, 0.545596),
    23: (106.0, 0.862225), 24: (97.0, 0.325966), 25: (98.0, 0.829783),
    26: (104.0, 1.003349), 27: (112.0, 0.649141), 28: (119.0, 1.09575),
    29: (131.0, 0.925618), 30: (139.0, 0.271364),
}


# Series shipped with the package: tau -> (file in tasks/data, its sha256). Made by
# ``np.save(name, mackey_glass(tau))`` with numpy 2.4.6 on x86_64 (docs/data.md).
SHIPPED_SERIES = {
    17: ("mackey_glass_tau17.npy", "2a8746528615b07c591d96fb2cbd9948f8b1d9c4ca1dd40e51bfb2ce53cc4a41"),
}


def mackey_glass_series(tau: float = 17) -> np.ndarray:
    """The 3,751-point series a task scores on: the shipped file for a tau in ``SHIPPED_SERIES``
    (sha256 checked), else ``mackey_glass(tau)`` generated here."""
    key = int(tau) if float(tau).is_integer() else None
    if key not in SHIPPED_SERIES:
        return mackey_glass(tau)
    name, digest = SHIPPED_SERIES[key]
    series = np.load(io.BytesIO(read_checked(name, digest)), allow_pickle=False)
    if series.dtype != np.float64 or series.shape != (3751,):
        raise DataError("%s: expected 3751 float64 values, got %s %s" % (name, series.dtype, series.shape))
    return series


def mackey_glass(
    tau: float = 17,
    n_points: int = 3751,
    *,
    beta: float = 0.2,
    gamma: float = 0.1,
    n: float = 10,
    lyapunov_time: Optional[float] = None,
    x0: Optional[float] = None,
    points_per_lyapunov: float = 75,
    h: float = 0.01,
) -> np.ndarray:
    """Return ``n_points`` samples (float64) spaced ``lyapunov_time / points_per_lyapunov``.

    ``lyapunov_time`` and ``x0`` default to NeuroBench's table for tau = 17..30; ``h`` is the
    target integration step (rounded so that ``tau / h`` is an integer).
    """
    if lyapunov_time is None or x0 is None:
        key = int(tau) if float(tau).is_integer() else None
        if key not in NEUROBENCH_SERIES:
            raise DataError(
                "mackey_glass: tau=%r has no NeuroBench entry (17..30); give lyapunov_time and x0"
                % (tau,)
            )
        table_l, table_x0 = NEUROBENCH_SERIES[key]
        lyapunov_time = table_l if lyapunov_time is None else lyapunov_time
        x0 = table_x0 if x0 is None else x0
    for name, value in (("tau", tau), ("lyapunov_time", lyapunov_time), ("h", h),
                        ("points_per_lyapunov", points_per_lyapunov)):
        if not (math.isfinite(value) and value > 0):
            raise DataError("mackey_glass: %s must be positive, got %r" % (name, value))
    if int(n_points) != n_points or n_points < 1:
        raise DataError("mackey_glass: n_points must be a positive integer, got %r" % (n_points,))
    if not math.isfinite(x0) or gamma < 0:
        raise DataError("mackey_glass: need a finite x0 and gamma >= 0")

    m = max(1, int(round(tau / h)))          # grid steps per delay
    step = tau / m
    t_last = tau + (n_points - 1) * lyapunov_time / points_per_lyapunov
    n_grid = int(math.ceil(t_last / step)) + 2   # grid points after t = 0
    x = np.empty(m + n_grid + 1)              # x[i] holds x(t = (i - m) * step)
    d = np.zeros(m + n_grid + 1)              # slopes; the history's slope is 0
    x[: m + 1] = x0

    # Longest stretch solved at once: at most one delay, and short enough for exp() to be safe.
    block = max(1, min(m, int(10.0 / (gamma * step)) if gamma > 0 else m))
    decay, decay_half = math.exp(-gamma * step), math.exp(-gamma * step / 2)
    grow = np.exp(gamma * step * np.arange(block + 1))  # decay ** -k

    o = m  # index of t = 0
    while o < m + n_grid:
        b_len = min(block, m + n_grid - o)
        xd, dd = x[o - m: o - m + b_len + 1], d[o - m: o - m + b_len + 1]
        x_mid = 0.5 * (xd[:-1] + xd[1:]) + step / 8.0 * (dd[:-1] - dd[1:])
        x_mid[: max(0, 2 * m - o)] = x0      # delayed time still in the constant history
        u = beta * xd / (1.0 + xd ** n)
        u_mid = beta * x_mid / (1.0 + x_mid ** n)
        inc = step / 6.0 * (decay * u[:-1] + 4.0 * decay_half * u_mid + u[1:])
        x[o + 1: o + b_len + 1] = (x[o] + np.cumsum(grow[1: b_len + 1] * inc)) / grow[1: b_len + 1]
        d[o: o + b_len + 1] = u - gamma * x[o: o + b_len + 1]
        o += b_len

    times = np.linspace(tau, t_last, int(n_points))
    pos = times / step + m
    i = np.minimum(np.floor(pos).astype(np.int64), len(x) - 2)
    s = pos - i
    out = ((2 * s ** 3 - 3 * s ** 2 + 1) * x[i] + (s ** 3 - 2 * s ** 2 + s) * step * d[i]
           + (3 * s ** 2 - 2 * s ** 3) * x[i + 1] + (s ** 3 - s ** 2) * step * d[i + 1])
    if not np.all(np.isfinite(out)):
        raise DataError("mackey_glass: the series diverged; check beta, gamma, n and x0")
    return out


class Window(NamedTuple):
    """One NeuroBench repeat: one-step pairs for training, an autoregressive test span."""

    start: int              # index of the window's first point in the series
    train_x: np.ndarray     # series[start : start+train]            teacher-forced inputs
    train_y: np.ndarray     # series[start+1 : start+train+1]        their one-step targets
    test_x: np.ndarray      # series[start+train : start+train+test] test_x[0] seeds the forecast
    test_y: np.ndarray      # series[start+train+1 : start+train+test+1]  points to forecast


def mackey_glass_windows(
    series: np.ndarray, n_repeats: int = 30, train: int = 750, test: int = 750,
    shift: float = 37.5,
) -> List[Window]:
    """NeuroBench's repeats: repeat k starts at ``floor(k * shift)`` (0.5 Lyapunov time).

    floor, not round, because NeuroBench slices its series at ``int(start_offset)``. A repeat
    uses ``train + test + 1`` points, as NeuroBench's loader does (each input has a next point).
    """
    series = np.asarray(series)
    if series.ndim != 1:
        raise DataError("mackey_glass_windows: series must be 1-D, got shape %s" % (series.shape,))
    if n_repeats < 1 or train < 1 or test < 1 or shift < 0:
        raise DataError("mackey_glass_windows: n_repeats, train, test must be >= 1, shift >= 0")
    need = int(math.floor((n_repeats - 1) * shift)) + train + test + 1
    if need > len(series):
        raise DataError(
            "mackey_glass_windows: %d repeats need %d points, series has %d"
            % (n_repeats, need, len(series))
        )
    windows = []
    for k in range(n_repeats):
        s = int(math.floor(k * shift))
        e = s + train
        windows.append(Window(s, series[s:e], series[s + 1:e + 1], series[e:e + test],
                              series[e + 1:e + test + 1]))
    return windows
