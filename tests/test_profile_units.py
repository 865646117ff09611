"""``profile``'s figures per stream: with a batch of streams the counts are per stream and the
wall time is stated both per batched step and per stream step (``units`` says which is which)."""

from __future__ import annotations

import numpy as np
import pytest

from bundle_factory import random_bundle
from spikeedge.measure.profile import UNITS, profile_model
from spikeedge.runtime.sessions import open_session


def test_counts_are_per_stream_and_time_is_given_per_batch_step_and_per_stream_step() -> None:
    bundle = random_bundle(3, "direct", "subtract", n_layers=1)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1.0, 1.0, (4, 20, bundle.n_inputs))
    session = open_session(bundle, batch=4)
    report = profile_model(session, xs, repeats=2)
    one = open_session(bundle, batch=4).run(xs)
    assert report["batch"] == 4 and report["inferences"] == 8
    assert report["synops_per_step"] == one.synops / (20 * 4)  # per stream
    assert report["synops_per_inference"] == one.synops / 4
    assert report["ms_per_stream_step"] == pytest.approx(report["ms_per_step"] / 4)
    assert report["ms_per_inference"] == pytest.approx(report["ms_per_stream_step"] * 20)
    assert set(UNITS) >= {k for k in report if k.endswith(("_per_step", "_per_inference"))} and report["units"] == UNITS
    # NeuroBench's names: activation sparsity over every neuron, step and stream; the operations
    xs = rng.uniform(-1.0, 1.0, (4, 20, bundle.n_inputs)) * 50.0  # driven hard enough to spike
    report = profile_model(open_session(bundle, batch=4), xs)
    one = open_session(bundle, batch=4).run(xs)
    spikes = sum(one.spike_counts.values())
    slots = sum(layer.n for layer in bundle.layers) * 20 * 4
    assert report["ActivationSparsity"] == pytest.approx(1.0 - spikes / slots, rel=1e-12) and 0 < spikes < slots
    so = report["SynapticOperations"]
    layer = bundle.layers[0]
    assert so["Effective"] == report["synops_per_inference"]
    assert so["Dense"] == (layer.w_in.n_sources * layer.n + layer.n * layer.n) * 20
