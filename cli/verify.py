"""``spikeedge verify``: agreement between two forms of one model (exit 1 when under the
thresholds of ``measure/verify.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import typer

from ..errors import CheckFailed
from .common import BackendOpt, DataOpt, JsonOpt, LayoutOpt, emit, in_range, one_thread_pool, open_stepper, out_console, task_of


def verify(
    model: Path = typer.Argument(..., help="The form under test: bundle (.seb), .onnx, .tflite or checkpoint."),
    reference: Path = typer.Option(..., "--reference", help="The form it must agree with (usually the .seb bundle)."),
    task: str = typer.Option(..., "--task", help="mackey-glass, lorenz, rossler, digits, mnist or npz."),
    data: Optional[str] = DataOpt,
    layout: Optional[str] = LayoutOpt,
    samples: int = typer.Option(64, "--samples", callback=in_range(1, 10**6), help="Classification: test inputs compared step by step (open loop)."),
    repeats: int = typer.Option(30, "--repeats", callback=in_range(1, 1000), help="Forecast windows (NeuroBench: 30)."),
    backend: str = BackendOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Open-loop spike agreement per layer, closed-loop spikes and task metric of both forms,
    largest membrane difference; exit 1 when a threshold fails.

    Example: spikeedge verify model.onnx --reference model.seb --task mackey-glass --json
    """
    from ..measure.verify import verify as run_verify

    if samples < 1:
        from ..errors import SpikeedgeError

        raise SpikeedgeError("--samples: must be >= 1")
    m = open_stepper(model, backend)
    r = open_stepper(reference)
    one_thread_pool()
    spec = task_of(task, data=data, layout=layout, windows=repeats)
    report = run_verify(m, r, spec, samples=samples)
    result: Dict[str, Any] = {"model": str(model), "reference": str(reference), "task": task, **report}
    emit(result, as_json, human=_show)
    if not report["passed"]:
        failed = [k for k, ok in report["checks"].items() if not ok]
        raise CheckFailed("verify: %s below threshold (%s vs %s)" % (", ".join(failed), model, reference))


def _show(r: Dict[str, Any]) -> None:
    ol = r.get("open_loop")
    if ol:
        for name, a in ol["spike_agreement"].items():
            out_console.print("open-loop spike agreement %-12s %.5f" % (name, a), highlight=False, markup=False)
        out_console.print("largest membrane difference: %d state units (threshold 16384)" % ol["max_membrane_difference"], highlight=False)
        for name, a in r["closed_loop_spike_agreement"].items():
            out_console.print("closed-loop spike agreement %-10s %.5f" % (name, a), highlight=False, markup=False)
    elif r.get("note"):
        out_console.print(r["note"], highlight=False, markup=False)
    met = r["metric"]
    key = "accuracy" if "accuracy" in met["model"] else "smape"
    out_console.print("%s: model %.4f, reference %.4f" % (key, met["model"][key], met["reference"][key]), highlight=False)
    out_console.print("passed" if r["passed"] else "FAILED: " + ", ".join(k for k, ok in r["checks"].items() if not ok), highlight=False, markup=False)
