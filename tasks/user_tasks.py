"""A task from the user's ``.npz`` file (``user_data.load_npz``): how its arrays are read.

Classification ``x`` arrays can be laid out two ways, and a 3-D array alone cannot say which:

- ``ntc``: (samples, steps, inputs), what the models step through;
- ``nct``: (samples, channels, length), the UCR/UEA archives as aeon and sktime ship them.

Without a layout a 3-D ``x`` is read as ``ntc`` only when it has more steps than inputs; otherwise
(``(n, 1, 150)`` is a univariate series of 150 points in ``nct``, not one step of 150 inputs) it
is refused with a one-line hint. A 2-D ``x`` with a layout is one univariate series per sample
(``(n, length)``); without one each sample is a flat frame shown for ``steps`` steps. The task's
``description`` says how the file was read; its ``source`` records the file and its sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DataError


def file_sha256(path: Any) -> str:
    """The sha256 of a user's data file, read in 1 MiB pieces (the file may be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def as_sequences(x: np.ndarray, layout: Optional[str], name: str) -> np.ndarray:
    """``x`` (samples first) as (samples, steps, inputs) by ``layout``; DataError when a 3-D
    ``x`` is ambiguous and no layout is given."""
    if layout not in (None, "nct", "ntc"):
        raise DataError("--layout: %r is not one of nct, ntc" % (layout,))
    if x.ndim == 3:
        if layout is None and x.shape[1] <= x.shape[2]:
            raise DataError("%s: x_train has shape %s: (samples, channels, length) as in UCR/UEA files (--layout nct) "
                            "or (samples, steps, inputs) (--layout ntc)? Say which with --layout" % (name, tuple(x.shape)))
        return np.swapaxes(x, 1, 2) if layout == "nct" else x
    if x.ndim == 2 and layout is not None:
        return x[:, :, None]  # one univariate series per sample
    if layout is not None:
        raise DataError("--layout %s: x_train has shape %s; a layout applies to (samples, length) or 3-D arrays" % (layout, tuple(x.shape)))
    return x


def npz_task(path: Optional[str], steps: int, layout: Optional[str], windows: Any) -> Any:
    """The ``npz`` task: a classification set or a forecast series, with ``source`` (file,
    sha256, layout, windows) and a one-line ``description`` of how it was read."""
    from .kinds import ClassifyTask, ForecastTask, _images_as_sequences
    from .user_data import load_npz

    if not path:
        raise DataError("task 'npz' needs --data FILE.npz")
    d = load_npz(path)
    name = Path(path).name
    source = {"task": "npz", "path": str(Path(path).resolve()), "sha256": file_sha256(Path(path)), "layout": layout}
    if d.kind == "timeseries":
        if layout is not None:
            raise DataError("--layout: %s holds a series (T,) or (T, d), read as time by channel; --layout is for classification x arrays" % name)
        series = np.asarray(d.series, np.float64)
        n = len(series)
        if windows.count is None and windows.train is None and windows.test is None:
            n_train = int(n * (d.train_fraction or 0.5))
            default = (1, n_train, n - n_train - 1, 0.0)
        else:  # windows of a quarter of the series, spread evenly over it
            count = windows.count or 1
            train = windows.train or n // 4
            test = windows.test or n // 4
            default = (count, train, test, max(0.0, (n - 1 - train - test) / max(count - 1, 1)))
        wins = windows.cut(series, default)
        task = ForecastTask("npz", series, wins)
        source["windows"] = {"count": len(wins), "train": len(wins[0].train_x), "test": len(wins[0].test_y),
                             "shift": float(wins[1].start - wins[0].start) if len(wins) > 1 else 0.0}
        task.description = "%s: a series of %d points x %d channels; %d window(s) of %d teacher-forced + %d forecast points" % (
            name, n, task.n_inputs, len(wins), len(wins[0].train_x), len(wins[0].test_y))
        task.source = source
        return task
    x_train = as_sequences(np.asarray(d.x_train, np.float64), layout, name)
    x_test = as_sequences(np.asarray(d.x_test, np.float64), layout, name)
    how = "read as %s" % layout if layout else "read as (samples, steps, inputs)"
    if x_train.ndim != 3:  # flat samples: each shown as a constant frame
        x_train, x_test = _images_as_sequences(x_train, steps), _images_as_sequences(x_test, steps)
        how = "flat samples shown as constant frames for %d steps" % steps
    n_classes = int(max(d.y_train.max(), d.y_test.max())) + 1
    task = ClassifyTask("npz", x_train, np.asarray(d.y_train, np.int64), x_test, np.asarray(d.y_test, np.int64), n_classes)
    task.description = "%s: x_train %s %s: %d steps x %d inputs, %d classes, %d train / %d test samples" % (
        name, tuple(d.x_train.shape), how, x_train.shape[1], x_train.shape[2], n_classes, len(x_train), len(x_test))
    task.source = source
    return task
