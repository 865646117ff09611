"""The two kinds of task (forecast, classify) and how their data is shaped: the dataclasses the
registry builds and the user-data loaders fill. Kept apart from ``registry`` so that a loader can
build a task without importing the registry that dispatches to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from ..errors import DataError


@dataclass
class ForecastTask:
    name: str
    series: np.ndarray  # (T,) or (T, d)
    windows: List[Any]  # each with train_x, train_y, test_x, test_y
    kind: str = "forecast"
    output: str = "sequence"
    source: Dict[str, Any] = field(default_factory=dict)  # what the data was: task, file, sha256, how read
    description: str = ""  # how the data was read, one line for the user

    @property
    def n_inputs(self) -> int:
        return 1 if self.series.ndim == 1 else self.series.shape[1]

    n_outputs = n_inputs


@dataclass
class ClassifyTask:
    name: str
    x_train: np.ndarray  # (n, steps, n_inputs) real-valued, encoded by the model
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    kind: str = "classify"
    output: str = "last"
    source: Dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def n_outputs(self) -> int:
        return self.n_classes


def _series_windows(series: np.ndarray, n_repeats: int, train: int, test: int, shift: float) -> List[Any]:
    """``n_repeats`` windows of ``train`` teacher-forced + ``test`` forecast points, window k
    starting at ``floor(k * shift)`` (NeuroBench's protocol, any series)."""
    from .mackey_glass import Window

    if n_repeats < 1 or train < 1 or test < 1 or not shift >= 0:
        raise DataError("windows: need at least 1 window of at least 1+1 points and a shift >= 0 (got %s of %s+%s, shift %s)"
                        % (n_repeats, train, test, shift))
    need = int(np.floor((n_repeats - 1) * shift)) + train + test + 1
    if need > len(series):
        raise DataError("series of %d points is too short for %d windows of %d+%d points (shift %g): they need %d; "
                        "ask for fewer windows or shorter ones" % (len(series), n_repeats, train, test, shift, need))
    windows = []
    for k in range(n_repeats):
        s = int(np.floor(k * shift))
        e = s + train
        windows.append(Window(s, series[s:e], series[s + 1 : e + 1], series[e : e + test], series[e + 1 : e + test + 1]))
    return windows


def _images_as_sequences(x: np.ndarray, steps: int) -> np.ndarray:
    """Flattened images shown as the same frame for ``steps`` time steps: a read-only broadcast
    view, not ``steps`` copies (MNIST's split would otherwise take about 0.8 GB)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.broadcast_to(flat[:, None, :], (len(flat), steps, flat.shape[1]))
