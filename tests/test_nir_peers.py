"""Round trips through NIR with the real peers (snnTorch 1.0, Norse 1.1; ``docs/interop.md``).

Peer -> NIR -> spikeedge: each network is written by the peer's own exporter, imported
(``offline/nir_import.py``), and its float spikes are compared with the peer's own simulation of
the same input, with the reset rule NIR states (reset to 0 right after the spike: snnTorch's
``reset_delay=False``; for ``RSynaptic``, whose ``reset_delay=False`` path reads the wrong
variables in 1.0.0, the peer's own step with its membrane zeroed where it spiked). Then the
int8 bundle runs on the event runtime: bit-exact against the integer reference, and its spikes
against the float ones within the conformance suite's 99.5% agreement.

spikeedge -> NIR -> peer: ``offline/nir_export.py``'s file read back by ``nir`` and simulated
by snnTorch's ``import_from_nir``, spike for spike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")
norse = pytest.importorskip("norse.torch")

from spikeedge.errors import ModelError  # noqa: E402
from spikeedge.offline.intref import IntegerReference  # noqa: E402
from spikeedge.offline.intref_conv import ConvIntegerReference, folded_forward  # noqa: E402
from spikeedge.offline.nir_import import import_nir  # noqa: E402
from spikeedge.offline.quantize import quantize_hrsnn  # noqa: E402
from spikeedge.offline.quantize_conv import quantize_folded  # noqa: E402
from spikeedge.runtime import bundle as fmt  # noqa: E402
from spikeedge.runtime.fixedpoint import THRESHOLD  # noqa: E402
from spikeedge.runtime.sessions import open_session  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# int8 against float, open loop (every step from the float model's state): the conformance suite's
# 99.5% (tests/test_conformance.py), which it asks of the int8 forms against the integer reference
# (met here bit for bit). Against float, int8 weights cost more where a layer reads many inputs:
# the conv net's output layer (96 inputs, an average-pooled spike map) measured 98.6% to 99.4%
# over seeds 0-4 (its conv layer 99.8% to 99.9%), so that one layer is held to FLOAT_AGREEMENT_WIDE.
AGREEMENT = 0.995
FLOAT_AGREEMENT_WIDE = 0.985
DT = 1e-4  # snnTorch's export writes its neurons for dt = 1e-4


def _leaky(shape: Any, beta: float) -> Any:
    """A snnTorch Leaky with per-neuron parameters (a scalar beta exports as a shapeless LIF that
    nir's type inference refuses) and NIR's reset rule: to zero, right after the spike."""
    shape = shape if isinstance(shape, tuple) else (shape,)
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True, reset_mechanism="zero", reset_delay=False)


def _export_snntorch(net: Any, sample: Any, path: Path) -> Path:
    from snntorch.export_nir import export_to_nir

    nir.write(str(path), export_to_nir(net, sample, ignore_dims=[0]))
    return path


def _peer_spikes(net: Any, x: Any, steps: int) -> List[np.ndarray]:
    """Each Leaky's spikes over ``steps`` steps of the same input: (steps, batch, ...) per layer."""
    leaky = [m for m in net if isinstance(m, snn.Leaky)]
    out: List[List[np.ndarray]] = [[] for _ in leaky]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: out[k].append((o[0] if isinstance(o, tuple) else o).detach().numpy().copy()))
             for k, m in enumerate(leaky)]
    for m in leaky:
        m.reset_mem()
    with torch.no_grad():
        for _ in range(steps):
            net(x)
    for h in hooks:
        h.remove()
    return [np.stack(s).astype(bool) for s in out]


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.asarray(a, bool) == np.asarray(b, bool)))


def _conv_int8(net: Any, x: np.ndarray, float_spikes: List[np.ndarray], bounds: Any = None) -> None:
    """The int8 bundle on the event runtime: bit-exact against the integer reference, and in
    open loop (each step from the float model's membranes, in state units) its spikes agree with
    the float ones in at least ``AGREEMENT`` of the places, layer by layer."""
    bundle = fmt.loads(fmt.dumps(quantize_folded(net, x)))
    session = open_session(bundle, x.shape[0], record_spikes=True)
    session.run(x)
    ref = ConvIntegerReference(bundle)
    ref.run(x)
    for got, want in zip(session.spike_history, ref.spike_history):
        assert np.array_equal(np.stack(got), np.stack(want))
    mems: List[List[np.ndarray]] = []
    folded_forward(net, x, membranes=mems)
    sigma = [float(layer.threshold) / THRESHOLD for layer in net.layers if getattr(layer, "spiking", True) and hasattr(layer, "threshold")]
    session.start(x.shape[0])
    for t in range(bundle.time_steps):
        if t:
            state = {"mem%d" % k: np.round(m / sigma[k]).astype(np.int64) for k, m in enumerate(mems[t - 1])}
            session.set_state(dict(state, total=session.get_state()["total"]))
        session.step(x)
    for k, want in enumerate(float_spikes):
        got = np.stack(session.spike_history[k]).reshape(want.shape)
        bound = AGREEMENT if bounds is None else bounds[k]
        assert _agreement(want, got) >= bound, "layer %d: %.4f" % (k, _agreement(want, got))


def test_snntorch_linear_leaky(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 40), _leaky(40, 0.8), torch.nn.Linear(40, 10), _leaky(10, 0.9))
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    imported = import_nir(_export_snntorch(net, torch.randn(1, 12), tmp_path / "ff.nir"), dt=DT, time_steps=20, input_peak=3.0)
    assert imported.kind == "folded"
    x = np.random.default_rng(0).normal(0, 1, (32, 12))
    want = _peer_spikes(net, torch.tensor(x, dtype=torch.float32), 20)
    _, got = folded_forward(imported.model, x.reshape(32, 12, 1, 1), return_spikes=True)
    for w, g in zip(want, got):
        assert w.any() and not w.all()
        assert np.array_equal(w, g.reshape(w.shape))
    _conv_int8(imported.model, x.reshape(32, 12, 1, 1), want)


def test_snntorch_conv_leaky_avgpool(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), _leaky((6, 8, 8), 0.7), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(6 * 4 * 4, 10), _leaky(10, 0.9))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[4].weight.mul_(4.0)
    imported = import_nir(_export_snntorch(net, torch.randn(1, 1, 8, 8), tmp_path / "cv.nir"), dt=DT, time_steps=12, input_peak=3.0)
    kinds = [type(layer).__name__ for layer in imported.model.layers]
    assert kinds == ["FoldedConv", "FoldedSumPool", "FoldedFlatten", "FoldedLinear", "FoldedLinear"]
    x = np.random.default_rng(1).normal(0, 1, (16, 1, 8, 8))
    want = _peer_spikes(net, torch.tensor(x, dtype=torch.float32), 12)
    _, got = folded_forward(imported.model, x, return_spikes=True)
    for w, g in zip(want, got):
        assert w.any() and not w.all()
        assert np.array_equal(w, g)
    _conv_int8(imported.model, x, want, bounds=(AGREEMENT, FLOAT_AGREEMENT_WIDE))


def test_snntorch_rsynaptic(tmp_path: Path) -> None:
    torch.manual_seed(2)
    n, steps = 48, 40
    lif = snn.RSynaptic(alpha=torch.full((n,), 0.6), beta=torch.full((n,), 0.85), threshold=torch.ones(n), linear_features=n,
                        init_hidden=True, reset_mechanism="zero")
    net = torch.nn.Sequential(torch.nn.Linear(3, n), lif)
    with torch.no_grad():
        net[0].weight.mul_(1.5)
        lif.recurrent.weight.mul_(0.8)
    imported = import_nir(_export_snntorch(net, torch.randn(1, 3), tmp_path / "rs.nir"), dt=DT)
    assert imported.kind == "hrsnn" and imported.model.cfg.reset == "zero"
    xs = np.random.default_rng(2).normal(0, 1, (16, steps, 3))
    want = []
    lif.reset_mem()
    with torch.no_grad():
        for t in range(steps):  # the peer's own step; its membrane zeroed where it spiked (NIR's reset)
            spk = net(torch.tensor(xs[:, t], dtype=torch.float32))
            lif.mem = lif.mem * (1 - spk)
            want.append(spk.numpy().astype(bool))
    want = np.stack(want, axis=1)
    with torch.no_grad():
        _, _, got, _ = imported.model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
    assert want.any() and not want.all()
    assert np.array_equal(want, got.numpy().astype(bool))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(imported.model, xs)))
    session = open_session(bundle, xs.shape[0], record_spikes=True)
    session.run(xs)
    ref = IntegerReference(bundle)
    ref.start(xs.shape[0])
    ref_spikes = []
    for t in range(steps):
        ref.step(xs[:, t])
    ref_spikes = np.stack(ref.spike_history[0], axis=1)
    assert np.array_equal(np.stack(session.spike_history[0], axis=1), ref_spikes)
    # open loop: each step of the int8 runtime from the float model's state (state units: 1 / 2**14)
    session.start(xs.shape[0])
    carry = imported.model.initial_state(xs.shape[0])
    with torch.no_grad():
        for t in range(steps):
            if t:
                (syn, mem), spikes, _ = carry
                session.set_state(dict(session.get_state(), s0=spikes.numpy().astype(np.int64), syn0=np.round(syn.double().numpy() * THRESHOLD).astype(np.int64),
                                       mem0=np.round(mem.double().numpy() * THRESHOLD).astype(np.int64)))
            session.step(xs[:, t])
            _, _, carry = imported.model.step(torch.tensor(xs[:, t], dtype=torch.float32), carry)
    q = np.stack(session.spike_history[0][-steps:], axis=1)
    assert _agreement(want, q) >= AGREEMENT, _agreement(want, q)


def test_norse_lif_box(tmp_path: Path) -> None:
    """Norse 1.1 writes tau = dt / tau_mem_inv: a 10 ms neuron at dt = 1e-3 reads tau = 1e-5,
    and Norse's own decay 1 - dt * tau_mem_inv comes back with --dt = dt**2 (docs/interop.md)."""
    torch.manual_seed(3)
    def p(n: int) -> Any:  # per-neuron tensors: nir writes no scalar parameter to HDF5
        return norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), 200.0), v_leak=torch.zeros(n), v_th=torch.ones(n), v_reset=torch.zeros(n))

    model = norse.SequentialState(torch.nn.Linear(8, 30), norse.LIFBoxCell(p(30)), torch.nn.Linear(30, 5), norse.LIFBoxCell(p(5)))
    with torch.no_grad():
        model[0].weight.mul_(12.0)
        model[2].weight.mul_(25.0)
    path = tmp_path / "norse.nir"
    nir.write(str(path), norse.to_nir(model, torch.randn(1, 8)))
    with pytest.raises(ModelError, match="shorter than dt"):
        import_nir(path, dt=1e-3)  # the file's tau read at Norse's own dt: refused, not mis-stepped
    imported = import_nir(path, dt=1e-6, time_steps=15, input_peak=3.0)
    assert any("batch dimension" in note for note in imported.notes)
    x = np.random.default_rng(3).normal(0, 1, (24, 8))
    spikes: List[List[np.ndarray]] = [[], []]
    hooks = [model[k].register_forward_hook(lambda _m, _i, o, j=j: spikes[j].append(o[0].detach().numpy().astype(bool))) for j, k in ((0, 1), (1, 3))]
    state = None
    with torch.no_grad():
        for _ in range(15):
            _, state = model(torch.tensor(x, dtype=torch.float32), state)
    for h in hooks:
        h.remove()
    _, got = folded_forward(imported.model, x.reshape(24, 8, 1, 1), return_spikes=True)
    for w, g in zip([np.stack(s) for s in spikes], got):
        assert w.any() and not w.all()
        assert np.array_equal(w, g.reshape(w.shape))
    _conv_int8(imported.model, x.reshape(24, 8, 1, 1), [np.stack(s) for s in spikes])


def test_norse_lif_cell_is_imported_as_its_file_says(tmp_path: Path) -> None:
    """Norse 1.1 writes its LIFCell as a CubaLIF with w_in = 1 but steps it as i = i + x, without
    NIR's dt / tau_syn on the input (docs/interop.md): imported as the file says, the input acts
    dt * tau_syn_inv (0.2 here) times weaker; with that factor undone the spikes are Norse's own,
    so the rest of the mapping (the current updated first, the recurrent-free HRSNN) is exact."""
    torch.manual_seed(4)
    n = 20
    p = norse.LIFParameters(tau_syn_inv=torch.full((n,), 200.0), tau_mem_inv=torch.full((n,), 100.0), v_leak=torch.zeros(n),
                            v_th=torch.ones(n), v_reset=torch.zeros(n))
    model = norse.SequentialState(torch.nn.Linear(4, n), norse.LIFCell(p))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    path = tmp_path / "cell.nir"
    nir.write(str(path), norse.to_nir(model, torch.randn(1, 4)))
    imported = import_nir(path, dt=1e-6)
    assert imported.kind == "hrsnn"
    xs = np.random.default_rng(4).normal(0, 1, (8, 30, 4))
    state, want = None, []
    with torch.no_grad():
        for t in range(30):
            z, state = model(torch.tensor(xs[:, t], dtype=torch.float32), state)
            want.append(z.numpy().astype(bool))
        want = np.stack(want, axis=1)
        _, _, as_file, _ = imported.model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
        imported.model.w_in.div_(1e-3 * 200.0)
        imported.model.bias.div_(1e-3 * 200.0)
        _, _, undone, _ = imported.model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
    assert want.any() and as_file.numpy().sum() < want.sum() / 4
    assert np.array_equal(undone.numpy().astype(bool), want)
