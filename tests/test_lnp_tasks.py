"""The pieces of ``benchmarks/lnp_tasks.py`` that decide what its table says: the non-spiking
baselines work where they must (a sine is linear-predictable; separable classes are separated),
and the report states each target as met or not from the numbers it is given."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from spikeedge.tasks.kinds import ClassifyTask, _series_windows

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / (name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_forecast_baselines_on_a_sine():
    base = _load("lnp_tasks_baselines")
    series = 2.0 + np.sin(np.arange(1400) * 2 * np.pi / 25.0)
    windows = _series_windows(series, 3, 750, 100, 50.0)
    ar, info = base.forecast_model("ar", windows)
    err = np.abs(ar[:, :, 0] - np.stack([w.test_y for w in windows])).max()
    assert err < 0.05, "a linear autoregression continues a sine (max error %.3g)" % err
    mean, _ = base.forecast_model("mean", windows)
    assert np.allclose(mean, windows[0].train_y[100:].mean(), atol=0.05)
    esn, _ = base.forecast_model("esn", windows, seed=0)
    assert esn.shape == ar.shape and np.all(np.isfinite(esn))


def test_classify_baselines_separate_separable_classes():
    base = _load("lnp_tasks_baselines")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = 3.0 * np.eye(3)[y][:, None, :] + rng.normal(0, 0.3, (300, 5, 3))  # one direction per class
    task = ClassifyTask("toy", x[:200], y[:200], x[200:], y[200:], 3)
    acc = base.classify_baselines(task)
    assert acc["1-nearest-neighbour (raw sequence)"] == 1.0
    assert acc["ridge on the raw sequence"] > 0.95


def test_report_states_targets_from_the_numbers(tmp_path):
    report = _load("lnp_tasks_report")

    def part(seed, dense, lnp):
        rows = []
        for net, v in (("dense", dense), ("LNP", lnp)):
            for ro in ("ridge", "reservoir"):
                row = {"task": "mackey-glass", "network": net, "readout": ro, "float": {"smape": v, "nrmse": 0.5}}
                if ro == "reservoir":
                    row["int8"] = {"smape": v * 1.01, "nrmse": 0.5}
                rows.append(row)
        return {"seed": seed, "lnp": {"neurons": 250, "synapses": 2500, "seconds": 1.0}, "rows": rows}

    report.write_report([part(s, 17.0 + 0.1 * s, 19.5 + 0.1 * s) for s in range(5)], tmp_path / "r", {"python": "3"})
    text = (tmp_path / "r.md").read_text()
    assert "Dense HRSNN Mackey-Glass sMAPE ≤ 18: 17.20: **met**" in text
    assert "LNP within 10% of dense: 19.70 vs 17.20 (+14.5%): **not met**" in text
    assert "p = 0.062" in text  # 5 seeds, all LNP worse: the smallest two-sided Wilcoxon p
