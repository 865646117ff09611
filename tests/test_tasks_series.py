"""The sunspots and MNIST-1D tasks: the shipped sunspot file is statsmodels' series byte for
byte (checked where statsmodels is installed) and refused when changed; MNIST-1D comes from its
package's generator without touching numpy's global random state."""

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks import packaged
from spikeedge.tasks.registry import load_task
from spikeedge.tasks.series import SUNSPOT_SCALE, sunspots_series


def test_sunspots_windows_cover_the_series_to_2008():
    task = load_task("sunspots")
    series = sunspots_series()
    assert task.kind == "forecast" and len(task.windows) == 10
    last = task.windows[-1]
    assert np.array_equal(last.test_y, series[-11:] / SUNSPOT_SCALE)  # 1998..2008
    assert np.array_equal(task.windows[0].train_x, series[:200] / SUNSPOT_SCALE)


def test_sunspots_file_is_statsmodels_series():
    sm = pytest.importorskip("statsmodels.datasets.sunspots")
    data = sm.load_pandas().data
    assert list(data["YEAR"].astype(int)[[0, 308]]) == [1700, 2008]
    assert np.array_equal(sunspots_series(), data["SUNACTIVITY"].to_numpy(np.float64))


def test_changed_sunspot_file_is_refused(tmp_path, monkeypatch):
    raw = (packaged.DATA_DIR / "sunspots_yearly.npy").read_bytes()
    (tmp_path / "sunspots_yearly.npy").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    monkeypatch.setattr(packaged, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match="sha256"):
        sunspots_series()


def test_mnist1d_generated_offline_and_global_rng_left_alone():
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    task = load_task("mnist1d")
    assert np.array_equal(np.random.get_state()[1], before)
    assert task.x_train.shape == (4000, 40, 1) and task.x_test.shape == (1000, 40, 1)
    assert sorted(np.unique(task.y_train)) == list(range(10))
    again = load_task("mnist1d")  # seeded: the same data every time
    assert np.array_equal(again.x_test, task.x_test)
