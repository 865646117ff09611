"""User .npz files: both forms load; every malformed file gives a one-line DataError."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks.user_data import load_npz


def classification(**override):
    arrays = dict(x_train=np.random.RandomState(0).rand(6, 4), y_train=np.array([0, 1, 2, 0, 1, 2]),
                  x_test=np.zeros((3, 4)), y_test=np.array([2, 1, 0]))
    arrays.update(override)
    return {k: v for k, v in arrays.items() if v is not None}


def save(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_classification_form(tmp_path):
    arrays = classification(y_train=np.array([0.0, 1, 2, 0, 1, 2]))
    data = load_npz(save(tmp_path, **arrays))
    assert data.kind == "classification" and data.series is None
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])
    assert data.y_train.dtype == np.int64 and list(data.y_train) == [0, 1, 2, 0, 1, 2]
    assert data.x_test.shape == (3, 4)


@pytest.mark.parametrize("series", [np.sin(np.arange(100.0)), np.ones((50, 3), np.float32)])
def test_timeseries_form(tmp_path, series):
    data = load_npz(save(tmp_path, series=series, train_fraction=0.6))
    assert data.kind == "timeseries" and data.x_train is None
    assert data.series.dtype == np.float64 and data.series.shape == series.shape
    assert data.train_fraction == pytest.approx(0.6)
    assert load_npz(save(tmp_path, "b.npz", series=series)).train_fraction is None


@pytest.mark.parametrize("arrays, message", [
    (classification(y_test=None), "missing array 'y_test'"),
    (classification(y_train=np.array([0, 1, 2])), "'x_train' has 6 samples but 'y_train' has 3"),
    (classification(x_test=np.zeros((3, 5))), "x_train samples have shape"),
    (classification(x_test=np.array([[np.nan] * 4] * 3)), "'x_test' contains NaN or inf"),
    (classification(x_train=np.full((6, 4), np.inf)), "'x_train' contains NaN or inf"),
    (classification(y_train=np.array([0.5] * 6)), "integer class labels"),
    (classification(y_test=np.array([[0], [1], [2]])), "'y_test' must be 1-D"),
    (classification(x_train=np.array(["a"] * 6)), "expected numbers"),
    (classification(x_test=np.zeros((0, 4)), y_test=np.zeros(0, int)), "'x_test' has no samples"),
    ({"weights": np.zeros(3)}, "needs arrays x_train"),
    ({"series": np.array([1.0, np.nan, 2.0])}, "'series' contains NaN"),
    ({"series": np.zeros((2, 2, 2))}, "must be \\(T,\\) or \\(T, d\\)"),
    ({"series": np.arange(10.0), "train_fraction": 1.5}, "train_fraction"),
])
def test_malformed_arrays(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message) as info:
        load_npz(save(tmp_path, **arrays))
    assert str(info.value).startswith("data.npz: ") and "\n" not in str(info.value)


def test_pickled_object_array_is_refused(tmp_path):
    path = save(tmp_path, **classification(x_train=np.array([{"a": 1}] * 6, dtype=object)))
    with pytest.raises(DataError, match="data.npz: holds pickled object arrays"):
        load_npz(path)


def test_not_an_npz(tmp_path):
    with pytest.raises(DataError, match="missing.npz: file not found"):
        load_npz(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DataError, match="text.npz: not an .npz archive"):
        load_npz(text)
    npy = tmp_path / "plain.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataError, match="plain.npz: not an .npz archive"):
        load_npz(npy)
    other_zip = tmp_path / "other.npz"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("series", "not an array")
    with pytest.raises(DataError, match="other.npz: member 'series' is not a numpy array"):
        load_npz(other_zip)
