"""The conv runtime equals the offline integer reference bit for bit.

Two implementations of the integer model of a ``ConvBundle``: ``runtime.conv_session.ConvSession``
(numpy; event scatter, dense im2col, or the automatic choice) and
``offline.intref_conv.ConvIntegerReference`` (torch int64 ``conv2d`` and products). Spikes of
every neuron at every step, the outputs, the spike counts and the synaptic operations must be
identical, for random nets with stride 1 and 2, padding 0 and 1, non-square kernels and inputs,
IF and LIF neurons, 8- and 16-bit inputs, and several images in one batch.

``random_net`` is the factory of hand-made ``FoldedNet``s the other conv tests use as well.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeedge.offline.folded import (FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv,
                                     FoldedStreamLif, FoldedSumPool)
from spikeedge.offline.intref_conv import ConvIntegerReference
from spikeedge.offline.quantize_conv import quantize_folded
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.conv_session import ConvSession
from spikeedge.runtime.sessions import open_session

# (name, input shape, layer spec, neuron decay, input bits). Layer spec:
# ("conv", out, (kh, kw), stride, padding) | ("pool", size) | ("flatten",) | ("fc", out) | ("readout", classes)
# | ("stream", out, (kh, kw), stride, padding, add) | ("slif",) | ("gpool",)   (a pre-activation ResNet)
# | ("sumpool", (kh, kw), (sh, sw), average)   (NIR's SumPool2d / AvgPool2d)
NETS = {
    "vgg28": ((1, 28, 28), [("conv", 8, (3, 3), 1, 1), ("pool", 2), ("conv", 16, (3, 3), 1, 1), ("pool", 2), ("flatten",),
                            ("fc", 32), ("readout", 10)], 0.8, 16),
    "stride2-if-8bit": ((3, 8, 8), [("conv", 6, (3, 3), 2, 0), ("conv", 5, (2, 2), 1, 1), ("flatten",), ("fc", 12), ("readout", 4)], 1.0, 8),
    "nonsquare-pool3": ((2, 9, 7), [("conv", 4, (3, 1), 2, 0), ("conv", 6, (3, 3), 1, 1), ("pool", 3), ("flatten",), ("readout", 3)], 1.0, 16),
    "lif-pad1-stride2": ((1, 8, 8), [("conv", 8, (3, 3), 2, 1), ("conv", 8, (3, 3), 2, 1), ("flatten",), ("fc", 16), ("fc", 16), ("readout", 10)], 0.5, 8),
    "narrowing": ((6, 9, 8), [("conv", 8, (3, 3), 1, 1), ("conv", 4, (3, 3), 1, 1), ("conv", 2, (2, 3), 1, 0), ("flatten",), ("readout", 3)], 0.7, 16),
    "resnet-mini": ((1, 8, 8), [("stream", 4, (3, 3), 1, 1, False), ("slif",), ("conv", 6, (3, 3), 1, 1), ("stream", 4, (3, 3), 1, 1, True),
                                ("slif",), ("stream", 8, (3, 3), 2, 1, False), ("slif",), ("conv", 5, (3, 3), 1, 1), ("stream", 8, (3, 3), 1, 1, True),
                                ("slif",), ("gpool",), ("readout", 3)], 0.8, 16),
    "resnet-if-8bit": ((2, 7, 6), [("stream", 5, (3, 3), 1, 1, False), ("slif",), ("conv", 3, (3, 3), 1, 1), ("stream", 5, (3, 3), 1, 1, True),
                                   ("slif",), ("conv", 4, (1, 1), 1, 0), ("stream", 5, (1, 1), 1, 0, True), ("slif",), ("gpool",), ("fc", 7),
                                   ("readout", 2)], 1.0, 8),
    "mlp-on-image": ((1, 6, 6), [("flatten",), ("fc", 20), ("readout", 5)], 0.9, 16),
    "sum-avg-pool": ((2, 9, 8), [("conv", 6, (3, 3), 1, 1), ("sumpool", (2, 2), (2, 2), False), ("conv", 5, (3, 3), 1, 1),
                                 ("sumpool", (2, 3), (1, 1), True), ("flatten",), ("fc", 10), ("readout", 3)], 0.8, 16),
    "avgpool-image-8bit": ((1, 8, 8), [("sumpool", (2, 2), (2, 2), True), ("conv", 4, (3, 3), 1, 1), ("sumpool", (3, 3), (1, 1), False),
                                       ("flatten",), ("readout", 3)], 0.6, 8),
}


def random_net(seed: int, input_shape: Sequence[int], spec: List[tuple], decay: float = 0.8, time_steps: int = 4, gain: float = 2.5) -> FoldedNet:
    """A random FoldedNet whose spiking layers fire at a few to a few tens of percent."""
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    layers: List[Any] = []
    for item in spec:
        if item[0] == "conv":
            _, out, (kh, kw), stride, padding = item
            fan = shape[0] * kh * kw
            w = rng.normal(0, gain / np.sqrt(fan), (out, shape[0], kh, kw)).astype(np.float32)
            layers.append(FoldedConv(w, rng.normal(0.05, 0.1, out).astype(np.float32), stride, padding, decay, float(rng.uniform(0.5, 1.5))))
            shape = (out, (shape[1] + 2 * padding - kh) // stride + 1, (shape[2] + 2 * padding - kw) // stride + 1)
        elif item[0] == "stream":
            _, out, (kh, kw), stride, padding, add = item
            w = rng.normal(0, gain / np.sqrt(shape[0] * kh * kw), (out, shape[0], kh, kw)).astype(np.float32)
            layers.append(FoldedStreamConv(w, stride, padding, add))
            shape = (out, (shape[1] + 2 * padding - kh) // stride + 1, (shape[2] + 2 * padding - kw) // stride + 1)
        elif item[0] == "slif":  # BatchNorm on the stream: scales of both signs
            scale = (rng.uniform(0.5, 1.5, shape[0]) * rng.choice([-1.0, 1.0], shape[0], p=[0.2, 0.8])).astype(np.float32)
            layers.append(FoldedStreamLif(scale, rng.normal(0.1, 0.2, shape[0]).astype(np.float32), decay, float(rng.uniform(0.5, 1.5))))
        elif item[0] == "gpool":
            layers.append(FoldedGlobalPool())
            shape = (shape[0],)
        elif item[0] == "sumpool":
            _, (kh, kw), (sh, sw), average = item
            layers.append(FoldedSumPool((kh, kw), (sh, sw), average))
            shape = (shape[0], (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1)
        elif item[0] == "pool":
            layers.append(FoldedPool(item[1]))
            shape = (shape[0], shape[1] // item[1], shape[2] // item[1])
        elif item[0] == "flatten":
            layers.append(FoldedFlatten())
            shape = (int(np.prod(shape)),)
        else:
            out = item[1]
            spiking = item[0] == "fc"
            w = rng.normal(0, gain / np.sqrt(shape[0]), (out, shape[0])).astype(np.float32)
            layers.append(FoldedLinear(w, rng.normal(0.05, 0.1, out).astype(np.float32), spiking, decay, float(rng.uniform(0.5, 1.5))))
            shape = (out,)
    return FoldedNet(tuple(input_shape), time_steps, layers, shape[0])


def net_and_bundle(name: str, seed: int, time_steps: int = 4):
    shape, spec, decay, bits = NETS[name]
    net = random_net(seed, shape, spec, decay, time_steps)
    x = np.random.default_rng(seed + 100).uniform(-0.2, 1.0, size=(5,) + shape)
    bundle = fmt.loads(fmt.dumps(quantize_folded(net, x, input_bits=bits)))
    return net, bundle, x


def synops_brute_force(bundle, spikes: List[np.ndarray], images: np.ndarray) -> int:
    """Synaptic operations recounted from the definition: for every layer and step, the pairs
    (non-zero input, non-zero weight) that reach an output = ``conv2d(x != 0, w != 0)`` summed."""
    enc = bundle.encoder
    img = np.clip(np.round(images / enc.scale), -(2 ** (enc.bits - 1) - 1), 2 ** (enc.bits - 1) - 1)
    total = 0
    for t in range(len(spikes[0])):
        h = torch.from_numpy((img != 0).astype(np.float64))
        k = 0
        for layer in bundle.layers:
            if layer.kind == "maxpool":
                h = F.max_pool2d(h, layer.size)
            elif layer.kind == "flatten":
                h = h.flatten(1)
            elif layer.kind == "global_sum_pool":
                h = h.sum(dim=(2, 3))
            elif layer.kind == "sum_pool":  # a window sum: non-zero where any input in it is
                h = F.avg_pool2d(h, (layer.kernel_h, layer.kernel_w), (layer.stride_h, layer.stride_w)) * (layer.kernel_h * layer.kernel_w)
            elif layer.kind == "conv_stream":
                nz = torch.from_numpy((layer.weight != 0).astype(np.float64))
                total += int(F.conv2d((h != 0).double(), nz, stride=layer.stride, padding=layer.padding).sum())
            elif layer.kind == "stream_lif":  # no synapses: reads the stream, gives spikes
                h = torch.from_numpy(spikes[k][t].astype(np.float64))
                k += 1
            else:
                nz = torch.from_numpy((layer.weight != 0).astype(np.float64))
                hz = (h != 0).double()  # a spike count over a pooled map is one non-zero input
                total += int((F.conv2d(hz, nz, stride=layer.stride, padding=layer.padding) if layer.kind == "conv_lif" else hz @ nz.T).sum())
                h = torch.from_numpy(spikes[k][t].astype(np.float64))
                k += 1
        total += int(((h.flatten(1) != 0).double() @ torch.from_numpy((bundle.readout.weight != 0).astype(np.float64)).T).sum())
    return total


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runtime_equals_integer_reference_bit_for_bit(name, seed):
    _, bundle, x = net_and_bundle(name, seed, time_steps=6)
    ref = ConvIntegerReference(bundle)
    y_ref = ref.run(x)
    s_ref = [np.stack(h) for h in ref.spike_history]
    results = {}
    for method in ("event", "dense", "auto"):
        session = ConvSession(bundle, record_spikes=True, method=method)
        result = session.run(x)
        assert result.outputs.shape == (len(x), 6, bundle.n_outputs)
        assert np.array_equal(result.outputs, y_ref), method
        for k, hist in enumerate(session.spike_history):
            assert np.array_equal(np.stack(hist), s_ref[k]), (method, k)
        assert result.spike_counts == {layer.name: int(s.sum()) for layer, s in zip(bundle.spiking_layers, s_ref)}
        results[method] = result
    assert results["event"].synops == results["dense"].synops == results["auto"].synops == synops_brute_force(bundle, s_ref, x)
    rates = [s.mean() for s in s_ref]
    assert all(0.003 < r < 0.9 for r in rates), "a test net that never or always spikes proves little: %s" % rates


def test_step_by_step_equals_run_and_reference():
    """``start``/``step`` (what ``tasks.protocols.classify`` uses), images flat or shaped."""
    _, bundle, x = net_and_bundle("vgg28", 3)
    session = open_session(bundle, len(x))
    assert isinstance(session, ConvSession)
    ref = ConvIntegerReference(bundle)
    session.start(len(x), x.reshape(len(x), -1))
    ref.start(len(x))
    for t in range(bundle.time_steps):
        y = session.step(x.reshape(len(x), -1) if t % 2 else x)
        assert np.array_equal(y, ref.step(x))
    assert np.array_equal(y, open_session(bundle).run(x).outputs[:, -1])


def test_single_image_and_batch_independence():
    """Images in a batch do not interact: each alone gives its row of the batch's outputs."""
    _, bundle, x = net_and_bundle("stride2-if-8bit", 4)
    batch = open_session(bundle).run(x).outputs
    for i in range(len(x)):
        assert np.array_equal(open_session(bundle).run(x[i]).outputs[0], batch[i])


def test_long_runs_and_saturation_stay_exact():
    """Strong inputs and many steps: large membranes and currents, still identical."""
    shape, spec, decay, bits = NETS["lif-pad1-stride2"]
    net = random_net(7, shape, spec, 1.0, time_steps=40, gain=8.0)
    x = np.random.default_rng(0).uniform(-3, 3, size=(3,) + shape)
    bundle = quantize_folded(net, x, input_bits=16)
    assert np.array_equal(open_session(bundle, method="event").run(x).outputs, ConvIntegerReference(bundle).run(x))
    assert np.array_equal(open_session(bundle, method="dense").run(x).outputs, ConvIntegerReference(bundle).run(x))


@pytest.mark.parametrize("kernel,padding", [((3, 3), 0), ((3, 3), 1), ((3, 3), 2), ((2, 3), 1), ((1, 1), 0), ((3, 1), 0)])
@pytest.mark.parametrize("out_channels", [1, 3, 4])
def test_narrowing_conv_takes_the_shifted_product_and_equals_torch_conv2d(kernel, padding, out_channels, monkeypatch):
    """A stride-1 layer with fewer output than active input channels takes the shifted product
    on the dense path (every kernel offset in one product, then shifted adds); it and the event
    path equal int64 ``conv2d``, operation counts included, with some input channels silent."""
    from spikeedge.runtime import conv_ops as rc

    taken = []
    real = rc.ConvOp._shifted
    monkeypatch.setattr(rc.ConvOp, "_shifted", lambda self, x, active: taken.append(active.size) or real(self, x, active))
    kh, kw = kernel
    rng = np.random.default_rng(out_channels * 100 + kh * 10 + kw + padding)
    w = rng.integers(-128, 128, size=(out_channels, 8, kh, kw)).astype(np.int8)
    w[0, 3] = 0  # a kernel slice without weights
    layer = fmt.ConvLifLayer("c", 8, out_channels, kh, kw, 1, padding, 65536, 16, w, np.ones(out_channels, np.int64), np.zeros(out_channels, np.int32), np.ones(out_channels))
    op = rc.ConvOp(layer, (8, 7, 6), 1)
    for silent in ([], [1, 5]):
        x = (rng.random((3, 8, 7, 6)) < 0.3).astype(np.uint8)
        x[:, silent] = 0
        expected = F.conv2d(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(w.astype(np.int64)), padding=padding).numpy()
        nz = F.conv2d(torch.from_numpy((x != 0).astype(np.float64)), torch.from_numpy((w != 0).astype(np.float64)), padding=padding)
        (a, n_a), (b, n_b) = op.event(x), op.dense(x)
        assert np.array_equal(a, expected) and np.array_equal(b, expected)
        assert n_a == n_b == int(nz.sum())
    assert taken == [8, 6]  # both calls of the dense path took it, over the active channels


@pytest.mark.parametrize("rate", [0.0, 0.005, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_conv_accumulation_paths_equal_torch_conv2d(rate, stride, padding):
    """Both accumulation paths of one conv layer equal int64 ``conv2d``, with silent input
    channels (the dense path skips them) and inputs of any sign (the image)."""
    from spikeedge.runtime.conv_ops import ConvOp

    rng = np.random.default_rng(int(rate * 1000) + stride * 10 + padding)
    w = rng.integers(-128, 128, size=(5, 4, 3, 3)).astype(np.int8)
    w[1] = 0  # an output channel without weights
    layer = fmt.ConvLifLayer("c", 4, 5, 3, 3, stride, padding, 65536, 16, w, np.ones(5, np.int64), np.zeros(5, np.int32), np.ones(5))
    for values in ([1], [-3, 7, 32767, -32767]):
        x = (rng.random((3, 4, 9, 8)) < rate) * rng.choice(values, size=(3, 4, 9, 8))
        x[:, 2] = 0  # a silent input channel
        op = ConvOp(layer, (4, 9, 8), max(abs(v) for v in values))
        expected = F.conv2d(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(w.astype(np.int64)), stride=stride, padding=padding).numpy()
        (a, n_a), (b, n_b) = op.event(x), op.dense(x)
        assert np.array_equal(a, expected) and np.array_equal(b, expected)
        nz = F.conv2d(torch.from_numpy((x != 0).astype(np.float64)), torch.from_numpy((w != 0).astype(np.float64)), stride=stride, padding=padding)
        assert n_a == n_b == int(nz.sum())


def test_task_protocol_classifies_conv_bundles_with_their_own_time_steps():
    """``tasks.protocols.classify`` (used by ``spikeedge eval``) runs a conv bundle for its T
    steps, whatever the task's sequence length, and agrees with ``ConvSession.run``."""
    from spikeedge.tasks.protocols import classify

    net, bundle, _ = net_and_bundle("vgg28", 0, time_steps=3)
    images = np.random.default_rng(5).random((6,) + tuple(net.input_shape))
    frames = np.broadcast_to(images.reshape(6, 1, -1), (6, 16, images[0].size))  # as image tasks give them
    outputs = ConvSession(bundle).run(images).outputs  # (images, steps, classes)
    expected = np.argmax(outputs[:, -1], axis=-1)
    got = classify(open_session(bundle), frames, expected)
    assert got["accuracy"] == 1.0


def test_classify_takes_the_whole_run_path_for_static_images_and_steps_otherwise(monkeypatch: Any) -> None:
    """Static images go through ``infer_images`` (layer by layer over all steps); frames that
    change between steps are stepped. Both give the step-by-step predictions."""
    from spikeedge.tasks.protocols import classify

    net, bundle, _ = net_and_bundle("vgg28", 1, time_steps=3)
    rng = np.random.default_rng(6)
    images = rng.random((8,) + tuple(net.input_shape))
    frames = np.broadcast_to(images.reshape(8, 1, -1), (8, 3, images[0].size))
    stepped = open_session(bundle, 8)
    stepped.start(8)
    for t in range(3):
        y = stepped.step(frames[:, t])
    labels = np.argmax(y, axis=1)
    calls: List[int] = []
    real = ConvSession.infer_images
    monkeypatch.setattr(ConvSession, "infer_images", lambda self, x: calls.append(len(x)) or real(self, x))
    assert classify(open_session(bundle), frames, labels)["accuracy"] == 1.0 and calls == [8]
    moving = frames.copy()
    moving[:, 1] = rng.random(moving[:, 1].shape)  # not static: stepped, frame by frame
    calls.clear()
    s = open_session(bundle, 8)
    s.start(8)
    for t in range(3):
        y = s.step(moving[:, t])
    assert classify(open_session(bundle), moving, np.argmax(y, axis=1))["accuracy"] == 1.0 and calls == []
