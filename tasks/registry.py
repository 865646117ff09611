"""Named tasks: the data, the split and the protocol a model is trained and scored with.

Two kinds. A *forecast* task is a series with NeuroBench-style windows (teacher-forced
training, autoregressive test, sMAPE). A *classify* task is a set of input sequences with labels
(the class is read at the last step, accuracy). Everything here is torch-free so that a board
can score a bundle on the same split the workstation used. Splits: ``docs/data.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from ..errors import DataError

from .kinds import ClassifyTask, ForecastTask, _images_as_sequences, _series_windows  # noqa: F401 (re-exported)

TASKS = ("mackey-glass", "lorenz", "rossler", "sunspots", "digits", "mnist", "mnist1d", "npz")


@dataclass(frozen=True)
class Windows:
    """How a series is cut into forecast windows; ``None`` fields take the task's default
    (built-in series: NeuroBench's 30 windows of 750 + 750 points, shift 37.5; a user series:
    one window split at its ``train_fraction``, or, given a count or a length, windows of a
    quarter of the series each spread evenly over it)."""

    count: Optional[int] = None   # windows (NeuroBench: 30)
    train: Optional[int] = None   # teacher-forced points per window
    test: Optional[int] = None    # forecast points per window
    shift: Optional[float] = None  # start of window k: floor(k * shift)

    def cut(self, series: np.ndarray, default: Tuple[int, int, int, float]) -> List[Any]:
        count = self.count if self.count is not None else default[0]
        train = self.train if self.train is not None else default[1]
        test = self.test if self.test is not None else default[2]
        shift = self.shift if self.shift is not None else default[3]
        return _series_windows(series, count, train, test, shift)


LAYOUTS = ("nct", "ntc")


def load_task(
    name: str,
    *,
    repeats: Optional[int] = None,
    steps: int = 16,
    tau: int = 17,
    data: Optional[str] = None,
    seed: int = 0,
    layout: Optional[str] = None,
    windows: Optional[Windows] = None,
) -> Any:
    """Build a task by name (``TASKS``). ``repeats``: forecast windows (the same as
    ``windows.count``); ``steps``: time steps per image; ``tau``: Mackey-Glass delay (17..30);
    ``data``: the MNIST folder or the user's ``.npz`` file; ``layout``: how a user's 3-D ``x``
    is laid out (``nct``: samples, channels, length, as UCR/UEA files from aeon and sktime;
    ``ntc``: samples, steps, inputs); ``windows``: how forecast series are cut."""
    win = windows or Windows()
    if repeats is not None:
        win = Windows(repeats, win.train, win.test, win.shift)
    if name == "mackey-glass":
        from .mackey_glass import mackey_glass_series

        series = mackey_glass_series(tau)  # tau = 17: the shipped file, checksum-checked
        task = ForecastTask("mackey-glass", series, win.cut(series, (30, 750, 750, 37.5)))
        task.source = {"task": name, "tau": tau}
        return task
    if name in ("lorenz", "rossler"):
        from .chaotic import lorenz, rossler

        raw = lorenz(3751, dt=0.02) if name == "lorenz" else rossler(3751, dt=0.25)
        series = (raw[:, 0] - raw[:, 0].mean()) / raw[:, 0].std() + 3.0  # x, unit std, positive
        task = ForecastTask(name, series, win.cut(series, (30, 750, 750, 37.5)))
        task.source = {"task": name}
        return task
    if name == "sunspots":
        from .series import SUNSPOT_SCALE, SUNSPOT_WINDOWS, sunspots_series

        series = sunspots_series() / SUNSPOT_SCALE
        task = ForecastTask("sunspots", series, win.cut(series, SUNSPOT_WINDOWS))
        task.source = {"task": name, "scale": SUNSPOT_SCALE}
        return task
    if name == "mnist1d":
        from .series import mnist1d_task

        return mnist1d_task()
    if name == "digits":
        from .images import load_digits_split

        xtr, ytr, xte, yte = load_digits_split(seed=seed)
        return ClassifyTask("digits", _images_as_sequences(xtr, steps), ytr, _images_as_sequences(xte, steps), yte, 10)
    if name == "mnist":
        from .images import load_mnist_split

        xtr, ytr, xte, yte = load_mnist_split(data, seed=seed)
        return ClassifyTask("mnist", _images_as_sequences(xtr, steps), ytr, _images_as_sequences(xte, steps), yte, 10)
    if name == "npz":
        from .user_tasks import npz_task

        return npz_task(data, steps, layout, win)
    raise DataError("unknown task %r (choose from %s)" % (name, ", ".join(TASKS)))
