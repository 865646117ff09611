"""How a model is scored on a task, for any model form that can be stepped.

A *stepper* is anything with ``start(batch, first_frame=None)`` and ``step(x) -> y`` where
``x`` is (batch, n_inputs) and ``y`` (batch, n_outputs): the runtime's ``Session``, the offline
float model and the offline integer reference all are. The protocols below only call those two
methods, so every form of a model is scored by the same code.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from .metrics import accuracy, smape


def forecast_windows(stepper: Any, windows: Sequence[Any]) -> np.ndarray:
    """Autoregressive forecasts for NeuroBench-style windows, all windows as one batch.

    Each stream is teacher-forced through its ``train_x`` (one-step inputs), receives the true
    ``test_x[0]``, and from then on receives its own previous output. Returns predictions
    (n_windows, len(test_y), d).
    """
    batch = len(windows)
    train = np.stack([w.train_x for w in windows]).reshape(batch, len(windows[0].train_x), -1)
    n_test = len(windows[0].test_y)
    stepper.start(batch, train[:, 0])
    for t in range(train.shape[1]):
        stepper.step(train[:, t])
    y = stepper.step(np.stack([w.test_x[0] for w in windows]).reshape(batch, -1).astype(np.float64))
    preds = np.empty((batch, n_test, train.shape[2]))
    for t in range(n_test):
        preds[:, t] = y
        if t + 1 < n_test:
            y = stepper.step(preds[:, t])
    return preds


def forecast_smape(stepper: Any, windows: Sequence[Any]) -> dict:
    """Mean sMAPE over the windows (NeuroBench's score) plus its spread."""
    preds = forecast_windows(stepper, windows)
    per = np.array([smape(np.ravel(w.test_y), np.ravel(p)) for w, p in zip(windows, preds)])
    return {"smape": float(per.mean()), "smape_std": float(per.std()), "windows": len(per)}


def _static(chunk: np.ndarray, steps: int) -> bool:
    """True when the first ``steps`` frames of every sequence are the same (a static image)."""
    head = chunk[:, :steps]
    return head.shape[1] == steps and bool(np.all(head == head[:, :1]))


def classify(stepper: Any, frames: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> dict:
    """Accuracy of a sequence classifier: the class is the argmax of the last step's output.

    ``frames`` (n, steps, n_inputs) real-valued inputs, encoded by the model itself. A stepper
    with ``steps_per_inference`` (a conv SNN: T steps of the same image) runs that many steps.
    """
    preds: List[np.ndarray] = []
    for i in range(0, len(frames), batch_size):
        chunk = frames[i : i + batch_size]
        # a model with its own number of steps per input (a conv SNN's T) runs that many
        steps = getattr(stepper, "steps_per_inference", None) or chunk.shape[1]
        infer = getattr(stepper, "infer_images", None)
        if infer is not None and steps == stepper.steps_per_inference and _static(chunk, steps):
            # the same image every step: the session's whole-run path (the conv runtime goes layer
            # by layer over all steps; the same integers as stepping)
            y = infer(chunk[:, 0])
        else:
            stepper.start(len(chunk), chunk[:, 0])
            for t in range(steps):
                y = stepper.step(chunk[:, t])
        preds.append(np.argmax(y, axis=1))
    return {"accuracy": float(accuracy(labels, np.concatenate(preds)))}
