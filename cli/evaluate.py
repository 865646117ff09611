"""``spikeedge eval``: the task metric of a bundle or checkpoint on the task's test split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..runtime.errors import DataError
from ..tasks.protocols import classify, forecast_smape
from ..tasks.registry import load_task
from .common import BackendOpt, JsonOpt, emit, in_range, open_stepper


def evaluate(
    model: Path = typer.Argument(..., help="A bundle (.seb), step graph (.onnx, .tflite) or checkpoint (.ckpt.npz)."),
    task: str = typer.Option(..., "--task", help="mackey-glass, lorenz, rossler, digits, mnist or npz."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder or the .npz file of task 'npz'."),
    repeats: int = typer.Option(30, "--repeats", callback=in_range(1, 1000), help="Forecast windows (NeuroBench: 30)."),
    backend: str = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Task metric of a bundle or checkpoint on the task's test split.

    Example: spikeedge eval model.seb --task mackey-glass --json
    """
    stepper = open_stepper(model, backend)
    spec = load_task(task, data=data, repeats=repeats)
    t0 = time.perf_counter()
    try:
        metric = forecast_smape(stepper, spec.windows) if spec.kind == "forecast" else classify(stepper, spec.x_test, spec.y_test)
    except (DataError, ValueError) as exc:  # the task's inputs do not fit the model
        raise DataError("%s: does not fit --task %s: %s" % (model, task, str(exc).splitlines()[0])) from None
    emit({"model": str(model), "task": task, "backend": _backend_name(model, backend), **metric, "seconds": round(time.perf_counter() - t0, 3)}, as_json)


def _backend_name(model: Path, backend: str) -> str:
    from ..runtime.backends import SUFFIX

    return SUFFIX.get(model.suffix.lower(), "float-checkpoint") if backend == "auto" else backend
