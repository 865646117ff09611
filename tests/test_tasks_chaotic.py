"""Lorenz and Rössler generators: known attractor statistics and RK4's order."""

from __future__ import annotations

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks.chaotic import lorenz, rossler


def test_lorenz_attractor_statistics():
    traj = lorenz(40000, 0.02)          # 800 time units on the attractor
    assert traj.shape == (40000, 3) and traj.dtype == np.float64
    x, y, z = traj.T
    assert z.mean() == pytest.approx(23.55, abs=0.4)   # long-run mean of z for rho = 28
    assert abs(x.mean()) < 0.1 * x.std()                # the two wings are visited equally
    assert abs(np.mean(x > 0) - 0.5) < 0.05
    assert 7.0 < x.std() < 8.8
    assert -22 < x.min() < -15 and 15 < x.max() < 22 and 0 < z.min() and z.max() < 50


def test_lorenz_rk4_is_fourth_order():
    runs = [lorenz(101, 0.01, transient=0.0, substeps=s) for s in (1, 2, 4, 8)]
    diffs = [np.max(np.abs(a - b)) for a, b in zip(runs, runs[1:])]
    assert 12 < diffs[0] / diffs[1] < 20 and 12 < diffs[1] / diffs[2] < 20
    # The default inner step (0.0025) is converged to 1e-4 over one time unit.
    np.testing.assert_allclose(lorenz(101, 0.01, transient=0.0), runs[-1], atol=1e-4)


def test_lorenz_starts_from_x0_without_transient():
    traj = lorenz(2, 0.001, x0=(1.0, 2.0, 3.0), transient=0.0)
    np.testing.assert_array_equal(traj[0], [1.0, 2.0, 3.0])
    # Taylor check of the equations at the start: x' = sigma (y - x) = 10 and
    # x'' = sigma (x (rho - z) - y - x') = 130, so (x(dt) - 1) / dt = 10 + 65 dt.
    assert (traj[1, 0] - 1.0) / 0.001 == pytest.approx(10.065, abs=2e-3)


def test_rossler_bounded_with_known_period():
    traj = rossler(6000, 0.1)
    assert traj.shape == (6000, 3)
    x = traj[:, 0]
    assert np.all(np.abs(traj[:, :2]) < 15) and traj[:, 2].min() > 0 and traj[:, 2].max() < 30
    up = np.where((x[:-1] < 0) & (x[1:] >= 0))[0]
    crossing = up + (-x[up]) / (x[up + 1] - x[up])      # interpolated upward zero crossings
    period = np.mean(np.diff(crossing)) * 0.1
    assert 5.6 < period < 6.3


def test_bad_arguments():
    with pytest.raises(DataError, match="lorenz: n_points"):
        lorenz(0)
    with pytest.raises(DataError, match="rossler: x0"):
        rossler(10, x0=(1.0, 2.0))
    with pytest.raises(DataError, match="diverged"):
        lorenz(50, 0.5, substeps=1, transient=0.0)
