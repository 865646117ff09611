"""The ``reservoir`` readout: ridge regression on the spike traces read through delayed taps,
with the taps, the input gain and the ridge strength chosen on held-out training data.

Why: the HRSNN's neurons forget within a few steps (membrane time constants about 4 steps),
while a Mackey-Glass forecast needs the series about 40 steps back (its delay, 17 time units,
is 6.5 samples; a good delay embedding spans several of them). Reading the traces as they were
``0, s, 2s, ... 7s`` steps ago (``TraceReadout.delays``; spiking and int8 all the way, exact on
the event runtime and the integer reference) gives the linear readout that past; the network's
spikes stay the only features. The input gain scales the input weights (a stronger drive makes
the spikes follow the input level rather than the network's own activity).

Every choice is made on the training data only. Forecasts: the last ``folds`` blocks of
``block`` points of the first window's training span are held out in turn; for each the readout
is fitted on the rest (after a washout) and scored by the sMAPE of a free-running forecast of the
block from its true start, as the test protocol does. All candidate readouts run as one batch
(one stream per candidate and block). Classification: the validation split of
``train.validation_split``, accuracy of the readout at the last step.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Sequence, Tuple

import numpy as np
import torch

from ..tasks.metrics import smape
from .hrsnn import HRSNN
from .train import FloatStepper, _set_readout, collect_traces, validation_split

N_TAPS = 8  # taps per readout: delays 0, s, ..., 7 s
SPACINGS = (0, 3, 6)  # tap spacings tried (0: the plain readout of the current traces)
INPUT_GAINS = (1.0, 3.0, 10.0)  # input-weight multipliers tried
LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def taps_for(spacing: int, n_taps: int = N_TAPS) -> Tuple[int, ...]:
    return (0,) if spacing == 0 else tuple(range(0, spacing * n_taps, spacing))


def ridge_path(features: np.ndarray, targets: np.ndarray, lambdas: Sequence[float]):
    """Ridge solutions (weights (out, in), bias (out,)) for every ``lambda`` at once, with an
    unpenalised intercept, the penalty ``lambda * samples`` as ``train.ridge`` uses. Solved in the
    dual (samples x samples) when there are more features than samples, via one eigendecomposition."""
    mu_f, mu_y = features.mean(0), targets.mean(0)
    f, y = features - mu_f, targets - mu_y
    n = len(f)
    dual = f.shape[1] > n
    evals, evecs = np.linalg.eigh(f @ f.T if dual else f.T @ f)
    proj = evecs.T @ (y if dual else f.T @ y)
    out = []
    for lam in lambdas:
        coef = evecs @ (proj / (evals + lam * n)[:, None])
        w = (f.T @ coef).T if dual else coef.T
        out.append((w, mu_y - w @ mu_f))
    return out


class _Streams:
    """The float model stepped on many streams at once, each with its own readout over the
    union of all candidate taps (zero weights on the taps a candidate does not use)."""

    def __init__(self, model: HRSNN, taps: Tuple[int, ...], weights: np.ndarray, bias: np.ndarray) -> None:
        self.model, self.taps = model, taps
        self.w = torch.as_tensor(weights, dtype=torch.float64)  # (streams, features, out)
        self.b = torch.as_tensor(bias, dtype=torch.float64)  # (streams, out)

    def run(self, x: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        """Stream k is teacher-forced with ``x`` up to ``starts[k]`` and free-running after;
        returns its predictions (streams, horizon, out) of ``x[starts[k] + 1 ...]``."""
        stepper = FloatStepper(self.model)
        batch = len(starts)
        stepper.start(batch, np.repeat(x[:1], batch, 0))
        ring = max(self.taps) + 1
        hist = torch.zeros(ring, batch, self.model.cfg.n_neurons, dtype=torch.float64)
        preds = np.zeros((batch, horizon, x.shape[1]))
        inp = np.repeat(x[:1], batch, 0)
        for t in range(int(starts.max()) + horizon):
            with torch.no_grad():
                _, trace, stepper.carry = self.model.step(stepper.frame(inp), stepper.carry, stepper.params, stepper.w_rec_t)
            hist[t % ring] = trace.double()
            feats = torch.cat([hist[(t - d) % ring] if t >= d else hist[0] * 0 for d in self.taps], dim=1)
            y = (torch.einsum("bf,bfo->bo", feats, self.w) + self.b).numpy()
            k = t - starts
            live = (k >= 0) & (k < horizon)
            preds[live, k[live]] = y[live]
            nxt = np.minimum(t + 1, len(x) - 1)
            inp = np.where((t + 1 <= starts)[:, None], x[nxt], y)
        return preds


def _delay_features(traces: np.ndarray, taps: Sequence[int]) -> np.ndarray:
    """(steps, n * taps) features of one stream's traces (steps, n); zeros before the start."""
    parts = []
    for d in taps:
        shifted = np.zeros_like(traces)
        shifted[d:] = traces[: len(traces) - d]
        parts.append(shifted)
    return np.concatenate(parts, axis=1)


def train_reservoir_forecast(
    model: HRSNN, windows: Sequence[Any], washout: int = 100, block: int = 150, folds: int = 4,
    spacings: Sequence[int] = SPACINGS, input_gains: Sequence[float] = INPUT_GAINS,
    lambdas: Sequence[float] = LAMBDAS,
) -> Dict[str, Any]:
    """Choose (input gain, tap spacing, lambda) on held-out blocks of the first window's training
    span, then fit that readout on the whole span. Changes ``model`` in place (input weights,
    readout taps and weights)."""
    t0 = time.time()
    w0 = windows[0]
    x = np.asarray(w0.train_x, np.float64).reshape(len(w0.train_x), -1)
    y = np.asarray(w0.train_y, np.float64).reshape(len(w0.train_y), -1)
    starts = np.array([len(x) - block * (k + 1) for k in range(folds)])
    union = tuple(sorted({d for s in spacings for d in taps_for(s)}))
    scores: Dict[str, float] = {}
    best: Tuple[float, float, int, float] = (math.inf, 1.0, 0, lambdas[0])
    base_w_in = model.w_in.detach().clone()
    for gain in input_gains:
        with torch.no_grad():
            model.w_in.copy_(base_w_in * gain)
        traces = collect_traces(model, x[None])[0]
        feats_all = _delay_features(traces, union)
        n = traces.shape[1]
        cands, weights, biases, stream_starts = [], [], [], []
        for s in spacings:
            cols = np.concatenate([np.arange(union.index(d) * n, (union.index(d) + 1) * n) for d in taps_for(s)])
            for a in starts:
                keep = np.r_[washout:a, a + block: len(x)]
                for lam, (w, b) in zip(lambdas, ridge_path(feats_all[keep][:, cols], y[keep], lambdas)):
                    full = np.zeros((feats_all.shape[1], y.shape[1]))
                    full[cols] = w.T
                    cands.append((s, lam))
                    weights.append(full)
                    biases.append(b)
                    stream_starts.append(a)
        preds = _Streams(model, union, np.stack(weights), np.stack(biases)).run(x, np.array(stream_starts), block)
        per: Dict[Tuple[int, float], list] = {}
        for (s, lam), a, p in zip(cands, stream_starts, preds):
            per.setdefault((s, lam), []).append(smape(np.ravel(y[a: a + block]), np.ravel(p)))
        for (s, lam), v in per.items():
            score = float(np.mean(v))
            scores["gain=%g,spacing=%d,lambda=%g" % (gain, s, lam)] = round(score, 4)
            if score < best[0]:
                best = (score, gain, s, lam)
    _, gain, spacing, lam = best
    with torch.no_grad():
        model.w_in.copy_(base_w_in * gain)
    taps = taps_for(spacing)
    model.set_readout_delays(taps)
    feats = _delay_features(collect_traces(model, x[None])[0], taps)
    w, b = ridge_path(feats[washout:], y[washout:], [lam])[0]
    _set_readout(model, w, b)
    return {"readout": "reservoir", "lambda": lam, "input_gain": gain, "tap_spacing": spacing, "delays": list(taps),
            "validation": {"metric": "smape", "blocks": [int(a) for a in starts], "block": block, "scores": scores},
            "washout": washout, "train_seconds": round(time.time() - t0, 3)}


def train_reservoir_classify(
    model: HRSNN, x_train: np.ndarray, y_train: np.ndarray, n_classes: int, seed: int = 0,
    tap_counts: Sequence[int] = (1, 4), input_gains: Sequence[float] = INPUT_GAINS,
    lambdas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
) -> Dict[str, Any]:
    """Classification: the readout at the last step over ``k`` taps spread evenly over the
    sequence (``k = 1``: the current traces only), input gain and lambda chosen by validation
    accuracy (``train.validation_split``), then refitted on all the training data."""
    t0 = time.time()
    labels = np.asarray(y_train, np.int64)
    onehot = np.eye(n_classes)[labels]
    fit, val = validation_split(len(labels), seed=seed)
    steps = int(np.shape(x_train)[1])
    base_w_in = model.w_in.detach().clone()
    scores: Dict[str, float] = {}
    best: Tuple[float, float, Tuple[int, ...], float] = (-1.0, 1.0, (0,), lambdas[0])
    for gain in input_gains:
        with torch.no_grad():
            model.w_in.copy_(base_w_in * gain)
        traces = collect_traces(model, x_train)
        for k in tap_counts:
            taps = tuple(sorted({int(round(i * (steps - 1) / k)) for i in range(k)})) if k > 1 else (0,)
            feats = np.concatenate([traces[:, steps - 1 - d] for d in taps], axis=1)
            for lam, (w, b) in zip(lambdas, ridge_path(feats[fit], onehot[fit], lambdas)):
                acc = float(np.mean(np.argmax(feats[val] @ w.T + b, axis=1) == labels[val])) if len(val) else 0.0
                scores["gain=%g,delays=%s,lambda=%g" % (gain, list(taps), lam)] = round(acc, 4)
                if acc > best[0]:
                    best = (acc, gain, taps, lam)
    _, gain, taps, lam = best
    with torch.no_grad():
        model.w_in.copy_(base_w_in * gain)
    model.set_readout_delays(taps)
    traces = collect_traces(model, x_train)
    feats = np.concatenate([traces[:, steps - 1 - d] for d in taps], axis=1)
    w, b = ridge_path(feats, onehot, [lam])[0]
    _set_readout(model, w, b)
    return {"readout": "reservoir", "lambda": lam, "input_gain": gain, "delays": list(taps), "tau_trace": float(model.cfg.tau_trace),
            "validation_accuracy": scores, "validation_samples": int(len(val)), "train_seconds": round(time.time() - t0, 3)}
