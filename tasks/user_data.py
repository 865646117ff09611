"""A user's own data in one ``.npz`` file, checked before any model sees it.

Two forms, told apart by their arrays:

- classification: ``x_train, y_train, x_test, y_test`` (labels: 1-D integers);
- time series: ``series``, 1-D or (T, d), plus an optional scalar ``train_fraction`` in (0, 1).

Read by ``npz_stream.NpzArray``: no pickle, so a data file can never run code, and each array's
header (dtype, declared size) is checked before its data is read. Other arrays are ignored.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DataError
from .npz_stream import NpzArray

CLASSIFICATION_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class UserData:
    """What ``load_npz`` found; the arrays of the other form are None."""

    kind: str                                  # "classification" or "timeseries"
    x_train: Optional[np.ndarray] = None
    y_train: Optional[np.ndarray] = None       # int64
    x_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    series: Optional[np.ndarray] = None        # float64, (T,) or (T, d)
    train_fraction: Optional[float] = None     # None when the file gives none


def _numeric(name: str, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError("%s: array '%s' has dtype %s, expected numbers" % (name, key, arr.dtype))
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DataError("%s: array '%s' contains NaN or inf" % (name, key))
    return arr


def _labels(name: str, key: str, arr: np.ndarray) -> np.ndarray:
    arr = _numeric(name, key, arr)
    if arr.ndim != 1:
        raise DataError("%s: array '%s' must be 1-D, got shape %s" % (name, key, arr.shape))
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise DataError("%s: array '%s' must hold integer class labels" % (name, key))
    if arr.size and arr.min() < 0:
        raise DataError("%s: array '%s' has negative labels" % (name, key))
    return arr.astype(np.int64)


def load_npz(path: Union[str, Path]) -> UserData:
    """Read and validate ``path``; DataError with a one-line reason otherwise."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError("%s: file not found" % name)
    if not zipfile.is_zipfile(str(path)):
        raise DataError("%s: not an .npz archive (save with numpy.savez)" % name)
    try:
        with zipfile.ZipFile(str(path)) as archive:
            members = archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError("%s: corrupt archive (%s)" % (name, " ".join(str(exc).split()))) from None
    for member in members:
        if not member.endswith(".npy"):
            raise DataError("%s: member '%s' is not a numpy array" % (name, member))
    # each header checked (dtype, declared size against the archive and MAX_ARRAY_BYTES) before its data is read
    arrays = {m[:-4]: NpzArray(path, m[:-4], label=name).read() for m in members}

    if "series" in arrays:
        series = _numeric(name, "series", arrays["series"])
        if series.ndim not in (1, 2) or len(series) < 2:
            raise DataError("%s: array 'series' must be (T,) or (T, d) with T >= 2, got shape %s"
                            % (name, series.shape))
        fraction = None
        if "train_fraction" in arrays:
            tf = arrays["train_fraction"]
            if tf.shape != () or tf.dtype.kind not in "iuf" or not 0.0 < float(tf) < 1.0:
                raise DataError("%s: 'train_fraction' must be a scalar in (0, 1)" % name)
            fraction = float(tf)
        return UserData("timeseries", series=series.astype(np.float64), train_fraction=fraction)

    if not any(key in arrays for key in CLASSIFICATION_KEYS):
        raise DataError("%s: needs arrays x_train, y_train, x_test, y_test or an array 'series'"
                        % name)
    for key in CLASSIFICATION_KEYS:
        if key not in arrays:
            raise DataError("%s: missing array '%s'" % (name, key))
    x_train = _numeric(name, "x_train", arrays["x_train"])
    x_test = _numeric(name, "x_test", arrays["x_test"])
    y_train = _labels(name, "y_train", arrays["y_train"])
    y_test = _labels(name, "y_test", arrays["y_test"])
    for x_key, x, y_key, y in (("x_train", x_train, "y_train", y_train),
                               ("x_test", x_test, "y_test", y_test)):
        if x.ndim < 1 or len(x) == 0:
            raise DataError("%s: array '%s' has no samples" % (name, x_key))
        if len(x) != len(y):
            raise DataError("%s: '%s' has %d samples but '%s' has %d labels"
                            % (name, x_key, len(x), y_key, len(y)))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError("%s: x_train samples have shape %s but x_test samples %s"
                        % (name, x_train.shape[1:], x_test.shape[1:]))
    return UserData("classification", x_train=x_train, y_train=y_train, x_test=x_test,
                    y_test=y_test)
