"""The HRSNN's construction, encoders, training and determinism."""

import networkx as nx
import numpy as np
import pytest
import torch

from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig, gamma_time_constants, small_world_mask
from spikeedge.offline.pipeline import train_hrsnn
from spikeedge.offline.quantize import quantize_hrsnn
from spikeedge.offline.train import ridge, train_bptt
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.encoders import encode_delta, encode_direct, encode_rate
from spikeedge.tasks.registry import load_task


def test_gamma_time_constants_have_the_configured_mean_and_shape():
    tau = gamma_time_constants(np.random.default_rng(0), 200_000, mean=8.0, shape=3.0, tau_min=0.0)
    assert tau.mean() == pytest.approx(8.0, rel=0.01)
    assert tau.var() == pytest.approx(3.0 * (8.0 / 3.0) ** 2, rel=0.03)  # k * theta^2


def test_small_world_mask_is_clustered_with_short_paths():
    n, k = 400, 10
    mask = small_world_mask(n, k, 0.1, seed=0)
    assert not mask.diagonal().any() and (mask == mask.T).all()
    assert mask.sum() == n * k  # k neighbours each, rewiring keeps the edge count
    g = nx.from_numpy_array(mask.astype(int))
    rand = nx.gnm_random_graph(n, n * k // 2, seed=0)
    assert nx.average_clustering(g) > 3 * nx.average_clustering(rand)
    assert nx.average_shortest_path_length(g) < 2 * nx.average_shortest_path_length(rand)


def test_recurrent_weights_follow_the_mask_and_dale_signs():
    m = HRSNN(HrsnnConfig(n_neurons=100, seed=2))
    w = m.effective_w_rec().detach().numpy()
    assert not w[~m.mask.numpy()].any()
    signs = np.sign(w)
    for j in range(100):
        col = signs[:, j][signs[:, j] != 0]
        assert len(set(col)) <= 1  # every source is excitatory or inhibitory


def test_encoders():
    assert encode_direct(np.array([[0.5, -2.0, 100.0]]), 0.01, 8).tolist() == [[50, -127, 127]]
    # delta: a ramp of 0.25 per step with threshold 0.1 crosses 2 levels a step -> one up spike each step
    ref = np.zeros((1, 1))
    ups = []
    for t in range(1, 6):
        ev, ref = encode_delta(np.array([[0.25 * t]]), ref, 0.1)
        ups.append(ev[0].tolist())
    assert ups == [[1, 0]] * 5
    assert ref[0, 0] == pytest.approx(1.2)  # 12 whole levels crossed by 1.25
    ev, _ = encode_delta(np.array([[0.0]]), ref, 0.1)
    assert ev[0].tolist() == [0, 1]
    rng = np.random.default_rng(0)
    spikes = encode_rate(np.full((1, 20000), 0.3), 1.0, rng)
    assert spikes.mean() == pytest.approx(0.3, abs=0.01)
    again = encode_rate(np.full((1, 20000), 0.3), 1.0, np.random.default_rng(0))
    assert np.array_equal(spikes, again)


def test_ridge_recovers_a_known_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    w_true, b_true = rng.normal(size=(2, 8)), np.array([0.5, -1.0])
    w, b = ridge(x, x @ w_true.T + b_true, lam=1e-10)
    assert np.allclose(w, w_true, atol=1e-6) and np.allclose(b, b_true, atol=1e-6)


def test_bptt_lowers_the_loss_and_keeps_the_mask():
    task = load_task("digits")
    task.x_train, task.y_train = task.x_train[:256, :8], task.y_train[:256]
    model = HRSNN(HrsnnConfig(n_neurons=64, n_inputs=64, n_outputs=10, encoder="direct", in_gain=3.0, seed=0))
    before = model.effective_w_rec().detach().clone()
    record = train_bptt(model, task, epochs=4, lr=5e-3, batch_size=64)
    assert record["losses"][-1] < record["losses"][0]
    after = model.w_rec.detach()
    assert not after[~model.mask].any()
    assert not torch.equal(before, model.effective_w_rec().detach())


def test_same_seed_same_bundle_bytes():
    task = load_task("mackey-glass", repeats=2)
    blobs = []
    for _ in range(2):
        model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=60, seed=7))
        blobs.append(fmt.dumps(quantize_hrsnn(model, task.windows[0].train_x)))
    assert blobs[0] == blobs[1]
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=60, seed=8))
    assert fmt.dumps(quantize_hrsnn(model, task.windows[0].train_x)) != blobs[0]
