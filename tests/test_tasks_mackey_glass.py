"""Mackey-Glass generator: against jitcdde's series, against itself under step refinement."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks.mackey_glass import NEUROBENCH_SERIES, mackey_glass, mackey_glass_windows

MG_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mackey_glass"


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    if not MG_DIR.is_dir() and os.environ.get("SPIKEEDGE_ALLOW_MISSING_SHARED") == "1":
        pytest.skip("../shared/data/mackey_glass is absent and SPIKEEDGE_ALLOW_MISSING_SHARED=1")
    assert MG_DIR.is_dir(), "%s is missing: the tests need ../shared beside the repository" % MG_DIR
    return np.loadtxt(MG_DIR / "mg_tau17_jitcdde.csv")


@pytest.fixture(scope="module")
def series17() -> np.ndarray:
    return mackey_glass(17)


def test_matches_jitcdde_reference(reference, series17):
    assert series17.shape == reference.shape == (3751,)
    assert series17.dtype == np.float64
    # Measured: 2.0e-7 (jitcdde itself ran at atol = rtol = 1e-12); chaos amplifies later on.
    assert np.max(np.abs(series17[:750] - reference[:750])) < 1e-5
    assert abs(series17.mean() / reference.mean() - 1) < 0.01
    assert abs(series17.std() / reference.std() - 1) < 0.03


def test_first_points_and_statistics_from_source_md(series17):
    # Numbers copied from ../shared/data/mackey_glass/SOURCE.md, so this runs without the file.
    np.testing.assert_allclose(
        series17[:5], [1.266778, 1.303401, 1.282305, 1.177091, 1.029534], atol=2e-6
    )
    assert series17.mean() == pytest.approx(0.93027, rel=0.01)
    assert series17.std() == pytest.approx(0.22624, rel=0.03)


def test_step_refinement_converges_at_fourth_order():
    """Halving h must shrink the change by about 2^4; a first-order slip would show here."""
    runs = [mackey_glass(17, 200, h=h) for h in (0.08, 0.04, 0.02, 0.01)]
    diffs = [np.max(np.abs(a - b)) for a, b in zip(runs, runs[1:])]
    ratios = [diffs[i] / diffs[i + 1] for i in range(len(diffs) - 1)]
    assert all(10 < r < 25 for r in ratios), ratios
    assert diffs[-1] < 1e-8


def test_default_step_is_converged_over_the_test_span():
    a = mackey_glass(17, 1501)
    b = mackey_glass(17, 1501, h=0.005)
    assert np.max(np.abs(a[:750] - b[:750])) < 1e-7


def test_fixed_point_without_delay_feedback():
    # beta = 0: x' = -gamma x from t = 0, so x(t0 + s) = x0 exp(-gamma (tau + s)) exactly.
    x = mackey_glass(5, 50, beta=0.0, lyapunov_time=10.0, x0=1.5, points_per_lyapunov=5)
    t = 5 + np.arange(50) * 2.0
    np.testing.assert_allclose(x, 1.5 * np.exp(-0.1 * t), rtol=1e-10)


def test_time_origin_is_tau():
    # Before the delayed feedback changes (t <= tau) the solution is known in closed form:
    # x' = c - gamma x with c = beta x0 / (1 + x0^n). The first sample is at t0 = tau.
    x0, tau, gamma = 0.72066, 17.0, 0.1
    c = 0.2 * x0 / (1 + x0 ** 10)
    exact = c / gamma + (x0 - c / gamma) * np.exp(-gamma * tau)
    assert mackey_glass(17, 1)[0] == pytest.approx(exact, abs=1e-12)


def test_all_neurobench_series_generate_quickly():
    for tau in NEUROBENCH_SERIES:
        x = mackey_glass(tau)
        assert x.shape == (3751,) and np.all(np.isfinite(x))
        assert 0.2 < x.min() and x.max() < 1.5
    start = time.perf_counter()
    mackey_glass(17)
    assert time.perf_counter() - start < 2.0


def test_unknown_tau_needs_parameters():
    with pytest.raises(DataError, match="tau=16"):
        mackey_glass(16)
    x = mackey_glass(16, 10, lyapunov_time=150.0, x0=0.8)
    assert x.shape == (10,)
    with pytest.raises(DataError, match="n_points"):
        mackey_glass(17, 0)


def test_windows_follow_neurobench_offsets():
    series = np.arange(3751, dtype=float)
    w = mackey_glass_windows(series)
    assert len(w) == 30
    assert [r.start for r in w[:4]] == [0, 37, 75, 112]   # floor(k * 37.5)
    last = w[-1]
    assert last.start == 1087
    assert last.train_x[0] == 1087 and last.train_x.shape == (750,)
    np.testing.assert_array_equal(last.train_y, last.train_x + 1)
    assert last.test_x[0] == 1087 + 750 and last.test_x.shape == (750,)
    assert last.test_y[-1] == 1087 + 1500
    with pytest.raises(DataError, match="need 2588 points"):
        mackey_glass_windows(series[:2587])
    assert len(mackey_glass_windows(series[:2588])) == 30


# ----------------------------------------------------------------------------- the shipped series

import importlib  # noqa: E402

mg_module = importlib.import_module("spikeedge.tasks.mackey_glass")
from spikeedge.tasks import packaged  # noqa: E402
from spikeedge.tasks.mackey_glass import SHIPPED_SERIES, mackey_glass_series  # noqa: E402
from spikeedge.tasks.registry import load_task  # noqa: E402

MADE_WITH_NUMPY = "2.4.6"  # the numpy that wrote tasks/data/mackey_glass_tau17.npy


def test_shipped_series_is_the_generators_output(series17):
    shipped = mackey_glass_series(17)
    assert shipped.dtype == np.float64 and shipped.shape == (3751,)
    diff = np.abs(shipped - series17)
    # Under another numpy the first 1,500 points (window 0's training and test span) still agree
    # within 1e-6 (numpy 1.24.4: 6.4e-8); from point 1,777 on the rounding differences grow
    # through the chaos (numpy 1.24.4: 0.79 at worst), which is why the file is shipped.
    assert diff[:1500].max() < 1e-6, diff[:1500].max()
    assert abs(shipped.mean() / series17.mean() - 1) < 0.01
    if np.__version__ == MADE_WITH_NUMPY:  # the machine kind that wrote the file: identical
        assert diff.max() == 0.0, (diff.max(), int(np.argmax(diff > 0)))


def test_tasks_score_on_the_shipped_file(monkeypatch):
    name, digest = SHIPPED_SERIES[17]
    raw = (packaged.DATA_DIR / name).read_bytes()
    import hashlib
    import io

    assert hashlib.sha256(raw).hexdigest() == digest
    on_disk = np.load(io.BytesIO(raw))

    def no_generator(*a, **k):
        raise AssertionError("tau = 17 must come from the shipped file, not the generator")

    monkeypatch.setattr(mg_module, "mackey_glass", no_generator)
    task = load_task("mackey-glass")
    np.testing.assert_array_equal(task.series, on_disk)
    assert len(task.windows) == 30
    np.testing.assert_array_equal(task.windows[5].train_x, on_disk[187:937])   # floor(5 * 37.5) = 187
    np.testing.assert_array_equal(task.windows[29].test_y, on_disk[1087 + 751:1087 + 1501])
    with pytest.raises(AssertionError, match="shipped file"):  # any other tau is generated
        load_task("mackey-glass", tau=18)


def test_shipped_series_checksum_is_enforced(tmp_path, monkeypatch):
    name, _ = SHIPPED_SERIES[17]
    raw = bytearray((packaged.DATA_DIR / name).read_bytes())
    raw[-3] ^= 1                                   # one bit of one value
    (tmp_path / name).write_bytes(bytes(raw))
    monkeypatch.setattr(packaged, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match=name + ": sha256 .* does not match"):
        mackey_glass_series(17)
    (tmp_path / name).unlink()
    with pytest.raises(DataError, match=name + ": shipped data file missing"):
        load_task("mackey-glass")
