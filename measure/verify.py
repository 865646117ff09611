"""Agreement between two forms of one model (bundle, ONNX, TFLite, or a float checkpoint):
what ``spikeedge verify`` reports and the conformance tests assert.

* **Open loop**: at every step both models start from the *reference's* state (``get_state`` /
  ``set_state``, integer units) and take the same input; the spikes they emit are compared per
  layer, and the largest membrane difference is recorded over the neurons whose spikes agree
  (where they differ, one membrane was reset and the difference is the threshold: the spike
  agreement counts those). The state is synchronised between steps, not between layers: a
  spike that flips in one layer is an input the next layer sees in the same step, so later
  layers' membrane differences include such flips (``membrane_difference_per_layer``). This isolates per-step arithmetic
  from chaos: a single flipped spike in a free run changes everything after it.
* **Closed loop**: both run freely on the same inputs; spike agreement per layer (informative:
  it falls with any flip) and the task metric of each on the task's test split.

Thresholds (``THRESHOLDS``): open-loop spike agreement >= 99.5% in every layer; task metric
within 1 point of accuracy or 5% relative sMAPE. Float checkpoints have no integer state:
only the closed-loop metric is compared for them.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from ..tasks.protocols import classify, forecast_smape

THRESHOLDS = {"open_loop_spike_agreement": 0.995, "accuracy_points": 1.0, "smape_relative": 0.05}


def _has_state(model: Any) -> bool:
    return hasattr(model, "get_state") and hasattr(model, "spike_history")


def _layer_names(model: Any) -> List[str]:
    return list(model.spike_counts)


def open_loop(model: Any, reference: Any, xs: np.ndarray, steps: Optional[int] = None) -> Dict[str, Any]:
    """Per-layer open-loop spike agreement and the largest membrane difference over inputs
    ``xs``: recurrent (batch, steps, n_inputs), or conv images (batch, C, H, W) for ``steps``
    time steps each."""
    conv = steps is not None
    batch = xs.shape[0]
    first = None if conv else xs[:, 0]
    for m in (model, reference):
        m.record_spikes = True
        m.start(batch, first)
    names = _layer_names(reference)
    equal = {n: 0 for n in names}
    total = {n: 0 for n in names}
    max_mem = {n: 0 for n in names}
    n_steps = steps if conv else xs.shape[1]
    for t in range(n_steps):
        x = xs if conv else xs[:, t]
        model.set_state(reference.get_state())
        reference.step(x)
        model.step(x)
        a, b = reference.get_state(), model.get_state()
        for i, n in enumerate(names):
            sr = np.asarray(reference.spike_history[i][-1]) != 0
            sm = np.asarray(model.spike_history[i][-1]) != 0
            same = sr == sm
            equal[n] += int(same.sum())
            total[n] += sr.size
            diff = np.abs(a["mem%d" % i] - b["mem%d" % i])[same.reshape(a["mem%d" % i].shape)]
            max_mem[n] = max(max_mem[n], int(diff.max()) if diff.size else 0)
    agreement = {n: equal[n] / max(1, total[n]) for n in names}
    return {"spike_agreement": agreement, "min_spike_agreement": min(agreement.values()) if agreement else 1.0,
            "max_membrane_difference": max(max_mem.values()) if max_mem else 0, "membrane_difference_per_layer": max_mem,
            "steps": n_steps, "batch": batch}


def _free_run(m: Any, xs: np.ndarray, steps: Optional[int]) -> None:
    conv = steps is not None
    m.record_spikes = True
    m.start(xs.shape[0], None if conv else xs[:, 0])
    for t in range(steps if conv else xs.shape[1]):  # type: ignore[arg-type]
        m.step(xs if conv else xs[:, t])


def closed_loop_spikes(model: Any, reference: Any, xs: np.ndarray, steps: Optional[int] = None) -> Dict[str, float]:
    """Per-layer spike agreement of two free runs on the same inputs."""
    _free_run(reference, xs, steps)
    _free_run(model, xs, steps)
    out = {}
    for i, n in enumerate(_layer_names(reference)):
        a = np.array([np.asarray(s) != 0 for s in reference.spike_history[i]])
        b = np.array([np.asarray(s) != 0 for s in model.spike_history[i]])
        out[n] = float((a == b).mean()) if a.size else 1.0
    return out


def task_metric(stepper: Any, task: Any) -> Dict[str, Any]:
    t0 = time.perf_counter()
    if task.kind == "forecast":
        m = forecast_smape(stepper, task.windows)
    else:
        m = classify(stepper, task.x_test, task.y_test)
    m["seconds"] = round(time.perf_counter() - t0, 3)
    return m


def verify(model: Any, reference: Any, task: Any, samples: int = 64) -> Dict[str, Any]:
    """The whole comparison of ``model`` against ``reference`` on ``task``; ``passed`` says
    whether every threshold holds (the CLI exits 1 otherwise)."""
    conv_steps = getattr(reference, "steps_per_inference", None) or getattr(model, "steps_per_inference", None)
    if task.kind == "forecast":
        xs = np.stack([w.train_x for w in task.windows]).reshape(len(task.windows), len(task.windows[0].train_x), -1)
    else:
        xs = np.asarray(task.x_test[:samples], np.float64)
    report: Dict[str, Any] = {"thresholds": dict(THRESHOLDS), "checks": {}}
    comparable = _has_state(model) and _has_state(reference)
    if comparable:
        if conv_steps and conv_steps > 1:
            images = xs[:, 0] if xs.ndim == 3 else xs
            report["open_loop"] = open_loop(model, reference, images, steps=conv_steps)
            report["closed_loop_spike_agreement"] = closed_loop_spikes(model, reference, images, steps=conv_steps)
        else:
            report["open_loop"] = open_loop(model, reference, xs)
            report["closed_loop_spike_agreement"] = closed_loop_spikes(model, reference, xs)
        ok = report["open_loop"]["min_spike_agreement"] >= THRESHOLDS["open_loop_spike_agreement"]
        report["checks"]["open_loop_spike_agreement"] = ok
    else:
        report["open_loop"] = None
        report["note"] = "a float checkpoint has no integer state: open-loop spikes are not compared, only the task metric"
    for m in (model, reference):
        if hasattr(m, "record_spikes"):
            m.record_spikes = False
    a, b = task_metric(model, task), task_metric(reference, task)
    report["metric"] = {"model": a, "reference": b}
    if "accuracy" in a:
        diff = 100 * abs(a["accuracy"] - b["accuracy"])
        report["metric"]["difference_points"] = diff
        report["checks"]["task_metric"] = diff <= THRESHOLDS["accuracy_points"]
    else:
        rel = abs(a["smape"] - b["smape"]) / max(1e-12, abs(b["smape"]))
        report["metric"]["relative_difference"] = rel
        report["checks"]["task_metric"] = rel <= THRESHOLDS["smape_relative"]
    report["passed"] = all(report["checks"].values())
    return report
