"""NeuroBench's own numbers (the ``neurobench`` package, 2.x) beside spikeedge's on the float
models: the digits VGG and the demo-sized HRSNN, seen by NeuroBench's hooks without an adapter
(standard ``nn.Linear``/``nn.Conv2d`` layers, and the spiking modules ``LifLayer``/``Fire``
added to NeuroBench's activation list, its documented extension point). Skipped without
neurobench (a dev/test peer, installed with --no-deps)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("snntorch")  # neurobench's hooks import it
pytest.importorskip("neurobench")

from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # noqa: E402
from neurobench.models import TorchModel  # noqa: E402

from spikeedge.measure.bench_record import dense_ops_per_step  # noqa: E402
from spikeedge.measure.summary import describe  # noqa: E402
from spikeedge.offline.checkpoint import RECORD_KEY, load_checkpoint, save_checkpoint  # noqa: E402
from spikeedge.offline.convsnn import ConvConfig, ConvSNN, count_ops, fold  # noqa: E402
from spikeedge.offline.convsnn_layers import LifLayer  # noqa: E402
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig  # noqa: E402
from spikeedge.offline.neurons import Fire  # noqa: E402
from spikeedge.offline.quantize import quantize_hrsnn  # noqa: E402
from spikeedge.offline.quantize_conv import quantize_folded  # noqa: E402
from spikeedge.offline.workload import neurobench_metrics  # noqa: E402
from spikeedge.runtime.sessions import open_session  # noqa: E402
from spikeedge.tasks.images import load_digits_split  # noqa: E402


def run_neurobench(net: torch.nn.Module, x: torch.Tensor, spiking: type) -> dict:
    """NeuroBench's metrics as its harness computes them (hooks registered by its model wrapper,
    the metric objects called on one batch)."""
    model = TorchModel(net)
    model.add_activation_module(spiking)
    model.register_hooks()
    try:
        with torch.no_grad():
            preds = model(x)
        return {"SynapticOperations": SynapticOperations()(model, preds, (x, None)),
                "ActivationSparsity": ActivationSparsity()(model, preds, (x, None)),
                "ParameterCount": ParameterCount()(model), "Footprint": Footprint()(model),
                "ConnectionSparsity": ConnectionSparsity()(model)}
    finally:
        model.cleanup_hooks()


def digits_vgg() -> tuple:
    """The digits VGG (``train convsnn --task digits --width 0.5``'s architecture) with BatchNorm
    statistics that make every layer spike (about a third of the neurons per step; untrained
    statistics leave the deeper layers silent and their counts zero), and 64 test images."""
    net = ConvSNN(ConvConfig(in_size=8, n_classes=10, width=0.5, seed=0))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.02 + 0.05 * torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1.0 + 0.5 * torch.rand(m.num_features, generator=gen))
    x = torch.as_tensor(np.asarray(load_digits_split(seed=0)[2][:64], np.float32)).reshape(-1, 1, 8, 8)
    return net, x


def demo_hrsnn() -> tuple:
    """The demo's HRSNN (``spikeedge demo``: 500 neurons, direct encoder, one input and output,
    ``offline/pipeline.py``) with a non-zero readout, and 4 windows of 200 steps."""
    net = HRSNN(HrsnnConfig(n_inputs=1, n_neurons=500, n_outputs=1, seed=0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net.readout.weight.copy_(0.1 * torch.randn(net.readout.weight.shape, generator=gen))
    t = torch.arange(200, dtype=torch.float32)
    x = torch.stack([torch.sin(0.07 * t + k)[:, None] * 2.0 for k in range(4)])  # (4, 200, 1)
    return net, x


def _agree(ours: dict, theirs: dict) -> None:
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert ours["SynapticOperations"][key] == pytest.approx(theirs["SynapticOperations"][key], rel=1e-9), key
    assert ours["ActivationSparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-12)
    assert ours["ParameterCount"] == theirs["ParameterCount"]
    assert ours["Footprint"] == theirs["Footprint"]
    assert ours["ConnectionSparsity"] == pytest.approx(theirs["ConnectionSparsity"], abs=1e-4)  # NeuroBench rounds to 4 digits


def test_digits_vgg_agrees_with_neurobench() -> None:
    torch.manual_seed(0)
    net, x = digits_vgg()
    theirs = run_neurobench(net, x, LifLayer)
    ours = neurobench_metrics(net, x)
    _agree(ours, theirs)
    so = theirs["SynapticOperations"]
    assert 0.5 < theirs["ActivationSparsity"] < 0.995  # the network does spike
    assert so["Effective_MACs"] > 0 and so["Effective_ACs"] > 0  # the stem's MACs, the spiking layers' ACs
    # count_ops (``prune sca --report``) now counts dense MACs as NeuroBench's Dense: padding out
    rows = count_ops(net, x)
    assert sum(r["macs"] for r in rows) == so["Dense"]
    # the runtime's dense figure of the int8 bundle (bench's "Dense") is the same structural count
    bundle = quantize_folded(fold(net), x.numpy())
    session = open_session(bundle, 1)
    assert dense_ops_per_step(session) * net.cfg.time_steps == so["Dense"]
    info = describe(bundle)
    assert info["macs_per_inference"] == so["Dense"] == info["neurobench"]["Dense_per_step"] * net.cfg.time_steps
    # ParameterCount: the float model has BatchNorm's scale and shift per channel, the bundle one
    # folded bias per channel; the difference is exactly one per conv output channel
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert theirs["ParameterCount"] - info["neurobench"]["ParameterCount"] == sum(c.out_channels for c in convs)
    # the old rule, every tap at every output position (padding included), was 1.36x this
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    hw = [8, 8, 4, 4]  # output sides of the four convs (one 2x2 pool after the second, one after the fourth)
    padded = sum(c.out_channels * c.in_channels * 9 * s * s for c, s in zip(convs, hw)) * net.cfg.time_steps
    padded += net.classifier.in_features * net.classifier.out_features * net.cfg.time_steps
    assert padded / so["Dense"] == pytest.approx(1.363, abs=0.01)


def test_hrsnn_agrees_with_neurobench_and_states_the_readout() -> None:
    torch.manual_seed(0)
    net, x = demo_hrsnn()
    theirs = run_neurobench(net, x, Fire)
    ours = neurobench_metrics(net, x)
    _agree(ours, theirs)
    so, without = theirs["SynapticOperations"], ours["without_readout"]
    assert 0.5 < theirs["ActivationSparsity"] < 0.99
    # NeuroBench counts the readout of traces (real-valued: MACs); the runtime's counters do not
    n, steps = net.cfg.n_neurons, x.shape[1]
    assert so["Dense"] - without["Dense"] == n * net.cfg.n_outputs * steps
    assert so["Effective_MACs"] > without["Effective_MACs"] > 0  # the direct encoder's input MACs
    assert without["Effective_ACs"] == so["Effective_ACs"] > 0  # recurrent spikes: ACs
    bundle = quantize_hrsnn(net, x.numpy()[..., 0].reshape(-1))
    assert dense_ops_per_step(open_session(bundle, 1)) * steps == without["Dense"]
    info = describe(bundle)["neurobench"]
    assert info["Dense_per_step"] * steps == so["Dense"]  # info follows NeuroBench: readout included
    assert info["ParameterCount"] == theirs["ParameterCount"]


def test_old_hrsnn_checkpoint_loads_into_the_module_layout(tmp_path: Path) -> None:
    """A checkpoint written before the weights moved into nn.Linear modules (keys ``w_in``,
    ``bias``, ``w_rec``) loads to the same model."""
    net = HRSNN(HrsnnConfig(n_inputs=2, n_neurons=30, seed=4))
    new = tmp_path / "new.npz"
    save_checkpoint(net, new, {"task": "t"})
    with np.load(new, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert {"input.weight", "input.bias", "recurrent.weight"} <= set(arrays) and "w_rec" not in arrays
    rename = {"input.weight": "w_in", "input.bias": "bias", "recurrent.weight": "w_rec"}
    buf = io.BytesIO()
    np.savez_compressed(buf, **{rename.get(k, k): v for k, v in arrays.items()})
    old = tmp_path / "old.npz"
    old.write_bytes(buf.getvalue())
    with zipfile.ZipFile(old) as z:
        assert "w_rec.npy" in z.namelist() and json.loads(np.load(old)[RECORD_KEY].tobytes())["task"] == "t"
    loaded, _ = load_checkpoint(old)
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(2, 20, 2)
    assert torch.equal(net(x)[0], loaded(x)[0])
