"""Simple non-spiking baselines for ``lnp_tasks.py``, so that its table says where the SNN stands.

Forecasts (the same protocol as the SNN: one readout fitted on the first window's training span,
then every window teacher-forced through its span and run free): the training mean; ridge on
lagged raw inputs (a linear autoregression, lags 1..k spaced s); a leaky tanh echo state network
of 500 units read out by ridge. Classification: 1-nearest-neighbour on the raw sequences
(Euclidean), ridge on the raw sequences, the ESN's last state. Every choice (lags, lambda, ESN
input scale) on held-out training data: the same blocks (forecasts) or validation split
(classification) the SNN readout uses.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from spikeedge.offline.reservoir import ridge_path
from spikeedge.offline.train import validation_split
from spikeedge.tasks.metrics import smape

LAMBDAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class Esn:
    """A leaky echo state network: ``h = (1-a) h + a tanh(W_in x + W h + b)``, W scaled to
    spectral radius ``rho``, 10% connectivity."""

    def __init__(self, n_in: int, n: int = 500, rho: float = 0.9, leak: float = 0.5, in_scale: float = 1.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        w = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.1)
        w *= rho / max(1e-12, float(np.max(np.abs(np.linalg.eigvals(w)))))
        self.w, self.w_in = w, rng.uniform(-in_scale, in_scale, size=(n, n_in))
        self.b, self.leak, self.n = rng.uniform(-0.2, 0.2, size=n), leak, n

    def step(self, h: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (1 - self.leak) * h + self.leak * np.tanh(x @ self.w_in.T + h @ self.w.T + self.b)

    def states(self, xs: np.ndarray) -> np.ndarray:
        """(batch, steps, n) states for inputs (batch, steps, n_in) from rest."""
        h = np.zeros((xs.shape[0], self.n))
        out = np.empty((xs.shape[0], xs.shape[1], self.n))
        for t in range(xs.shape[1]):
            h = self.step(h, xs[:, t])
            out[:, t] = h
        return out


def _lag_features(hist: np.ndarray, k: int, s: int) -> np.ndarray:
    """hist (batch, L) most recent last -> (batch, k) lags 0, s, ..., (k-1) s back."""
    return hist[:, ::-1][:, ::s][:, :k]


def _free_run(first_state: Any, advance: Callable, readout: Callable, x0: np.ndarray, horizon: int) -> np.ndarray:
    state, x, out = first_state, x0, []
    for _ in range(horizon):
        state = advance(state, x)
        x = readout(state)
        out.append(x)
    return np.stack(out, axis=1)


def forecast_model(kind: str, windows: Sequence[Any], washout: int = 100, block: int = 150, folds: int = 4, seed: int = 0):
    """Fit ``kind`` (mean | ar | esn) on the first window's span with its choices made on the
    held-out blocks; returns (predictions (windows, test, 1), chosen settings)."""
    w0 = windows[0]
    x = np.asarray(w0.train_x, np.float64).reshape(-1, 1)
    y = np.asarray(w0.train_y, np.float64).reshape(-1, 1)
    n_test = len(windows[0].test_y)
    if kind == "mean":
        return np.full((len(windows), n_test, 1), float(y.mean())), {}
    starts = [len(x) - block * (k + 1) for k in range(folds)]
    if kind == "ar":
        grid = [(k, s) for k in (2, 4, 8) for s in (1, 3, 6)]
    else:
        grid = [(scale, 0) for scale in (0.3, 1.0, 3.0)]

    def machinery(g):
        if kind == "ar":
            k, s = g
            lag = (k - 1) * s + 1

            def feats_of(xs):  # (steps, 1) -> (steps, k): lag features at every step
                padded = np.concatenate([np.repeat(xs[:1], lag - 1, 0), xs])[:, 0]
                return np.stack([_lag_features(padded[None, t: t + lag], k, s)[0] for t in range(len(xs))])

            def advance(state, xin):
                return np.concatenate([state[:, 1:], xin], axis=1)

            def start_state(xs):  # the last ``lag`` inputs of a teacher-forced history (batch, steps, 1)
                padded = np.concatenate([np.repeat(xs[:, :1, 0], lag, 1), xs[:, :, 0]], axis=1)
                return padded[:, -lag:]

            return feats_of, advance, start_state, (lambda st: _lag_features(st, k, s))
        esn = Esn(1, in_scale=g[0], seed=seed)

        def start_state_esn(xs):
            return esn.states(xs)[:, -1]

        return (lambda xs: esn.states(xs[None])[0]), esn.step, start_state_esn, (lambda st: st)

    best: Tuple[float, Any, float] = (math.inf, None, 0.0)
    acc: Dict[Any, List[float]] = {}
    for g in grid:
        feats_of, advance, start_state, feat_of_state = machinery(g)
        f = feats_of(x)
        for a in starts:
            keep = np.r_[washout:a, a + block: len(x)]
            sols = ridge_path(f[keep], y[keep], LAMBDAS)
            st0 = start_state(x[None, :a])
            for lam, (w, b) in zip(LAMBDAS, sols):
                pred = _free_run(st0, advance, lambda st, w=w, b=b: feat_of_state(st) @ w.T + b, x[None, a], block)
                score = smape(np.ravel(y[a: a + block]), np.ravel(pred))
                acc.setdefault((g, lam), []).append(score)
    for key, v in acc.items():
        if np.mean(v) < best[0]:
            best = (float(np.mean(v)), key[0], key[1])
    _, g, lam = best
    feats_of, advance, start_state, feat_of_state = machinery(g)
    f = feats_of(x)
    w, b = ridge_path(f[washout:], y[washout:], [lam])[0]
    train = np.stack([np.asarray(win.train_x, np.float64) for win in windows])[:, :, None]
    x0 = np.stack([np.asarray(win.test_x[:1], np.float64) for win in windows])
    st0 = start_state(train)
    preds = _free_run(st0, advance, lambda st: feat_of_state(st) @ w.T + b, x0, n_test)
    return preds, {"setting": list(g), "lambda": lam, "validation_smape": round(best[0], 4)}


def classify_baselines(task: Any, seed: int = 0) -> Dict[str, float]:
    """Test accuracy of 1-NN, ridge on raw sequences and an ESN's last state (lambda on the
    validation split)."""
    xtr = np.asarray(task.x_train, np.float64).reshape(len(task.x_train), -1)
    xte = np.asarray(task.x_test, np.float64).reshape(len(task.x_test), -1)
    ytr, yte = np.asarray(task.y_train), np.asarray(task.y_test)
    out: Dict[str, float] = {}
    # 1-NN, Euclidean, in chunks
    pred = []
    sq = (xtr ** 2).sum(1)
    for i in range(0, len(xte), 256):
        d = sq[None, :] - 2 * xte[i: i + 256] @ xtr.T
        pred.append(ytr[np.argmin(d, axis=1)])
    out["1-nearest-neighbour (raw sequence)"] = float(np.mean(np.concatenate(pred) == yte))
    fit, val = validation_split(len(ytr), seed=seed)
    onehot = np.eye(task.n_classes)[ytr]

    def ridge_acc(ftr, fte):
        sols = ridge_path(ftr[fit], onehot[fit], LAMBDAS)
        accs = [np.mean(np.argmax(ftr[val] @ w.T + b, 1) == ytr[val]) for w, b in sols]
        lam = LAMBDAS[int(np.argmax(accs))]
        w, b = ridge_path(ftr, onehot, [lam])[0]
        return float(np.mean(np.argmax(fte @ w.T + b, 1) == yte))

    out["ridge on the raw sequence"] = ridge_acc(xtr, xte)
    esn = Esn(task.x_train.shape[2], seed=seed)
    s_tr = np.concatenate([esn.states(np.asarray(task.x_train[i: i + 512], np.float64))[:, -1] for i in range(0, len(xtr), 512)])
    s_te = np.concatenate([esn.states(np.asarray(task.x_test[i: i + 512], np.float64))[:, -1] for i in range(0, len(xte), 512)])
    out["ESN (500 tanh units, last state, ridge)"] = ridge_acc(s_tr, s_te)
    return out
