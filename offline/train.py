"""Training an HRSNN: readout-only ridge regression, or BPTT with a surrogate gradient.

Both keep the recurrent sparsity mask fixed (pruning decides the graph; training never
regrows it). Ridge fits the dense readout on the exponential traces of the untrained network
(reservoir style, seconds); for forecasting its regularisation is chosen by the closed-loop
(autoregressive) error on the last part of the training span, the quantity the task scores.
BPTT trains input, recurrent and readout weights through time with the surrogate spike.
"""

from __future__ import annotations

import copy
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
    """The float model behind the ``start``/``step`` interface of ``tasks.protocols``: no
    autograd, the masked recurrent weights formed once per ``start`` (not every step), every
    window of a batch stepped together."""

    def __init__(self, model: HRSNN) -> None:
        self.model = model
        self.spec = encoder_record(model.cfg, 1.0, 16)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.encoder = Encoder(self.spec, batch)
        self.encoder.reset(first_frame)
        self.carry = self.model.initial_state(batch)
        with torch.no_grad():
            self.params = self.model.lif_params()
            self.w_rec_t = self.model.effective_w_rec().T.contiguous()
        self.batch = batch
        self.past = [self.carry[2]] * max(self.model.cfg.readout_delays)  # [k]: the traces k + 1 steps ago

    def frame(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, np.float64).reshape(self.batch, -1)
        events = x if self.model.cfg.encoder == "direct" else self.encoder(x)
        return torch.tensor(events, dtype=torch.float32)  # a copy: inputs may be read-only views

    @torch.no_grad()
    def step(self, x: np.ndarray) -> np.ndarray:
        prev = self.carry[2]
        _, trace, self.carry = self.model.step(self.frame(x), self.carry, self.params, self.w_rec_t)
        delays = self.model.cfg.readout_delays
        if delays == (0,):
            return self.model.readout(trace).double().numpy()
        self.past = [prev] + self.past[:-1]
        history = [trace] + self.past
        return self.model.readout(torch.cat([history[d] for d in delays], dim=1)).double().numpy()


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
    model.set_readout_delays((0,))  # this readout reads the current traces (a network trained with taps may come in)
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


def validation_split(n: int, fraction: float = 0.2, seed: int = 0):
    """(fit, validation) indices of ``n`` training samples: a seeded random ``fraction`` (at
    least one sample, and at least one left to fit) is held out for every training choice."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(n * fraction))), n - 1) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _set_trace(model: HRSNN, tau: float) -> None:
    model.cfg.tau_trace = float(tau)


def train_ridge_classify(
    model: HRSNN, x_train: np.ndarray, y_train: np.ndarray, n_classes: int,
    lambdas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), seed: int = 0,
) -> Dict[str, Any]:
    """Fit the readout on the last-step traces to one-hot targets.

    Two readouts are compared on a validation split of the training data: the model's short
    trace read at the last step, and a trace as long as the sequence (``tau_trace`` = steps), whose
    last value sums the whole sequence's spikes with exponential weights (a readout over the
    whole sequence in the same int8 bundle format). With ``lambda``, the best on validation
    accuracy is refitted on all the training data."""
    t0 = time.time()
    model.set_readout_delays((0,))  # this readout reads the current traces (a network trained with taps may come in)
    y = np.asarray(y_train, np.int64)
    onehot = np.eye(n_classes)[y]
    fit, val = validation_split(len(y), seed=seed)
    steps = int(np.shape(x_train)[1])
    short = float(model.cfg.tau_trace)
    scores: Dict[str, float] = {}
    best = (-1.0, short, lambdas[0])
    for tau in sorted({short, float(max(short, steps))}):
        _set_trace(model, tau)
        feats = collect_traces(model, x_train)[:, -1]
        for lam in lambdas:
            if len(val):
                w, b = ridge(feats[fit], onehot[fit], lam)
                acc = float(np.mean(np.argmax(feats[val] @ w.T + b, axis=1) == y[val]))
            else:
                acc = 0.0
            scores["tau_trace=%g,lambda=%g" % (tau, lam)] = round(acc, 4)
            if acc > best[0]:
                best = (acc, tau, lam)
    _, tau, lam = best
    _set_trace(model, tau)
    feats = collect_traces(model, x_train)[:, -1]
    w, b = ridge(feats, onehot, lam)
    _set_readout(model, w, b)
    return {"readout": "ridge", "lambda": lam, "tau_trace": tau, "pool": "sequence" if tau > short else "last",
            "validation_accuracy": scores, "validation_samples": int(len(val)), "train_seconds": round(time.time() - t0, 3)}


def _classify_eval(model: HRSNN, frames: torch.Tensor, labels: torch.Tensor, batch_size: int = 256):
    """(cross-entropy, accuracy) of the last step's output, no autograd."""
    with torch.no_grad():
        outs = torch.cat([model(frames[i : i + batch_size])[0][:, -1] for i in range(0, len(frames), batch_size)])
        return float(torch.nn.functional.cross_entropy(outs, labels)), float((outs.argmax(1) == labels).float().mean())


def train_bptt(
    model: HRSNN, task: Any, epochs: int = 30, lr: float = 2e-3, batch_size: int = 64,
    seed: int = 0, progress: Progress = None, patience: int = 5,
) -> Dict[str, Any]:
    """Train all weights through time with the surrogate gradient, mask fixed, for at most
    ``epochs`` epochs with early stopping on held-out training data.

    Classify tasks: 20% of the training samples are held out (``validation_split``); the readout
    (short trace or sequence-long trace, ``train_ridge_classify``) and its ridge start are chosen
    on them, then cross-entropy of the last step's output is minimised on the rest, and the
    weights of the epoch with the best validation loss are kept (stop after ``patience`` epochs
    without improvement). Forecast tasks: mean squared one-step error, teacher forced, on the
    first window's training span minus its last 150 points, starting from the ridge solution;
    the epoch with the best autoregressive sMAPE on those 150 points is kept.
    """
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    if task.kind == "forecast":
        w0 = task.windows[0]
        val_steps = min(150, max(1, len(w0.train_x) // 4))
        fit_end = len(w0.train_x) - val_steps
        x = np.asarray(w0.train_x, np.float64).reshape(1, len(w0.train_x), -1)
        yy = np.asarray(w0.train_y, np.float64).reshape(len(w0.train_y), -1)
        y = torch.as_tensor(yy[None, :fit_end], dtype=torch.float32)
        frames = encode_sequences(model, x[:, :fit_end])
        val_window = Window(0, x[0, :fit_end], yy[:fit_end], x[0, fit_end:], yy[fit_end:])
        start = train_ridge_forecast(model, task.windows)  # start from the ridge solution

        def validate() -> float:
            pred = forecast_windows(FloatStepper(model), [val_window])[0]
            return smape(np.ravel(val_window.test_y), np.ravel(pred))
    else:
        labels_all = torch.as_tensor(task.y_train, dtype=torch.long)
        fit, val = validation_split(len(labels_all), seed=seed)
        start = train_ridge_classify(model, task.x_train, task.y_train, task.n_classes, seed=seed)
        frames_all = encode_sequences(model, task.x_train)
        frames, labels = frames_all[torch.as_tensor(fit)], labels_all[torch.as_tensor(fit)]
        v_frames, v_labels = frames_all[torch.as_tensor(val)], labels_all[torch.as_tensor(val)]

        def validate() -> float:
            return _classify_eval(model, v_frames, v_labels)[0] if len(val) else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # after the ridge start, which may resize the readout
    best_val, best_state, best_epoch = validate(), copy.deepcopy(model.state_dict()), 0
    losses, val_curve = [], [round(best_val, 6)]
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
        v = validate()
        losses.append(round(total, 6))
        val_curve.append(round(v, 6))
        if v < best_val:
            best_val, best_state, best_epoch = v, copy.deepcopy(model.state_dict()), epoch + 1
        if progress:
            progress(epoch + 1, epochs, "loss %.4g, validation %.4g" % (total, v))
        if epoch + 1 - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return {"readout": "bptt", "epochs": epochs, "epochs_run": len(losses), "best_epoch": best_epoch, "lr": lr,
            "start": {k: v for k, v in start.items() if k in ("readout", "lambda", "tau_trace", "pool")},
            "tau_trace": float(model.cfg.tau_trace),
            "losses": losses, "validation": {"metric": "smape" if task.kind == "forecast" else "cross-entropy", "curve": val_curve},
            "train_seconds": round(time.time() - t0, 3)}
