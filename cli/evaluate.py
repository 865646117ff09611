"""``spikeedge eval``: the task metric of a bundle or checkpoint on the task's test split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import DataError
from ..tasks.protocols import classify, forecast_smape
from .common import (
    TASKS_HELP,
    BackendOpt,
    DataOpt,
    JsonOpt,
    LayoutOpt,
    TauOpt,
    WindowShiftOpt,
    WindowsOpt,
    WindowTestOpt,
    WindowTrainOpt,
    check_fits,
    emit,
    in_range,
    one_thread_pool,
    open_stepper,
    task_of,
    warn_untrained,
)


def evaluate(
    model: Path = typer.Argument(..., help="A bundle (.seb), step graph (.onnx, .tflite) or checkpoint (.ckpt.npz)."),
    task: str = typer.Option(..., "--task", help=TASKS_HELP),
    data: Optional[str] = DataOpt,
    layout: Optional[str] = LayoutOpt,
    tau: int = TauOpt,
    windows: Optional[int] = WindowsOpt,
    window_train: Optional[int] = WindowTrainOpt,
    window_test: Optional[int] = WindowTestOpt,
    window_shift: Optional[float] = WindowShiftOpt,
    backend: str = BackendOpt,
    batch_size: int = typer.Option(256, "--batch-size", callback=in_range(1, 1 << 20), help="Test inputs run at once (classification tasks)."),
    as_json: bool = JsonOpt,
) -> None:
    """Task metric of a bundle or checkpoint on the task's test split.

    Example: spikeedge eval model.seb --task mackey-glass --json

    Example: spikeedge eval mg30.ckpt.npz --task mackey-glass --tau 30 --windows 30
    """
    one_thread_pool()
    stepper = open_stepper(model, backend)
    spec = task_of(task, data=data, layout=layout, tau=tau, windows=windows, window_train=window_train,
                   window_test=window_test, window_shift=window_shift)
    check_fits(model, stepper, spec, task)
    warn_untrained(model, stepper)
    t0 = time.perf_counter()
    try:
        metric = forecast_smape(stepper, spec.windows) if spec.kind == "forecast" else classify(stepper, spec.x_test, spec.y_test, batch_size=batch_size)
    except (DataError, ValueError) as exc:  # the task's inputs do not fit the model
        raise DataError("%s: does not fit --task %s: %s" % (model, task, str(exc).splitlines()[0])) from None
    emit({"model": str(model), "task": task, "backend": _backend_name(model, backend), **metric, "seconds": round(time.perf_counter() - t0, 3)}, as_json)


def _backend_name(model: Path, backend: str) -> str:
    from ..runtime.backends import SUFFIX

    return SUFFIX.get(model.suffix.lower(), "float-checkpoint") if backend == "auto" else backend
