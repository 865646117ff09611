"""Pruning baselines (random, magnitude, activity): exact counts, the right neurons kept on
hand-made networks, reproducibility, and untouched weights."""

import numpy as np
import pytest
import torch

from spikeedge.offline.baselines import magnitude_scores, prune_activity, prune_magnitude, prune_random, spike_counts
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.surgery import HrsnnArrays, arrays_of, build_hrsnn


def random_model(n=60, seed=3):
    return HRSNN(HrsnnConfig(n_neurons=n, ws_neighbours=8, seed=seed))


def hand_made(w_rec, bias=None):
    """A small HRSNN holding exactly ``w_rec`` (one input channel)."""
    n = len(w_rec)
    arrays = HrsnnArrays(np.full(n, 4.0), np.full(n, 2.0), np.full((n, 1), 0.1), np.asarray(w_rec, np.float64),
                         np.zeros(n) if bias is None else np.asarray(bias, np.float64))
    return build_hrsnn(HrsnnConfig(n_neurons=n), arrays)


def all_three(model, n_neurons, n_synapses):
    inputs = np.random.default_rng(0).normal(size=(5, 40, 1))
    return {
        "random": prune_random(model, n_neurons, n_synapses, seed=1),
        "magnitude": prune_magnitude(model, n_neurons, n_synapses),
        "activity": prune_activity(model, inputs, n_neurons, n_synapses),
    }


def test_exact_counts_are_achieved():
    model = random_model()
    for name, (pruned, rec) in all_three(model, 30, 100).items():
        assert pruned.cfg.n_neurons == 30 and pruned.w_rec.shape == (30, 30), name
        assert pruned.n_synapses()["recurrent"] == 100, name
        assert rec["neurons"] == 30 and rec["synapses"] == 100 and rec["synapse_shortfall"] == 0, name
        assert rec["start"] == {"neurons": 60, "synapses": model.n_synapses()["recurrent"]}
        assert pruned.n_synapses()["input"] == 30 and pruned.n_synapses()["readout"] == 0, name
        assert int(pruned.mask.sum()) == 100, name


def test_too_few_synapses_left_are_all_kept_and_the_shortfall_is_recorded():
    model = random_model()
    for name, (pruned, rec) in all_three(model, 10, 10_000).items():
        avail = rec["synapses_after_neuron_removal"]
        assert avail < 10_000 and rec["synapses"] == avail, name
        assert pruned.n_synapses()["recurrent"] == avail, name
        assert rec["synapse_shortfall"] == 10_000 - avail, name


def test_remaining_weights_are_exactly_the_original_sub_matrix_entries():
    model = random_model()
    orig = arrays_of(model)
    for name, (pruned, rec) in all_three(model, 25, 80).items():
        keep = np.array(rec["kept_neurons"])
        assert (np.diff(keep) > 0).all(), name  # original order kept
        sub = orig.subset(keep)
        new = arrays_of(pruned)
        nz = new.w_rec != 0
        assert np.array_equal(new.w_rec[nz], sub.w_rec[nz]), name  # bit-exact, no rescaling
        for field in ("tau_mem", "tau_syn", "w_in", "bias"):
            assert np.array_equal(getattr(new, field), getattr(sub, field)), (name, field)


def test_magnitude_keeps_the_strongest_neurons_then_the_largest_synapses():
    w = np.zeros((5, 5))  # [target, source]
    w[1, 3], w[3, 1] = 2.0, -1.5  # neurons 1 and 3: strong
    w[4, 1], w[1, 4] = 0.4, 0.3  # neuron 4: medium (0.7), neuron 1 total 4.2, neuron 3 total 3.5
    w[0, 2], w[2, 0] = 0.1, -0.05  # neurons 0 and 2: weak
    model = hand_made(w)
    np.testing.assert_allclose(magnitude_scores(w), [0.15, 4.2, 0.15, 3.5, 0.7])
    pruned, rec = prune_magnitude(model, 3, 3)
    assert rec["kept_neurons"] == [1, 3, 4]
    expect = np.array([[0.0, 2.0, 0.0], [-1.5, 0.0, 0.0], [0.4, 0.0, 0.0]])  # w[1,4] = 0.3 removed
    np.testing.assert_array_equal(arrays_of(pruned).w_rec, expect.astype(np.float32))


def test_activity_keeps_the_most_active_neurons():
    n = 6
    bias = np.array([0.0, 0.3, 0.0, 0.15, 0.0, 0.1])  # driven neurons fire, the rest stay silent
    w = np.zeros((n, n))
    w[0, 2], w[2, 0] = 0.01, 0.01  # silent neurons 0, 2: tie broken by magnitude over neuron 4
    w[3, 1], w[1, 3], w[5, 1] = 0.02, 0.03, 0.001
    model = hand_made(w, bias)
    inputs = np.zeros((3, 50, 1))
    counts = spike_counts(model, inputs)
    assert counts[1] > counts[3] > counts[5] > 0 and counts[[0, 2, 4]].sum() == 0
    assert np.array_equal(spike_counts(model, inputs, chunk=1), counts)  # chunking changes nothing
    _, rec = prune_activity(model, inputs, 3, 10)
    assert rec["kept_neurons"] == [1, 3, 5] and rec["silent_neurons_kept"] == 0
    _, rec = prune_activity(model, inputs, 4, 10)
    assert rec["kept_neurons"] == [0, 1, 3, 5]  # among the silent ones, 0 and 2 tie by magnitude: index
    pruned, rec = prune_activity(model, inputs, 3, 2)
    kept = arrays_of(pruned).w_rec
    assert np.count_nonzero(kept) == 2 and kept[0, 1] == np.float32(0.03)  # 0.001 removed first


def test_activity_drops_the_trained_readout():
    model = random_model(30)
    with torch.no_grad():
        model.readout.weight.fill_(1.0)
    pruned, _ = prune_activity(model, np.zeros((2, 20, 1)), 10, 20)
    assert not pruned.readout.weight.any() and not pruned.readout.bias.any()


def test_random_is_reproducible_by_seed():
    model = random_model()
    a, ra = prune_random(model, 20, 50, seed=7)
    b, rb = prune_random(model, 20, 50, seed=7)
    c, rc = prune_random(model, 20, 50, seed=8)
    assert ra == rb and torch.equal(a.w_rec, b.w_rec) and torch.equal(a.mask, b.mask)
    assert ra["kept_neurons"] != rc["kept_neurons"] or not torch.equal(a.mask, c.mask)


def test_invalid_counts_raise():
    model = random_model(20)
    with pytest.raises(ValueError):
        prune_random(model, 21, 10)
    with pytest.raises(ValueError):
        prune_magnitude(model, 0, 10)
    with pytest.raises(ValueError):
        prune_magnitude(model, 10, -1)
