"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks.metrics import accuracy, nrmse, smape


def test_smape_hand_values():
    # |1-2|/3 = 1/3, |2-2|/4 = 0, |-1-1|/2 = 1  -> 200 * (4/3) / 3
    assert smape([1.0, 2.0, -1.0], [2.0, 2.0, 1.0]) == pytest.approx(800.0 / 9.0)
    assert smape([3.0], [1.0]) == pytest.approx(100.0)          # 200 * 2/4
    assert smape([[1.0, 1.0]], [[1.0, 1.0]]) == 0.0


def test_smape_nan_inf_and_zero_over_zero():
    assert smape([0.0, 0.0], [0.0, 0.0]) == 0.0                  # 0/0 counts as 0
    assert smape([1.0, 1.0], [np.nan, 1.0]) == pytest.approx(100.0)   # (200 + 0) / 2
    assert smape([1.0, 0.0], [np.inf, 0.0]) == pytest.approx(100.0)
    assert smape([5.0], [-np.inf]) == 200.0
    assert smape([2.0, 2.0], [-2.0, 0.0]) == pytest.approx(200.0)   # 1 and 1


def test_nrmse_hand_values():
    y = np.array([1.0, 3.0])                 # std 1
    assert nrmse(y, [1.0, 1.0]) == pytest.approx(math.sqrt(2.0))   # errors 0, 2 -> rmse sqrt(2)
    assert nrmse(y, y) == 0.0
    assert nrmse(y, [np.nan, 3.0]) == math.inf
    with pytest.raises(DataError, match="constant"):
        nrmse([2.0, 2.0], [1.0, 2.0])


def test_accuracy():
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy([0, 1, 1], scores) == pytest.approx(2.0 / 3.0)
    with pytest.raises(DataError, match="3 labels"):
        accuracy([0, 1, 1], [0, 1])


def test_shape_and_target_errors():
    with pytest.raises(DataError, match="smape: targets have shape"):
        smape([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="no values"):
        smape([], [])
    with pytest.raises(DataError, match="targets contain NaN"):
        nrmse([np.nan, 1.0], [1.0, 1.0])
