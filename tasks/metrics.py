"""Task scores, with NeuroBench's definitions so that numbers compare with published ones.

A forecast that blew up (NaN or inf) gets the worst score instead of poisoning the mean.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def _pair(name: str, y, y_hat):
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape:
        raise DataError("%s: targets have shape %s but predictions %s" % (name, y.shape, y_hat.shape))
    if y.size == 0:
        raise DataError("%s: no values to score" % name)
    if not np.all(np.isfinite(y)):
        raise DataError("%s: the targets contain NaN or inf" % name)
    return y, y_hat


def smape(y, y_hat) -> float:
    """``200 * mean(|y - y_hat| / (|y| + |y_hat|))`` in [0, 200].

    A NaN or inf prediction counts as the maximum (200 for that point); 0/0 counts as 0.
    """
    y, y_hat = _pair("smape", y, y_hat)
    bad = ~np.isfinite(y_hat)
    y_hat = np.where(bad, 0.0, y_hat)
    num = np.abs(y - y_hat)
    den = np.abs(y) + np.abs(y_hat)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    ratio[bad] = 1.0
    return float(200.0 * ratio.mean())


def nrmse(y, y_hat) -> float:
    """Root-mean-square error divided by the (population) standard deviation of ``y``.

    inf when any prediction is NaN or inf.
    """
    y, y_hat = _pair("nrmse", y, y_hat)
    scale = float(np.std(y))
    if scale == 0.0:
        raise DataError("nrmse: the targets are constant, so the error cannot be normalised")
    if not np.all(np.isfinite(y_hat)):
        return float("inf")
    return float(np.sqrt(np.mean((y - y_hat) ** 2)) / scale)


def accuracy(labels, predictions) -> float:
    """Fraction of correct predictions; ``predictions`` are labels (n,) or scores (n, classes)."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.ndim != 1 or labels.size == 0:
        raise DataError("accuracy: labels must be a non-empty 1-D array, got shape %s"
                        % (labels.shape,))
    if predictions.ndim == 2:
        predictions = np.argmax(predictions, axis=1)
    if predictions.shape != labels.shape:
        raise DataError("accuracy: %d labels but predictions of shape %s"
                        % (len(labels), predictions.shape))
    return float(np.mean(predictions == labels))
