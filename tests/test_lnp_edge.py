"""The issue-20 LNP evaluation's report: paired Wilcoxon p-values per row and the target check,
on a small cache of known numbers (the experiment itself takes an hour: ``benchmarks/lnp_edge.py``)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def report_module():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("lnp_edge_report", BENCH / "lnp_edge_report.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


ROWS = [("dense", "dense", "dense", None), ("lnp", "LNP", "lnp", {}), ("lnp-subgraph", "LNP sub", "lnp", {}),
        ("random", "random", "random", None), ("magnitude", "magnitude", "magnitude", None)]


def cache_of(rng, seeds):
    res = {}
    for s in seeds:
        for key, base in (("dense", 20.0), ("lnp", 21.0), ("lnp-subgraph", 22.0), ("random", 24.0), ("magnitude", 21.2)):
            n, syn = (200, 6000) if key == "dense" else (100, 1200)
            res["%s|%d" % (key, s)] = {"neurons": n, "synapses": syn, "smape": base + rng.normal(0, 0.5), "lyapunov_max": 0.0,
                                       "spectral_radius": 1.5, "active_fraction": 0.9, "mean_rate": 0.2}
            if key in ("dense", "lnp", "lnp-subgraph"):
                res["%s|%d" % (key, s)]["int8_smape"] = res["%s|%d" % (key, s)]["smape"] * 1.01
    return {"settings": {"neurons": 200}, "results": res, "code_fingerprint": "x" * 16}


def test_report_gives_paired_wilcoxon_p_values_and_decides_the_targets(report_module, tmp_path):
    rng = np.random.default_rng(0)
    seeds = list(range(10))
    cache = cache_of(rng, seeds)
    doc = report_module.write_report(cache, ROWS, seeds, tmp_path, "test")
    lnp = [cache["results"]["lnp|%d" % s]["smape"] for s in seeds]
    rnd = [cache["results"]["random|%d" % s]["smape"] for s in seeds]
    assert doc["tests_lnp"]["random"]["p"] == pytest.approx(wilcoxon(np.subtract(lnp, rnd)).pvalue)
    assert doc["tests_lnp"]["random"]["wins"] == 10 and doc["tests_lnp"]["random"]["p"] < 0.01
    t = doc["targets"]
    assert t["removed_neurons_min"] == 0.5 and t["removed_synapses_min"] == pytest.approx(0.8)
    assert not t["dense_at_most_18"] and t["lnp_within_10pct"]
    assert t["int8_within_5pct"]["lnp"]["of_means"] == pytest.approx(0.01) and t["int8_within_5pct"]["lnp"]["largest_seed"] == pytest.approx(0.01)
    text = (tmp_path / "lnp_edge.md").read_text()
    assert "Wilcoxon" in text and "**not met**" in text and (tmp_path / "lnp_edge.json").exists()
