"""Quantization invariants and the demo's acceptance: int8 within 10% (relative) of float."""

import numpy as np
import pytest

from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.quantize import quantize_hrsnn, quantize_per_row
from spikeedge.runtime.fixedpoint import THRESHOLD


def test_per_row_quantization_error_is_at_most_half_a_step():
    w = np.random.default_rng(0).normal(size=(20, 30))
    w[3] = 0.0
    q, s = quantize_per_row(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert np.all(np.abs(q * s[:, None] - w) <= s[:, None] / 2 + 1e-12)
    assert s[3] == 1.0 and not q[3].any()


def test_bundle_weights_and_multipliers_reproduce_float_currents():
    model = HRSNN(HrsnnConfig(n_neurons=64, n_inputs=2, encoder="rate", seed=1))
    b = quantize_hrsnn(model)
    layer = b.layers[0]
    w_rec = model.effective_w_rec().detach().double().numpy()
    # one int8 step of weight j, brought to state units, is w_rec_scale[j] / sigma
    sigma = model.cfg.threshold / THRESHOLD
    recon = layer.w_rec.to_dense() * (layer.m_rec[:, None] / 65536.0) * sigma
    assert np.allclose(recon, w_rec, atol=np.abs(w_rec).max() / 127)
    assert np.allclose(layer.a_mem / 65536.0, np.exp(-1 / model.tau_mem.double().numpy()), atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread_pool")
def test_demo_int8_within_ten_percent_of_float(tmp_path):
    from spikeedge.offline.pipeline import demo

    s = demo(tmp_path, quick=False, seed=0)
    assert s["dense_neurons"] == 500 and s["neurons"] == 250  # LNP-pruned to half
    assert abs(s["synapses"]["recurrent"] - 2500) <= 0.02 * 2500  # half the 5000 recurrent synapses (int8 may drop a few)
    assert abs(s["int8_smape"] - s["float_smape"]) <= 0.10 * s["float_smape"], s
    assert 0 < s["float_smape"] < 60
    assert (tmp_path / "model.seb").is_file() and (tmp_path / "hrsnn.ckpt.npz").is_file()
