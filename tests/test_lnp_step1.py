"""LNP's step 1 as issue 20 asks for it (independent per-neuron noise, linear-response gains,
neighbourhood-averaged Lyapunov modulation that changes decisions), the edge regime, and the
subgraph mode."""

import numpy as np
import pytest
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.lnp import LnpConfig, lnp_prune
from spikeedge.offline.lnp.dynamics import Drive
from spikeedge.offline.surgery import arrays_of


def small_net(n=40, seed=0, **kw):
    return HRSNN(HrsnnConfig(n_neurons=n, seed=seed, ws_neighbours=6, **kw))



def _edge_step1(n=150, seed=0):
    """(arrays, analysis, targets, sources, plain scores, modulated scores) on the edge network."""
    import warnings

    from spikeedge.offline.lnp.analysis import full_analysis, noise_frames
    from spikeedge.offline.lnp.loop import synapse_survival_scores
    from spikeedge.offline.lnp.regime import regime_config

    model = HRSNN(regime_config("edge", n_neurons=n, seed=seed))
    a, cfg = arrays_of(model), LnpConfig(seed=seed)
    frames = noise_frames(a.n, cfg.noise_steps, cfg.transient_steps, cfg.noise_std, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an, row = full_analysis(a, frames, model.cfg, cfg)
        t, s, plain, _ = synapse_survival_scores(a, an.gains, an.local, LnpConfig(seed=seed, lyapunov_modulation=False))
        _, _, modulated, _ = synapse_survival_scores(a, an.gains, an.local, cfg)
    return a, an, row, t, s, plain, modulated


def test_noise_drive_is_independent_per_neuron():
    from spikeedge.offline.lnp.analysis import drive_of, noise_frames, noise_scale

    a = arrays_of(small_net(50))
    cur = drive_of(a, noise_frames(a.n, 2000, 0, 1.0, 0), 0).current - a.bias
    corr = np.corrcoef(cur.T)
    assert np.abs(corr[~np.eye(a.n, dtype=bool)]).max() < 0.12  # broadcast through W_in it would be +-1
    assert cur.std() == pytest.approx(noise_scale(a), rel=0.05)


def test_linear_response_gains_are_the_derivative_and_positive_for_silent_neurons():
    from spikeedge.offline.lnp.dynamics import linear_response_gains, spiking_statistics

    a = arrays_of(small_net(40, bias_mean=-0.2))
    rng = np.random.default_rng(0)
    drive = Drive(rng.normal(0, 0.3, size=(400, a.n)) + a.bias, 50)
    record = []
    rates, _, _ = spiking_statistics(a, drive, 1.0, False, record)
    g = linear_response_gains(a, record[0], 50, 1.0, False, 0.25)
    eps = 1e-5
    # finite difference of the same single-neuron replay: the derivative of its mean soft spike probability
    def mean_soft(shift):
        from spikeedge.offline.lnp.dynamics import decays

        a_syn, a_mem = decays(a.tau_syn), decays(a.tau_mem)
        syn, mem, acc = np.zeros(a.n), np.zeros(a.n), np.zeros(a.n)
        for t, cur in enumerate(record[0]):
            syn = a_syn * syn + cur + shift
            v = a_mem * mem + syn
            s = 0.5 * (1 + np.tanh(0.5 * (v - 1.0) / 0.25))
            mem = v - s
            acc += s if t >= 50 else 0
        return acc / 350
    fd = (mean_soft(eps) - mean_soft(-eps)) / (2 * eps)
    assert np.allclose(g, fd, rtol=1e-4, atol=1e-9)
    assert (rates == 0).any() and np.all(g[rates == 0] > 0)


def test_neighbourhood_mean_averages_over_the_closed_neighbourhood():
    from spikeedge.offline.lnp.noise import neighbourhood_mean

    w = np.zeros((4, 4))
    w[1, 0] = 0.5  # 0 -> 1
    w[2, 1] = -0.2  # 1 -> 2
    out = neighbourhood_mean(np.array([1.0, 2.0, 3.0, 10.0]), w)
    assert out == pytest.approx([1.5, 2.0, 2.5, 10.0])


def test_on_the_edge_network_the_noise_score_is_not_magnitude_and_the_modulation_decides():
    """Issue 20: the noise score must not rank synapses like |w| (tau_i + tau_j) (it did, Spearman
    1.000, with rate gains 0 for silent neurons and broadcast noise), and the Lyapunov modulation
    must change keep decisions, not just move the ranking by Spearman 0.998."""
    from scipy.stats import spearmanr
    from spikeedge.offline.lnp.noise import keep_probabilities

    a, an, row, t, s, plain, modulated = _edge_step1()
    assert row["lyapunov_max"] > -0.03 and row["spectral_radius"] >= 1 and row["active_fraction"] >= 0.8
    mag = np.abs(a.w_rec[t, s]) * (a.tau_mem[t] + a.tau_mem[s])
    assert spearmanr(plain, mag)[0] < 0.95
    count = int(0.2 * len(t))
    p0, p1 = keep_probabilities(plain, count), keep_probabilities(modulated, count)
    top0, top1 = set(np.argsort(-p0)[:count]), set(np.argsort(-p1)[:count])
    assert len(top0 - top1) / count > 0.05  # the modulation changes which synapses are most likely kept
    assert np.all(an.gains[an.rates == 0] > 0)


@pytest.mark.slow
def test_subgraph_mode_returns_a_subgraph_of_the_start():
    model = HRSNN(HrsnnConfig(n_neurons=60, seed=0, rec_gain=1.5, ws_neighbours=20))
    start = arrays_of(model).w_rec
    res = lnp_prune(model, LnpConfig(target_neurons=0.5, target_synapses=0.2, seed=0, bo_evaluations=3, max_iterations=7, subgraph=True))
    w = arrays_of(res.model).w_rec
    sub = start[np.ix_(res.kept, res.kept)]
    assert res.model.cfg.n_neurons == 30 and len(res.kept) == 30
    assert np.all(sub[w != 0] != 0) and np.all(np.sign(w[w != 0]) == np.sign(sub[w != 0]))
    assert sum(r["regrown"] for r in res.record) == 0
    full = lnp_prune(model, LnpConfig(target_neurons=0.5, target_synapses=0.2, seed=0, bo_evaluations=3, max_iterations=7,
                                      subgraph=False, rescale=False, timescale_optimisation=False))
    wf = arrays_of(full.model).w_rec
    sub_f = start[np.ix_(full.kept, full.kept)]
    assert np.any((wf != 0) & (sub_f == 0)) or np.any(wf[sub_f != 0] != sub_f[sub_f != 0])  # full mode rewires or re-weights
