"""The int8 export of a folded conv SNN against its float semantics (``offline/folded.py``).

``folded_forward`` (float64) is checked against a computation by hand; the int8 bundle must
then agree with it: exactly on the spikes up to the state rounding when the float weights already
lie on the int8 grid (the quantizer adds no error of its own: threshold exact, requantisation
to ~30 bits), and on the predicted class of most inputs for arbitrary weights (a tolerance).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_conv_runtime_exact import NETS, random_net

from spikeedge.offline.folded import FoldedConv, FoldedFlatten, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv
from spikeedge.offline.intref_conv import folded_forward
from spikeedge.offline.quantize_conv import quantize_folded
from spikeedge.runtime.sessions import open_session
from spikeedge.runtime.fixedpoint import THRESHOLD


def tiny_net(decay: float = 0.5, threshold: float = 2.0) -> FoldedNet:
    conv = FoldedConv(np.array([[[[1.0, 0.0], [0.0, 1.0]]]]), np.array([-0.5]), 1, 0, decay, threshold)
    readout = FoldedLinear(np.array([[2.0], [-1.0]]), np.array([0.1, 0.2]), False)
    return FoldedNet((1, 3, 3), 2, [conv, FoldedPool(2), FoldedFlatten(), readout], 2)


def test_folded_forward_by_hand():
    """x = [[1,2,0],[0,1,0],[2,0,1]], kernel = identity 2x2, bias -0.5: currents
    [[1.5, 1.5], [-0.5, 1.5]]. Step 1: mem = current, nothing reaches 2. Step 2: mem =
    0.5 * 1.5 + 1.5 = 2.25 >= 2 at three places (-0.75 at the fourth): spikes, pooled to 1.
    Readout per step: bias [0.1, 0.2], then 1 * [2, -1] + bias; mean over 2 steps [1.1, -0.3]."""
    x = np.array([[[[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]]])
    logits, spikes = folded_forward(tiny_net(), x, return_spikes=True)
    np.testing.assert_allclose(logits, [[1.1, -0.3]], rtol=0, atol=1e-12)
    assert spikes[0].shape == (2, 1, 1, 2, 2)
    np.testing.assert_array_equal(spikes[0][0, 0, 0], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(spikes[0][1, 0, 0], [[1, 1], [0, 1]])
    # IF (decay 1) with threshold 1.5: spikes at step 1, reset to 0, spike again at step 2
    logits_if, spikes_if = folded_forward(tiny_net(decay=1.0, threshold=1.5), x, return_spikes=True)
    np.testing.assert_array_equal(spikes_if[0][:, 0, 0], [[[1, 1], [0, 1]]] * 2)
    np.testing.assert_allclose(logits_if, [[2.1, -0.8]], atol=1e-12)
    # the int8 bundle of the tiny net: the same spikes and logits up to the readout's int8 step
    bundle = quantize_folded(tiny_net(), x, input_bits=8)
    session = open_session(bundle, record_spikes=True)
    y = session.run(x).outputs[:, -1]
    np.testing.assert_array_equal(np.stack(session.spike_history[0])[:, 0], spikes[0][:, 0])
    np.testing.assert_allclose(y, logits, atol=1e-9)


def test_threshold_is_exact_in_state_units():
    """An IF neuron whose current is exactly a quarter of the threshold fires at step 4, not 3
    or 5, in the float model and in the integer model (the threshold is the integer 16384)."""
    conv = FoldedConv(np.full((1, 1, 1, 1), 0.25), np.zeros(1), 1, 0, 1.0, 1.0)
    net = FoldedNet((1, 2, 2), 8, [conv, FoldedFlatten(), FoldedLinear(np.ones((1, 4)), np.zeros(1), False)], 1)
    x = np.ones((1, 1, 2, 2))
    bundle = quantize_folded(net, x, input_bits=16)
    session = open_session(bundle, record_spikes=True)
    session.run(x)
    fired = np.stack(session.spike_history[0])[:, 0, 0, 0, 0]
    _, float_spikes = folded_forward(net, x, return_spikes=True)
    np.testing.assert_array_equal(fired, [0, 0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(float_spikes[0][:, 0, 0, 0, 0], fired)
    layer = bundle.layers[0]
    assert layer.decay == 1 << 16 and layer.weight[0, 0, 0, 0] == 127
    assert bundle.provenance["quantization"]["state_scales"]["conv0"] == 1.0 / THRESHOLD


def snap_to_int8_grid(net: FoldedNet) -> FoldedNet:
    layers = []
    for layer in net.layers:
        if isinstance(layer, (FoldedConv, FoldedLinear, FoldedStreamConv)):
            w = np.asarray(layer.weight, np.float64)
            flat = w.reshape(w.shape[0], -1)
            s = np.abs(flat).max(axis=1, keepdims=True) / 127
            layer = dataclasses.replace(layer, weight=(np.round(flat / s) * s).reshape(w.shape))
        layers.append(layer)
    return dataclasses.replace(net, layers=layers)


@pytest.mark.parametrize("name", sorted(NETS))
def test_on_grid_weights_the_spikes_are_those_of_the_float_model(name):
    """Weights on the per-channel int8 grid and inputs on the 16-bit grid: the integer model adds
    only the Q16 decay and the state rounding (1/16384 of the threshold), so at most a few
    spikes in a thousand differ (IF: about one in ten thousand), and the classes agree."""
    shape, spec, decay, _ = NETS[name]
    for seed in range(2):
        net = snap_to_int8_grid(random_net(seed, shape, spec, decay))
        x = np.random.default_rng(seed + 100).uniform(-0.2, 1.0, size=(60,) + shape)
        step = np.abs(x).max() / 32767
        x = np.round(x / step) * step
        bundle = quantize_folded(net, x, input_bits=16)
        logits, float_spikes = folded_forward(net, x, return_spikes=True)
        session = open_session(bundle, record_spikes=True)
        y = session.run(x).outputs[:, -1]
        for hist, ref in zip(session.spike_history, float_spikes):
            assert np.mean(np.stack(hist) == ref) >= (0.999 if decay == 1.0 else 0.995)
        assert np.mean(np.argmax(y, 1) == np.argmax(logits, 1)) >= 0.95


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("name", ["vgg28", "stride2-if-8bit", "lif-pad1-stride2", "nonsquare-pool3", "resnet-mini"])
def test_int8_bundle_predicts_the_float_class_on_most_inputs(name, bits):
    """Arbitrary float weights: int8 rounding flips a few spikes near threshold, and random
    (untrained) nets have many near-tied logits, so the tolerance is loose: per net, >= 93% of
    spikes and, over three seeds, >= 85% of predicted classes agree."""
    shape, spec, decay, _ = NETS[name]
    agree = []
    for seed in range(3):
        net = random_net(seed, shape, spec, decay, gain=1.5)
        x = np.random.default_rng(seed + 100).uniform(-0.2, 1.0, size=(100,) + shape)
        bundle = quantize_folded(net, x, input_bits=bits)
        logits, float_spikes = folded_forward(net, x, return_spikes=True)
        session = open_session(bundle, record_spikes=True)
        y = session.run(x).outputs[:, -1]
        for hist, ref in zip(session.spike_history, float_spikes):
            assert np.mean(np.stack(hist) == ref) >= 0.93
        agree.append(np.mean(np.argmax(y, 1) == np.argmax(logits, 1)))
    assert np.mean(agree) >= 0.85, agree


def test_quantizer_fields():
    shape, spec, decay, _ = NETS["vgg28"]
    net = random_net(0, shape, spec, decay)
    x = np.random.default_rng(0).uniform(0, 1, size=(4,) + shape)
    bundle = quantize_folded(net, x, input_bits=8, provenance={"pruning": {"method": "none"}})
    assert bundle.encoder.bits == 8 and bundle.encoder.scale == pytest.approx(np.abs(x).max() / 127)
    assert bundle.time_steps == net.time_steps and bundle.input_shape == shape and bundle.output == "last"
    assert bundle.provenance["pruning"] == {"method": "none"} and bundle.provenance["model"] == "convsnn"
    s_in = bundle.encoder.scale
    for layer, folded in zip(bundle.layers, net.layers):
        if layer.kind not in ("conv_lif", "linear_lif"):
            continue
        sigma = folded.threshold / THRESHOLD
        w = np.asarray(folded.weight, np.float64).reshape(folded.weight.shape[0], -1)
        np.testing.assert_allclose(layer.w_scale, np.abs(w).max(axis=1) / 127)
        np.testing.assert_array_equal(layer.weight.reshape(len(w), -1), np.round(w / layer.w_scale[:, None]))
        np.testing.assert_allclose(layer.m / 2.0**layer.shift, layer.w_scale * s_in / sigma, rtol=1e-8)
        assert layer.m.max() < 2**31 and layer.m.max() >= 2**29  # ~30 significant bits
        np.testing.assert_array_equal(layer.bias, np.round(np.asarray(folded.bias, np.float64) / sigma))
        assert layer.decay == round(decay * 65536)
        s_in = 1.0
    np.testing.assert_allclose(bundle.readout.acc_scale, np.abs(net.layers[-1].weight).max(axis=1) / 127)


def test_quantizer_refuses_what_it_cannot_represent():
    shape, spec, decay, _ = NETS["stride2-if-8bit"]
    net = random_net(0, shape, spec, decay)
    with pytest.raises(ValueError, match="last layer must be a non-spiking"):
        quantize_folded(dataclasses.replace(net, layers=net.layers[:-1]))
    middle = dataclasses.replace(net.layers[3], spiking=False)
    with pytest.raises(ValueError, match="only the last layer may be non-spiking"):
        quantize_folded(dataclasses.replace(net, layers=net.layers[:3] + [middle] + net.layers[4:]))
    with pytest.raises(ValueError, match="input_bits"):
        quantize_folded(net, input_bits=12)
    wide = FoldedConv(np.ones((2, 64, 3, 3)), np.zeros(2), 1, 1, 1.0, 1.0)
    big = FoldedNet((64, 4, 4), 2, [wide, FoldedFlatten(), FoldedLinear(np.ones((2, 32)), np.zeros(2), False)], 2)
    with pytest.raises(ValueError, match="overflow"):
        quantize_folded(big, input_bits=16)
    assert quantize_folded(big, input_bits=8).encoder.bits == 8
