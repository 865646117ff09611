"""Lyapunov Noise Pruning, step by step: each against an analytic case or an independent
computation, then the loop (counts, stopping, reproducibility)."""

import math

import numpy as np
import pytest
import torch
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.lnp import LnpConfig, lnp_prune
from spikeedge.offline.lnp.analysis import analyse_network
from spikeedge.offline.lnp.dynamics import (
    Drive,
    noise_drive,
    smoothed_map,
    spiking_rates,
)
from spikeedge.offline.lnp.graph import (
    betweenness,
    delocalise,
    heterogeneity_gains,
    kron_reduce,
    leading_spectrum,
    local_heterogeneity,
)
from spikeedge.offline.lnp.noise import (
    harmonic_mean,
    keep_probabilities,
    lyapunov_factors,
    stationary_covariance,
    synapse_scores,
    systematic_sample,
)
from spikeedge.offline.lnp.timescales import objective, optimise, quantiles, redraw
from spikeedge.offline.surgery import arrays_of, build_hrsnn


def small_net(n=40, seed=0, **kw):
    return HRSNN(HrsnnConfig(n_neurons=n, seed=seed, ws_neighbours=6, **kw))


# -- dynamics -------------------------------------------------------------------------------------

def test_spiking_rates_match_the_torch_model():
    model = small_net(60, bias_mean=0.3)
    arrays = arrays_of(model)
    rng = np.random.default_rng(3)
    frames = rng.normal(0, 1.0, size=(300, 1))
    drive = Drive(frames @ arrays.w_in.T + arrays.bias, 0)
    rates = spiking_rates(arrays, drive, 1.0, False)
    with torch.no_grad():
        _, _, spikes, _ = model(torch.tensor(frames[None], dtype=torch.float32), record_spikes=True)
    # float32 torch vs float64 numpy: allow a spike or two to fall on the other side
    assert np.abs(rates - spikes[0].mean(0).numpy()).max() <= 2 / 300
    assert rates.mean() > 0.01


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_smoothed_map_jacobian_matches_finite_differences(reset):
    model = small_net(30, reset=reset, bias_mean=0.5)
    arrays = arrays_of(model)
    drive = noise_drive(arrays, 20, 0, 1.0, seed=1)
    step, jvp = smoothed_map(arrays, drive, 1.0, reset == "zero", smoothing=0.25)
    rng = np.random.default_rng(0)
    z = rng.normal(0.5, 0.5, size=60)
    q = rng.normal(size=(60, 3))
    eps = 1e-6
    fd = np.stack([(step(z + eps * q[:, i], 4) - step(z - eps * q[:, i], 4)) / (2 * eps) for i in range(3)], axis=1)
    assert np.allclose(jvp(z, 4, q), fd, atol=1e-6)


def test_smoothed_map_becomes_the_spiking_network_as_the_width_shrinks():
    arrays = arrays_of(small_net(40, bias_mean=0.4))
    drive = noise_drive(arrays, 200, 0, 1.0, seed=2)
    step, _ = smoothed_map(arrays, drive, 1.0, False, smoothing=1e-9)
    z = np.zeros(80)
    spikes = []
    for t in range(200):
        z = step(z, t)
        spikes.append(z[40:] >= 1.0)
    assert np.allclose(np.mean(spikes, axis=0), spiking_rates(arrays, drive, 1.0, False))


# -- noise pruning --------------------------------------------------------------------------------

def test_covariance_of_a_diagonal_system_is_analytic():
    d = np.array([1.0, 0.5, 2.0])
    cov, shift = stationary_covariance(-np.diag(d))
    assert shift == 0.0
    assert np.allclose(cov, np.diag(1 / (2 * d)))


def test_covariance_solves_the_lyapunov_equation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(80, 80)) * 0.05 - np.eye(80)
    cov, _ = stationary_covariance(a)
    assert np.allclose(a @ cov + cov @ a.T + np.eye(80), 0, atol=1e-9)
    assert np.linalg.eigvalsh(cov).min() > 0


def test_unstable_rate_model_is_shifted_with_a_warning():
    a = np.array([[0.2, 0.0], [0.1, -1.0]])
    with pytest.warns(RuntimeWarning, match="not stable"):
        cov, shift = stationary_covariance(a)
    assert shift > 0.2
    assert np.linalg.eigvalsh(cov).min() > 0


def test_synapse_score_is_moore_chaudhuri():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    w = np.array([[0.0, -0.3], [0.4, 0.0]])
    s = synapse_scores(w, cov, np.array([0, 1]), np.array([1, 0]))
    assert s == pytest.approx([0.3 * (2 + 1 + 1.0), 0.4 * (1 + 2 - 1.0)])


def test_keep_probabilities_sum_to_the_target_and_follow_the_scores():
    scores = np.array([10.0, 5.0, 1.0, 1.0, 0.5, 0.0])
    p = keep_probabilities(scores, 3.0)
    assert p.sum() == pytest.approx(3.0)
    assert p.max() <= 1.0 and p[0] == 1.0 and p[-1] == 0.0
    below = p < 1
    assert np.allclose(p[below][:-1] / scores[below][:-1], p[2] / scores[2])  # proportional under the cap


def test_systematic_sampling_gives_exact_counts_and_the_right_inclusion_probabilities():
    rng = np.random.default_rng(0)
    p = np.clip(rng.random(200), 0.05, 1.0)
    p *= 80 / p.sum()
    p = np.minimum(p, 1)
    hits = np.zeros(200)
    for _ in range(4000):
        m = systematic_sample(p, rng)
        assert abs(m.sum() - p.sum()) < 1
        hits += m
    assert np.abs(hits / 4000 - p).max() < 0.03


def test_noise_pruning_is_unbiased_in_expectation():
    """Keeping w/p with probability p: the mean pruned matrix is the dense one."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(20, 20)) * (rng.random((20, 20)) < 0.5)
    t, s = np.nonzero(w)
    p = keep_probabilities(np.abs(w[t, s]) + 0.1, 0.4 * len(t))
    acc = np.zeros_like(w)
    draws = 6000
    for _ in range(draws):
        m = systematic_sample(p, rng)
        acc[t[m], s[m]] += w[t[m], s[m]] / p[m]
    assert np.abs(acc / draws - w).max() < 0.12 * np.abs(w).max()
    assert np.abs((acc / draws).sum() - w.sum()) < 0.02 * np.abs(w).sum()


def test_lyapunov_modulation_drops_synapses_of_expanding_neurons_first():
    local = np.array([-0.5, -0.1, 0.2])
    q = lyapunov_factors(local, 1.0)
    assert q[0] == 1.0 and q[2] == pytest.approx(math.exp(-1)) and q[0] > q[1] > q[2]
    # the harmonic mean follows the less stable neighbour
    assert harmonic_mean(q[[0]], q[[2]])[0] < 0.5 * (q[0] + q[2])


# -- graph steps ----------------------------------------------------------------------------------

def test_betweenness_pruning_on_a_hand_made_graph():
    """Two triangles joined through neuron 6: it carries every path between them."""
    n = 7
    w = np.zeros((n, n))
    for a, b in [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 6), (6, 3)]:
        w[b, a] = w[a, b] = 0.5
    bc = betweenness(w, samples=256, seed=0)
    assert np.argmax(bc) == 6
    assert set(np.argsort(bc, kind="stable")[:2]) <= {0, 1, 4, 5}  # leaves of the triangles go first


def test_kron_reduction_reroutes_a_chain():
    # 0 -> 1 -> 2, remove 1: the new synapse 0 -> 2 carries w21 * g1 * w10
    w = np.zeros((3, 3))
    w[1, 0], w[2, 1] = 0.5, 0.4
    gains = np.array([1.0, 0.8, 1.0])
    keep = np.array([True, False, True])
    out = kron_reduce(w, gains, keep, np.ones(3))
    assert out[1, 0] == pytest.approx(0.4 * 0.8 * 0.5) and out[0, 1] == 0
    # Dale: with an inhibitory source 0, a positive fill-in from it is dropped
    w[1, 0] = -0.5
    w[2, 1] = -0.4
    assert kron_reduce(w, gains, keep, np.array([-1.0, -1.0, 1.0]))[1, 0] == 0.0


def test_kron_reduction_preserves_the_steady_state_of_the_linear_rate_model():
    rng = np.random.default_rng(0)
    n = 12
    w = rng.normal(size=(n, n)) * 0.2
    np.fill_diagonal(w, 0)
    g = rng.uniform(0.3, 1.0, n)
    u = rng.normal(size=n)
    keep = np.ones(n, bool)
    keep[[2, 5, 7]] = False
    u[~keep] = 0  # input only to kept neurons
    x = np.linalg.solve(np.eye(n) - g[:, None] * w, g * u)
    wk = kron_reduce(w, g, keep, np.ones(n) * 0)  # sign 0: Dale check disabled
    xk = np.linalg.solve(np.eye(keep.sum()) - g[keep][:, None] * wk, g[keep] * u[keep])
    # the diagonal of W' is zeroed (no autapses); compare with it kept
    r = ~keep
    full = w[np.ix_(keep, keep)] + w[np.ix_(keep, r)] @ np.linalg.solve(np.eye(r.sum()) - g[r][:, None] * w[np.ix_(r, r)], g[r][:, None] * w[np.ix_(r, keep)])
    xf = np.linalg.solve(np.eye(keep.sum()) - g[keep][:, None] * full, g[keep] * u[keep])
    assert np.allclose(xf, x[keep])
    assert np.allclose(wk - np.diag(np.diag(wk)), full - np.diag(np.diag(full)))
    assert xk.shape == xf.shape


def test_heterogeneity_gains_are_exact():
    rng = np.random.default_rng(0)
    w = (rng.random((25, 25)) < 0.12) * 1.0
    np.fill_diagonal(w, 0)
    absent = np.argwhere((w == 0) & ~np.eye(25, dtype=bool))[:30]
    gains = heterogeneity_gains(w, absent)
    base = local_heterogeneity(w)
    for (a, b), g in zip(absent, gains):
        w2 = w.copy()
        w2[a, b] = 1.0
        assert local_heterogeneity(w2) - base == pytest.approx(g, abs=1e-12)


def test_delocalisation_raises_the_measured_heterogeneity():
    w = arrays_of(small_net(80)).w_rec
    t, s = np.nonzero(w)
    rng = np.random.default_rng(0)
    drop = rng.random(len(t)) < 0.3
    pruned = w.copy()
    pruned[t[drop], s[drop]] = 0
    removed = np.stack([t[drop], s[drop]], 1)
    added, n = delocalise(pruned, removed, w[t[drop], s[drop]], 10, np.random.default_rng(1))
    assert n == 10
    random_add = pruned.copy()
    pick = removed[rng.choice(len(removed), 10, replace=False)]
    random_add[pick[:, 0], pick[:, 1]] = 1
    h0 = local_heterogeneity(pruned)
    assert local_heterogeneity(added) > h0
    assert local_heterogeneity(added) > local_heterogeneity(random_add)


def test_ipr_and_spectral_radius_on_known_matrices():
    n = 60
    ring = np.roll(np.eye(n), 1, axis=1) * 0.7  # circulant: eigenvectors spread evenly
    spec = leading_spectrum(ring)
    assert spec["spectral_radius"] == pytest.approx(0.7)
    assert spec["ipr"] == pytest.approx(1 / n)
    local = np.zeros((n, n))
    local[0, 1] = local[1, 0] = 1.0  # one pair: leading eigenvectors on two neurons
    assert leading_spectrum(local, k=2)["ipr"] == pytest.approx(0.5)


# -- timescales ------------------------------------------------------------------------------------

def test_redraw_keeps_the_ranking_and_the_distribution():
    rng = np.random.default_rng(0)
    tau = rng.gamma(3.0, 4.0 / 3.0, 2000)
    u = quantiles(tau, 4.0, 3.0)
    assert np.allclose(redraw(u, 4.0, 3.0, 0.0, False), tau, rtol=1e-6)
    new = redraw(u, 8.0, 2.0, 0.0, False)
    assert (np.argsort(new) == np.argsort(tau)).all()
    assert new.mean() == pytest.approx(8.0, rel=0.05)
    assert np.ptp(redraw(u, 5.0, 2.0, 1.0, True)) == 0


def test_timescale_optimisation_never_makes_the_objective_worse():
    model = small_net(40)
    arrays = arrays_of(model)
    u = quantiles(arrays.tau_mem, 4.0, 3.0)
    calls = []

    def evaluate(cand):  # an analytic landscape: best at a mean time constant of 6 steps
        calls.append(cand.tau_mem.mean())
        return -abs(cand.tau_mem.mean() - 6.0) / 10, 0.1

    start = objective(*evaluate(arrays), 0.0, (0.02, 0.3))
    new, dist = optimise(arrays, u, {"mean": 4.0, "shape": 3.0}, 4.0, 1.0, False, evaluate, 0.0, (0.02, 0.3), 12, seed=0)
    assert dist["objective"] >= start
    assert dist["objective"] > start + 0.01  # it found better time constants
    assert len(calls) == 1 + 13  # ours, then the current distribution and 12 candidates


# -- the loop ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_lnp_reaches_the_targets_and_records_each_iteration():
    model = HRSNN(HrsnnConfig(n_neurons=120, seed=0))
    res = lnp_prune(model, LnpConfig(target_neurons=0.5, target_synapses=0.5, seed=0, bo_evaluations=4))
    s = res.summary()
    assert s["neurons"] == 60 and res.model.cfg.n_neurons == 60
    assert abs(s["kept_synapses"] - 0.5) <= 0.02
    assert res.model.n_synapses()["recurrent"] == s["synapses"]
    keys = {"iteration", "neurons", "synapses", "lyapunov_max", "spectral_radius", "ipr", "mean_rate", "heterogeneity", "change", "seconds"}
    assert all(keys <= set(row) for row in res.record)
    assert [r["iteration"] for r in res.record] == list(range(len(res.record)))
    assert set(res.phase_seconds) == {"analysis", "neuron_pruning", "noise_pruning", "delocalisation", "timescales"}


def test_lnp_is_reproducible_with_a_seed():
    cfg = LnpConfig(target_neurons=0.6, target_synapses=0.5, seed=3, bo_evaluations=3, max_iterations=4)
    a = lnp_prune(HRSNN(HrsnnConfig(n_neurons=60, seed=1)), cfg).model
    b = lnp_prune(HRSNN(HrsnnConfig(n_neurons=60, seed=1)), cfg).model
    assert torch.equal(a.w_rec, b.w_rec) and torch.equal(a.tau_mem, b.tau_mem)


def test_loop_stops_when_nothing_changes_any_more():
    model = HRSNN(HrsnnConfig(n_neurons=50, seed=0))
    cfg = LnpConfig(target_neurons=1.0, target_synapses=1.0, prune_iterations=1, patience=3, timescale_optimisation=False)
    res = lnp_prune(model, cfg)
    assert res.stopped == "converged" and len(res.record) == 1 + 3
    assert all(r["change"] == 0 for r in res.record[1:])
    capped = lnp_prune(model, LnpConfig(target_neurons=1.0, target_synapses=1.0, max_iterations=2, patience=3, timescale_optimisation=False))
    assert capped.stopped == "max_iterations" and len(capped.record) == 3


def test_ablations_run_and_homogeneous_networks_stay_homogeneous():
    model = HRSNN(HrsnnConfig(n_neurons=60, seed=0))
    arrays = arrays_of(model)
    arrays.tau_mem[:] = arrays.tau_mem.mean()
    homo = build_hrsnn(model.cfg, arrays)
    cfg = LnpConfig(target_neurons=0.5, target_synapses=0.5, bo_evaluations=3, max_iterations=8, noise_pruning=False,
                    neuron_pruning_by_betweenness=False, delocalisation=False, lyapunov_modulation=False)
    res = lnp_prune(homo, cfg)
    assert np.ptp(res.model.tau_mem.numpy()) == 0
    assert res.summary()["neurons"] == 30


def test_analyse_network_reports_the_measures():
    row = analyse_network(HRSNN(HrsnnConfig(n_neurons=50, seed=0)))
    assert row["neurons"] == 50 and row["lyapunov_max"] < 0.5 and 0 < row["ipr"] <= 1 and row["spectral_radius"] > 0


def test_kron_reduction_does_not_create_negligible_synapses():
    w = np.zeros((3, 3))
    w[1, 0], w[2, 1], w[2, 0] = 0.5, 0.4, 0.3
    keep = np.array([True, False, True])
    weak = kron_reduce(w, np.array([1.0, 1e-4, 1.0]), keep, np.ones(3))  # fill-in 2e-5, below 1% of 0.4
    assert weak[1, 0] == pytest.approx(0.3 + 0.4 * 1e-4 * 0.5)  # an existing synapse still gets its share
    w[2, 0] = 0.0
    assert kron_reduce(w, np.array([1.0, 1e-4, 1.0]), keep, np.ones(3))[1, 0] == 0.0


def test_regrowth_adds_exactly_the_deficit_where_there_was_nothing():
    from spikeedge.offline.lnp.graph import regrow

    w = arrays_of(small_net(50)).w_rec
    sign = np.where(w.sum(0) < 0, -1.0, 1.0)
    out, n = regrow(w, 40, sign, 0.05, np.random.default_rng(0))
    new = (out != 0) & (w == 0)
    assert n == 40 and new.sum() == 40 and np.all(out[w != 0] == w[w != 0])
    t, s = np.nonzero(new)
    assert np.all(np.sign(out[t, s]) == sign[s]) and np.all(t != s)
    assert local_heterogeneity(out) > local_heterogeneity(w)


def test_lnp_prints_nothing_on_stdout(capfd):
    lnp_prune(HRSNN(HrsnnConfig(n_neurons=40, seed=0)), LnpConfig(bo_evaluations=6, max_iterations=3, seed=0))
    assert capfd.readouterr().out == ""

