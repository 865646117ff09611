"""Smoke test of the LNP evaluation script (benchmarks/lnp_eval.py): a quick run writes the
report and strict JSON, and a second run resumes from the cache without recomputing."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "lnp_eval.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lnp_eval", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def keep_torch_threads():
    """main() sets torch's thread count for the process: give the other tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_quick_run_writes_the_report_and_resumes_from_the_cache(tmp_path, keep_torch_threads):
    mod = load_script()
    argv = ["--quick", "--tasks", "mackey-glass", "--timing-neurons", "0", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path)]
    assert mod.main(argv) == 0
    doc = json.loads((tmp_path / "lnp.json").read_text())  # strict JSON (no NaN literals)
    md = (tmp_path / "lnp.md").read_text()
    assert "lnp_eval.py --quick --tasks mackey-glass" in md and "## Target check" in md
    assert "### mackey-glass" in md and "### digits" not in md
    results = doc["results"]
    assert set(results) == {"%s|0|mackey-glass" % r for r in doc["rows"]}
    lnp, ap = results["lnp|0|mackey-glass"], results["activity|0|mackey-glass"]
    assert lnp["neurons"] == ap["neurons"] == 50  # AP pruned to LNP's neuron count
    assert ap["pruning"]["requested"]["synapses"] == lnp["synapses_recurrent"]
    assert ap["synapses_recurrent"] + ap["pruning"]["synapse_shortfall"] == lnp["synapses_recurrent"]
    chk = doc["target_check"]
    assert chk["smape_lnp"] == pytest.approx(lnp["smape"]) and chk["smape_dense"] == pytest.approx(results["dense|0|mackey-glass"]["smape"])
    assert ("**met**" in md) or ("**not met**" in md)
    # resumed: nothing recomputed, the same numbers
    assert mod.main(argv) == 0
    again = json.loads((tmp_path / "lnp.json").read_text())
    assert again["results"] == results and len(again["invocations"]) == 2
