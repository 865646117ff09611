"""Named tasks: the data, the split and the protocol a model is trained and scored with.

Two kinds. A *forecast* task is a series with NeuroBench-style windows (teacher-forced
training, autoregressive test, sMAPE). A *classify* task is a set of input sequences with labels
(the class is read at the last step, accuracy). Everything here is torch-free so that a board
can score a bundle on the same split the workstation used. Splits: ``docs/data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

from ..errors import DataError

TASKS = ("mackey-glass", "lorenz", "rossler", "digits", "mnist", "npz")


@dataclass
class ForecastTask:
    name: str
    series: np.ndarray  # (T,) or (T, d)
    windows: List[Any]  # each with train_x, train_y, test_x, test_y
    kind: str = "forecast"
    output: str = "sequence"

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

    @property
    def n_inputs(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def n_outputs(self) -> int:
        return self.n_classes


def _series_windows(series: np.ndarray, n_repeats: int, train: int, test: int, shift: float) -> List[Any]:
    from .mackey_glass import Window

    windows = []
    for k in range(n_repeats):
        s = int(np.floor(k * shift))
        e = s + train
        if e + test + 1 > len(series):
            raise DataError("series of %d points is too short for %d windows of %d+%d" % (len(series), n_repeats, train, test))
        windows.append(Window(s, series[s:e], series[s + 1 : e + 1], series[e : e + test], series[e + 1 : e + test + 1]))
    return windows


def _images_as_sequences(x: np.ndarray, steps: int) -> np.ndarray:
    """Flattened images shown as the same frame for ``steps`` time steps: a read-only broadcast
    view, not ``steps`` copies (MNIST's split would otherwise take about 0.8 GB)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.broadcast_to(flat[:, None, :], (len(flat), steps, flat.shape[1]))


def load_task(
    name: str,
    *,
    repeats: int = 30,
    steps: int = 16,
    tau: int = 17,
    data: Optional[str] = None,
    seed: int = 0,
) -> Any:
    """Build a task by name (``TASKS``). ``repeats``: forecast windows; ``steps``: time steps per
    image; ``data``: the MNIST folder or the user's ``.npz`` file."""
    if name == "mackey-glass":
        from .mackey_glass import mackey_glass_series, mackey_glass_windows

        series = mackey_glass_series(tau)  # tau = 17: the shipped file, checksum-checked
        return ForecastTask("mackey-glass", series, mackey_glass_windows(series, n_repeats=repeats))
    if name in ("lorenz", "rossler"):
        from .chaotic import lorenz, rossler

        raw = lorenz(3751, dt=0.02) if name == "lorenz" else rossler(3751, dt=0.25)
        series = (raw[:, 0] - raw[:, 0].mean()) / raw[:, 0].std() + 3.0  # x, unit std, positive
        return ForecastTask(name, series, _series_windows(series, repeats, 750, 750, 37.5))
    if name == "digits":
        from .images import load_digits_split

        xtr, ytr, xte, yte = load_digits_split(seed=seed)
        return ClassifyTask("digits", _images_as_sequences(xtr, steps), ytr, _images_as_sequences(xte, steps), yte, 10)
    if name == "mnist":
        from .images import load_mnist_split

        xtr, ytr, xte, yte = load_mnist_split(data, seed=seed)
        return ClassifyTask("mnist", _images_as_sequences(xtr, steps), ytr, _images_as_sequences(xte, steps), yte, 10)
    if name == "npz":
        return _npz_task(data, repeats, steps)
    raise DataError("unknown task %r (choose from %s)" % (name, ", ".join(TASKS)))


def _npz_task(path: Optional[str], repeats: int, steps: int) -> Any:
    from .user_data import load_npz

    if not path:
        raise DataError("task 'npz' needs --data FILE.npz")
    d = load_npz(path)
    if d.kind == "timeseries":
        series = np.asarray(d.series, np.float64)
        n_train = int(len(series) * (d.train_fraction or 0.5))
        n_test = len(series) - n_train - 1
        return ForecastTask("npz", series, _series_windows(series, 1, n_train, n_test, 0.0))
    x_train, x_test = (np.asarray(a, np.float64) for a in (d.x_train, d.x_test))
    if x_train.ndim != 3:  # not already (n, steps, inputs): show each sample as a constant frame
        x_train, x_test = _images_as_sequences(x_train, steps), _images_as_sequences(x_test, steps)
    n_classes = int(max(d.y_train.max(), d.y_test.max())) + 1
    return ClassifyTask("npz", x_train, np.asarray(d.y_train, np.int64), x_test, np.asarray(d.y_test, np.int64), n_classes)
