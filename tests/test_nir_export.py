"""spikeedge -> NIR -> peer: ``spikeedge export --format nir`` read back by ``nir`` and simulated
by snnTorch (its ``import_from_nir`` for conv nets; its ``RSynaptic`` step with the file's
parameters for the HRSNN, whose LI readout snnTorch's importer lacks), spike for spike; and
spikeedge's own import of the file gives the model back. What NIR cannot express is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")

from test_conv_runtime_exact import NETS, random_net  # noqa: E402

from spikeedge.cli.app import main  # noqa: E402
from spikeedge.errors import ModelError  # noqa: E402
from spikeedge.offline.checkpoint import save_checkpoint  # noqa: E402
from spikeedge.offline.convsnn import ConvConfig, ConvSNN  # noqa: E402
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig  # noqa: E402
from spikeedge.offline.intref_conv import folded_forward  # noqa: E402
from spikeedge.offline.nir_export import export_nir  # noqa: E402
from spikeedge.offline.nir_import import import_nir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DT = 1e-4


def test_conv_net_with_sum_and_average_pooling_simulated_by_snntorch(tmp_path: Path) -> None:
    from snntorch.import_nir import import_from_nir

    shape, spec, decay, _ = NETS["sum-avg-pool"]
    net = random_net(4, shape, spec, decay, time_steps=6)
    path = tmp_path / "net.nir"
    written = export_nir(net, path, dt=DT)
    assert len(written["differences"]) == 1 and "mean over the 6 steps" in written["differences"][0]
    graph = nir.read(str(path))
    assert float(graph.metadata["dt"]) == DT and int(graph.metadata["time_steps"]) == 6
    assert [type(graph.nodes[k]).__name__ for k in ("pool1", "pool3")] == ["SumPool2d", "AvgPool2d"]
    peer = import_from_nir(graph)
    leaky = [m for m in peer.modules() if isinstance(m, snn.Leaky)]
    assert len(leaky) == 3 and all(m.reset_mechanism == "zero" for m in leaky)
    x = np.random.default_rng(5).uniform(-0.2, 1.0, (6,) + shape)
    record: List[List[Any]] = [[] for _ in leaky]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: record[k].append(o.detach().numpy().copy())) for k, m in enumerate(leaky)]
    per_sample = []
    for b in range(len(x)):  # one image at a time: snnTorch imports NIR's Flatten as torch's Flatten(0, -1), batch included
        for m in leaky:
            m.reset_mem()
        for r in record:
            r.clear()
        with torch.no_grad():
            for _ in range(6):
                peer(torch.tensor(x[b : b + 1], dtype=torch.float32))
        per_sample.append([np.stack(r) for r in record])
    for h in hooks:
        h.remove()
    _, ours = folded_forward(net, x, return_spikes=True)
    for k, s in enumerate(ours):
        theirs = np.stack([p[k] for p in per_sample], axis=1).reshape(s.shape).astype(bool)
        assert s.any() and not s.all()
        assert np.array_equal(theirs, s), k
    back = import_nir(path)  # dt from the file's metadata
    _, again = folded_forward(back.model, x, return_spikes=True)
    assert all(np.array_equal(a, b) for a, b in zip(ours, again))


def _hrsnn(reset: str = "zero") -> HRSNN:
    model = HRSNN(HrsnnConfig(n_inputs=3, n_neurons=40, n_outputs=2, reset=reset, seed=0, tau_trace=3.0))
    with torch.no_grad():
        model.w_in.mul_(12.0)
        model.readout.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        model.readout.bias.copy_(torch.tensor([0.1, -0.2]))
    return model


def test_hrsnn_read_back_and_simulated_by_snntorch_rsynaptic(tmp_path: Path) -> None:
    model = _hrsnn()
    path = tmp_path / "hrsnn.nir"
    export_nir(model, path, dt=DT)
    g = nir.read(str(path))
    lif, w_in, w_rec = g.nodes["lif"], g.nodes["w_in"], g.nodes["w_rec"]
    assert ("lif", "w_rec") in [tuple(e) for e in g.edges] and ("w_rec", "lif") in [tuple(e) for e in g.edges]
    np.testing.assert_allclose(np.asarray(lif.w_in) * DT / np.asarray(lif.tau_syn), 1.0, rtol=1e-6)  # unit input gains
    np.testing.assert_allclose(np.asarray(lif.r) * DT / np.asarray(lif.tau_mem), 1.0, rtol=1e-6)
    n = 40
    peer = snn.RSynaptic(alpha=torch.tensor(1 - DT / np.asarray(lif.tau_syn, np.float64), dtype=torch.float32),
                         beta=torch.tensor(1 - DT / np.asarray(lif.tau_mem, np.float64), dtype=torch.float32),
                         threshold=torch.tensor(np.asarray(lif.v_threshold)), linear_features=n, init_hidden=True, reset_mechanism="zero")
    fc = torch.nn.Linear(3, n)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor(np.asarray(w_in.weight)))
        fc.bias.copy_(torch.tensor(np.asarray(w_in.bias)))
        peer.recurrent.weight.copy_(torch.tensor(np.asarray(w_rec.weight)))
        peer.recurrent.bias.zero_()
    xs = np.random.default_rng(6).normal(0, 1, (8, 30, 3))
    theirs = []
    peer.reset_mem()
    with torch.no_grad():
        for t in range(30):  # the peer's step; its membrane zeroed where it spiked (NIR's reset, see test_nir_peers)
            spk = peer(fc(torch.tensor(xs[:, t], dtype=torch.float32)))
            peer.mem = peer.mem * (1 - spk)
            theirs.append(spk.numpy().astype(bool))
        outputs, _, ours, _ = model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
    theirs = np.stack(theirs, axis=1)
    assert theirs.any() and not theirs.all()
    assert np.array_equal(theirs, ours.numpy().astype(bool))
    # the readout as the file writes it: Linear -> LI (Euler at the file's dt) -> Affine(I, b)
    ro, li, bias = g.nodes["readout"], g.nodes["trace"], g.nodes["bias"]
    decay, gain = 1 - DT / np.asarray(li.tau, np.float64), np.asarray(li.r, np.float64) * DT / np.asarray(li.tau, np.float64)
    v, ys = np.zeros((8, 2)), []
    for t in range(30):
        v = decay * v + gain * (theirs[:, t] @ np.asarray(ro.weight, np.float64).T)
        ys.append(v @ np.asarray(bias.weight, np.float64).T + np.asarray(bias.bias, np.float64))
    np.testing.assert_allclose(np.stack(ys, axis=1), outputs.numpy(), rtol=1e-5, atol=1e-5)
    back = import_nir(path)
    assert back.kind == "hrsnn" and not any("bias" in note for note in back.notes)
    with torch.no_grad():
        outputs2, _, again, _ = back.model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
    assert np.array_equal(again.numpy(), ours.numpy())
    np.testing.assert_allclose(outputs2.numpy(), outputs.numpy(), rtol=1e-4, atol=1e-5)


def test_what_nir_cannot_express_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="subtract"):
        export_nir(_hrsnn("subtract"), tmp_path / "a.nir")
    shape, spec, decay, _ = NETS["vgg28"]
    with pytest.raises(ModelError, match="no max pooling"):
        export_nir(random_net(0, shape, spec, decay), tmp_path / "b.nir")
    shape, spec, decay, _ = NETS["resnet-mini"]
    with pytest.raises(ModelError, match="residual stream"):
        export_nir(random_net(0, shape, spec, decay), tmp_path / "c.nir")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_export_format_nir(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    save_checkpoint(_hrsnn(), tmp_path / "h.ckpt.npz", {"training": {"readout": "test"}})
    assert main(["export", "h.ckpt.npz", "--format", "nir", "-o", "h.nir", "--dt", "1e-3", "--json"]) == 0
    assert float(nir.read("h.nir").metadata["dt"]) == 1e-3
    vgg = ConvSNN(ConvConfig(arch="vgg", in_channels=1, in_size=8, n_classes=3, time_steps=2))
    save_checkpoint(vgg, tmp_path / "v.ckpt.npz", {"training": {"epochs": 0}})
    capsys.readouterr()
    assert main(["export", "v.ckpt.npz", "--format", "nir", "-o", "v.nir"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no max pooling" in err and not Path("v.nir").exists()
    plain = ConvSNN(ConvConfig(arch="vgg", in_channels=1, in_size=8, n_classes=3, plan=[4, 6], time_steps=3))  # no pooling: folded, written
    save_checkpoint(plain, tmp_path / "p.ckpt.npz", {"training": {"epochs": 0}})
    assert main(["export", "p.ckpt.npz", "--format", "nir", "-o", "p.nir"]) == 0
    g = nir.read("p.nir")
    assert [type(g.nodes[k]).__name__ for k in ("conv0", "lif0", "conv1", "lif1", "flatten2", "fc3")] == ["Conv2d", "LIF", "Conv2d", "LIF", "Flatten", "Affine"]
    np.testing.assert_allclose(1 - 1e-4 / np.asarray(g.nodes["lif0"].tau), 0.5)  # the conv nets' 1 - 1/tau, tau = 2 steps
