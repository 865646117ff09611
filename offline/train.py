"""Training an HRSNN: readout-only ridge regression, or BPTT with a surrogate gradient.

Both keep the recurrent sparsity mask fixed (pruning decides the graph; training never
regrows it). Ridge fits the dense readout on the exponential traces of the untrained network
(reservoir style, seconds); for forecasting its regularisation is chosen by the closed-loop
(autoregressive) error on the last part of the training span, the quantity the task scores.
BPTT trains input, recurrent and readout weights through time with the surrogate spike.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ..runtime.encoders import Encoder
from ..tasks.mackey_glass import Window
from ..tasks.metrics import smape
from ..tasks.protocols import forecast_windows
from .hrsnn import HRSNN
from .quantize import encoder_record

Progress = Optional[Callable[[int, int, str], None]]


class FloatStepper:
    """The float model behind the ``start``/``step`` interface of ``tasks.protocols``."""

    def __init__(self, model: HRSNN) -> None:
        self.model = model
        self.spec = encoder_record(model.cfg, 1.0, 16)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.encoder = Encoder(self.spec, batch)
        self.encoder.reset(first_frame)
        self.carry = self.model.initial_state(batch)
        self.params = self.model.lif_params()
        self.batch = batch

    def frame(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, np.float64).reshape(self.batch, -1)
        events = x if self.model.cfg.encoder == "direct" else self.encoder(x)
        return torch.tensor(events, dtype=torch.float32)  # a copy: inputs may be read-only views

    @torch.no_grad()
    def step(self, x: np.ndarray) -> np.ndarray:
        _, trace, self.carry = self.model.step(self.frame(x), self.carry, self.params)
        return self.model.readout(trace).double().numpy()


def encode_sequences(model: HRSNN, xs: np.ndarray) -> torch.Tensor:
    """Encode real inputs (batch, steps, n_inputs) into the float model's input frames."""
    xs = np.asarray(xs, np.float64)
    xs = xs.reshape(xs.shape[0], xs.shape[1], -1)
    stepper = FloatStepper(model)
    stepper.start(xs.shape[0], xs[:, 0])
    return torch.stack([stepper.frame(xs[:, t]) for t in range(xs.shape[1])], dim=1)


@torch.no_grad()
def collect_traces(model: HRSNN, xs: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Exponential traces (batch, steps, neurons) of the model driven by real inputs ``xs``."""
    out = []
    for i in range(0, len(xs), chunk):
        _, traces, _, _ = model(encode_sequences(model, xs[i : i + chunk]))
        out.append(traces.double().numpy())
    return np.concatenate(out)


def ridge(features: np.ndarray, targets: np.ndarray, lam: float):
    """Ridge regression with an unpenalised intercept: returns (weights (out, in), bias (out,))."""
    mu_f, mu_y = features.mean(0), targets.mean(0)
    f, y = features - mu_f, targets - mu_y
    gram = f.T @ f
    gram[np.diag_indices_from(gram)] += lam * len(f)
    w = np.linalg.solve(gram, f.T @ y).T
    return w, mu_y - w @ mu_f


def _set_readout(model: HRSNN, w: np.ndarray, b: np.ndarray) -> None:
    with torch.no_grad():
        model.readout.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        model.readout.bias.copy_(torch.as_tensor(b, dtype=torch.float32))


def train_ridge_forecast(
    model: HRSNN, windows: Sequence[Any], washout: int = 100, val_steps: int = 150,
    lambdas: Sequence[float] = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
) -> Dict[str, Any]:
    """Fit the readout on the first window's teacher-forced span (one-step targets).

    Each ``lambda`` is fitted on the span minus its last ``val_steps`` points and scored by the
    sMAPE of an autoregressive forecast of those points; the best is refitted on the whole span.
    """
    t0 = time.time()
    w0 = windows[0]
    x, y = np.asarray(w0.train_x, np.float64), np.asarray(w0.train_y, np.float64)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    traces = collect_traces(model, x[None])[0]
    fit_end = len(x) - val_steps
    val_window = Window(0, x[:fit_end], y[:fit_end], x[fit_end:], y[fit_end:])
    scores = {}
    for lam in lambdas:
        w, b = ridge(traces[washout:fit_end], y[washout:fit_end], lam)
        _set_readout(model, w, b)
        pred = forecast_windows(FloatStepper(model), [val_window])[0]
        scores[lam] = smape(np.ravel(val_window.test_y), np.ravel(pred[: len(val_window.test_y)]))
    best = min(scores, key=lambda k: scores[k])
    w, b = ridge(traces[washout:], y[washout:], best)
    _set_readout(model, w, b)
    return {
        "readout": "ridge",
        "lambda": best,
        "validation_smape": {str(k): round(v, 4) for k, v in scores.items()},
        "washout": washout,
        "train_seconds": round(time.time() - t0, 3),
    }


def train_ridge_classify(model: HRSNN, x_train: np.ndarray, y_train: np.ndarray, n_classes: int, lam: float = 1e-3) -> Dict[str, Any]:
    """Fit the readout on the last-step traces to one-hot targets."""
    t0 = time.time()
    feats = collect_traces(model, x_train)[:, -1]
    onehot = np.eye(n_classes)[np.asarray(y_train, np.int64)]
    w, b = ridge(feats, onehot, lam)
    _set_readout(model, w, b)
    return {"readout": "ridge", "lambda": lam, "train_seconds": round(time.time() - t0, 3)}


def train_bptt(
    model: HRSNN, task: Any, epochs: int = 10, lr: float = 2e-3, batch_size: int = 64,
    seed: int = 0, progress: Progress = None,
) -> Dict[str, Any]:
    """Train all weights through time with the surrogate gradient, mask fixed.

    Forecast tasks: mean squared one-step error, teacher forced, on chunks of the first
    window's training span. Classify tasks: cross-entropy of the last step's output.
    """
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if task.kind == "forecast":
        w0 = task.windows[0]
        x = np.asarray(w0.train_x, np.float64).reshape(1, len(w0.train_x), -1)
        y = torch.as_tensor(np.asarray(w0.train_y, np.float64).reshape(1, len(w0.train_y), -1), dtype=torch.float32)
        frames = encode_sequences(model, x)
        # Start from the ridge solution: BPTT then refines every weight.
        train_ridge_forecast(model, task.windows)
    else:
        frames = encode_sequences(model, task.x_train)
        labels = torch.as_tensor(task.y_train, dtype=torch.long)
    losses = []
    for epoch in range(epochs):
        if task.kind == "forecast":
            out, _, _, _ = model(frames)
            loss = torch.mean((out[:, 100:] - y[:, 100:]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = loss.item()
        else:
            order = torch.randperm(len(frames), generator=gen)
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                out, _, _, _ = model(frames[idx])
                loss = torch.nn.functional.cross_entropy(out[:, -1], labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx) / len(order)
        with torch.no_grad():
            model.w_rec.mul_(model.mask)  # the fixed sparsity mask: pruned synapses stay zero
        losses.append(round(total, 6))
        if progress:
            progress(epoch + 1, epochs, "loss %.4g" % total)
    return {"readout": "bptt", "epochs": epochs, "lr": lr, "losses": losses, "train_seconds": round(time.time() - t0, 3)}
