"""NIR import without the peers: graphs written with ``nir`` itself. What has no exact form is
refused in one line naming the node and why (exit 2 from the CLI); the mappings that are exact
(gains, thresholds, Scale, leaks, nested recurrent subgraphs) hold against a hand-stepped Euler
reference; ``sum_pool`` bundles carry schema version 2 and fall back to numpy where a compiled
core lacks the kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nir = pytest.importorskip("nir")

from test_conv_runtime_exact import net_and_bundle  # noqa: E402

from spikeedge.cli.app import main  # noqa: E402
from spikeedge.errors import BundleError, ModelError  # noqa: E402
from spikeedge.offline.intref_conv import folded_forward  # noqa: E402
from spikeedge.offline.nir_import import import_nir  # noqa: E402
from spikeedge.runtime import bundle as fmt  # noqa: E402
from spikeedge.runtime import cores  # noqa: E402
from spikeedge.runtime.sessions import open_session  # noqa: E402

RNG = np.random.default_rng(0)
FIXTURE = Path(__file__).parent / "fixtures" / "nir" / "lif.nir"  # the CLI contract's `spikeedge import` input


def fixture_graph() -> Any:
    """What ``tests/fixtures/nir/lif.nir`` holds (``python tests/test_nir_import.py`` rewrites it):
    Affine 4 -> 3, LIF (tau 5 ms, r 5), Affine 3 -> 2, written for dt = 1 ms."""
    w1 = np.arange(12, dtype=np.float32).reshape(3, 4) / 6.0 - 0.5
    w2 = np.arange(6, dtype=np.float32).reshape(2, 3) / 3.0 - 0.5
    lif = nir.LIF(tau=np.full(3, 5e-3, np.float32), r=np.full(3, 5.0, np.float32), v_leak=np.zeros(3, np.float32), v_threshold=np.ones(3, np.float32))
    nodes = {"input": nir.Input(input_type=np.array([4])), "fc1": nir.Affine(weight=w1, bias=np.full(3, 0.1, np.float32)), "lif": lif,
             "fc2": nir.Affine(weight=w2, bias=np.zeros(2, np.float32)), "output": nir.Output(output_type=np.array([2]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")], metadata={"dt": 1e-3})


def test_the_cli_fixture_is_what_its_generator_writes() -> None:
    stored, made = nir.read(str(FIXTURE)), fixture_graph()
    assert sorted(stored.nodes) == sorted(made.nodes) and sorted(map(tuple, stored.edges)) == sorted(map(tuple, made.edges))
    for name in ("fc1", "fc2"):
        assert np.array_equal(stored.nodes[name].weight, made.nodes[name].weight)
    assert float(stored.metadata["dt"]) == 1e-3


def _write(tmp_path: Path, nodes: Dict[str, Any], edges: List[Tuple[str, str]], dt: Any = 1e-3, name: str = "g.nir") -> Path:
    path = tmp_path / name
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, metadata={} if dt is None else {"dt": dt}, type_check=False))
    return path


def _chain(*pairs: Tuple[str, Any], n_in: int = 4) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    names = ["input"] + [k for k, _ in pairs] + ["output"]
    nodes = {"input": nir.Input(input_type=np.array([n_in])), **dict(pairs), "output": nir.Output(output_type=np.array([1]))}
    return nodes, list(zip(names[:-1], names[1:]))


def _lif(n: int, tau: float = 5e-3, r: float = 2.0, thr: Any = 1.0, v_leak: float = 0.0, v_reset: float = 0.0) -> Any:
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak), v_threshold=np.broadcast_to(np.asarray(thr, float), (n,)).copy(),
                   v_reset=np.full(n, v_reset))


def _affine(n_out: int, n_in: int, scale: float = 1.0) -> Any:
    return nir.Affine(weight=RNG.normal(0, scale, (n_out, n_in)), bias=RNG.normal(0, 0.1 * scale, n_out))


def _euler_lif(x: np.ndarray, w: np.ndarray, b: np.ndarray, tau: float, r: float, thr: np.ndarray, v_leak: float, dt: float, steps: int) -> np.ndarray:
    """NIR's LIF stepped by forward Euler in float64, written out here: (steps, batch, n) spikes."""
    v, out = np.zeros((len(x), len(b))), []
    for _ in range(steps):
        v = v + dt / tau * (v_leak - v + r * (x @ w.T + b))
        s = v >= thr
        v = np.where(s, 0.0, v)
        out.append(s)
    return np.stack(out)


def test_gains_thresholds_leak_and_scale_are_folded_exactly(tmp_path: Path) -> None:
    thr = np.linspace(0.5, 2.0, 6)  # differs between neurons: folded into the weights, threshold 1
    w1, w2 = _affine(6, 4, 2.0), _affine(3, 6, 2.0)
    scale = nir.Scale(scale=np.full(3, 1.5))
    nodes, edges = _chain(("fc1", w1), ("lif1", _lif(6, thr=thr, v_leak=0.2)), ("fc2", w2), ("scale", scale), ("lif2", _lif(3, tau=4e-3, r=1.0)))
    imported = import_nir(_write(tmp_path, nodes, edges), time_steps=25)
    x = RNG.normal(0, 1, (10, 4))
    want1 = _euler_lif(x, w1.weight, w1.bias, 5e-3, 2.0, thr, 0.2, 1e-3, 25)
    _, (got1, got2) = folded_forward(imported.model, x.reshape(10, 4, 1, 1), return_spikes=True)
    assert want1.any() and np.array_equal(want1, got1)
    v, want2 = np.zeros((10, 3)), []
    for t in range(25):  # the second layer on the first's spikes, the scale after its weights
        v = v + 1e-3 / 4e-3 * (-v + 1.0 * 1.5 * (want1[t] @ w2.weight.T + w2.bias))
        s = v >= 1.0
        v = np.where(s, 0.0, v)
        want2.append(s)
    assert np.array_equal(np.stack(want2), got2)


def test_conv1d_if_threshold_and_integrator_readout(tmp_path: Path) -> None:
    """Conv1d (a 1 x k conv on a (C, 1, N) map), IF, Threshold and an I readout, against the
    Euler steps written out with torch's conv1d."""
    conv = nir.Conv1d(input_shape=10, weight=RNG.normal(0, 1.5, (3, 2, 3)), stride=1, padding=0, dilation=1, groups=1, bias=RNG.normal(0, 0.2, 3))
    if_node = nir.IF(r=np.full((3, 8), 400.0), v_threshold=np.full((3, 8), 1.2))
    flat = nir.Flatten(input_type={"input": np.array([3, 8])}, start_dim=0, end_dim=-1)
    fc, thr, out, integ = _affine(5, 24, 0.5), nir.Threshold(threshold=np.full(5, 0.3)), _affine(2, 5), nir.I(r=np.full(2, 1000.0))
    names = ["input", "conv", "if", "flat", "fc", "thr", "out", "integ", "output"]
    nodes = {"input": nir.Input(input_type=np.array([2, 10])), "conv": conv, "if": if_node, "flat": flat, "fc": fc, "thr": thr, "out": out,
             "integ": integ, "output": nir.Output(output_type=np.array([2]))}
    imported = import_nir(_write(tmp_path, nodes, list(zip(names[:-1], names[1:]))), time_steps=8)
    assert any("integral divided by the number of steps" in note for note in imported.notes)
    x = RNG.normal(0, 1, (6, 2, 10))
    logits, (s1, s2) = folded_forward(imported.model, x.reshape(6, 2, 1, 10), return_spikes=True)
    cur = torch.nn.functional.conv1d(torch.tensor(x), torch.tensor(conv.weight), torch.tensor(conv.bias)).numpy()
    v, want1, want2, total = np.zeros_like(cur), [], [], 0.0
    for _ in range(8):
        v = v + 1e-3 * 400.0 * cur
        s = v >= 1.2
        v = np.where(s, 0.0, v)
        want1.append(s)
        t = (s.reshape(6, -1) @ fc.weight.T + fc.bias) >= 0.3
        want2.append(t)
        total = total + 1e-3 * 1000.0 * (t @ out.weight.T + out.bias)
    assert np.stack(want1).any() and np.array_equal(np.stack(want1), s1.reshape(8, 6, 3, 8)) and np.array_equal(np.stack(want2), s2)
    np.testing.assert_allclose(logits, total / 8, rtol=1e-5, atol=1e-6)


def test_recurrent_lif_with_an_li_readout_as_an_hrsnn(tmp_path: Path) -> None:
    """LIF with a recurrent Affine loop (snnTorch's RLeaky) and an Affine -> LI readout with a
    bias, against Euler written out: spikes equal, the readout equal once the LI's bias has
    settled (the stated difference)."""
    n, steps = 8, 60
    w_in, w_rec, w_out = _affine(n, 3, 2.0), _affine(n, n, 0.6), _affine(2, n)
    li = nir.LI(tau=np.full(2, 4e-3), r=np.full(2, 4.0), v_leak=np.zeros(2))
    names = ["input", "fc", "lif", "ro", "li", "output"]
    nodes = {"input": nir.Input(input_type=np.array([3])), "fc": w_in, "lif": _lif(n, tau=5e-3, r=5.0, thr=0.8), "rec": w_rec, "ro": w_out, "li": li,
             "output": nir.Output(output_type=np.array([2]))}
    imported = import_nir(_write(tmp_path, nodes, list(zip(names[:-1], names[1:])) + [("lif", "rec"), ("rec", "lif")]))
    assert imported.kind == "hrsnn" and any("readout bias" in note for note in imported.notes)
    xs = RNG.normal(0, 1, (5, steps, 3))
    v, s, y, spikes, outs = np.zeros((5, n)), np.zeros((5, n)), np.zeros((5, 2)), [], []
    for t in range(steps):
        v = v + 1e-3 / 5e-3 * (-v + 5.0 * (xs[:, t] @ w_in.weight.T + w_in.bias + s @ w_rec.weight.T + w_rec.bias))
        s = (v >= 0.8).astype(float)
        v = np.where(s > 0, 0.0, v)
        y = y + 1e-3 / 4e-3 * (-y + 4.0 * (s @ w_out.weight.T + w_out.bias))
        spikes.append(s)
        outs.append(y)
    with torch.no_grad():
        out, _, got, _ = imported.model(torch.tensor(xs, dtype=torch.float32), record_spikes=True)
    assert np.stack(spikes, 1).any() and np.array_equal(np.stack(spikes, 1), got.numpy())
    np.testing.assert_allclose(out.numpy()[:, -1], np.stack(outs, 1)[:, -1], rtol=1e-4, atol=1e-4)  # 0.75**60: settled


def test_nested_recurrent_subgraph_as_older_exporters_wrote_it(tmp_path: Path) -> None:
    n = 5
    cuba = nir.CubaLIF(tau_syn=np.full(n, 2e-3), tau_mem=np.full(n, 4e-3), r=np.full(n, 4.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                       v_reset=np.zeros(n), w_in=np.full(n, 2.0))
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "lif": cuba, "w_rec": nir.Linear(weight=RNG.normal(0, 0.5, (n, n))),
                              "output": nir.Output(output_type=np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nodes, edges = _chain(("fc", _affine(n, 3, 2.0)), ("rsyn", sub), n_in=3)
    imported = import_nir(_write(tmp_path, nodes, edges))
    assert imported.kind == "hrsnn" and imported.model.cfg.n_neurons == n
    np.testing.assert_allclose(torch.exp(-1 / imported.model.tau_syn).numpy(), 0.5, rtol=1e-6)
    np.testing.assert_allclose(torch.exp(-1 / imported.model.tau_mem).numpy(), 0.75, rtol=1e-6)
    assert int(imported.model.mask.sum()) == n * n - int((sub.nodes["w_rec"].weight == 0).sum())


CUBA = nir.CubaLIF(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 4e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3))
REFUSALS = {
    "no dt": (lambda: _chain(("fc", _affine(3, 4)), ("lif", _lif(3)))[0:2] + (None,), "pass --dt"),
    "v_reset": (lambda: _chain(("fc", _affine(3, 4)), ("lif", _lif(3, v_reset=-0.5))) + (1e-3,), "node 'lif' (LIF): v_reset is not 0"),
    "tau below dt": (lambda: _chain(("fc", _affine(3, 4)), ("lif", _lif(3, tau=1e-4))) + (1e-3,), "node 'lif' (LIF): tau 0.0001 is shorter than dt"),
    "cuba in a deep net": (lambda: _chain(("fc", _affine(3, 4)), ("a", _lif(3)), ("fc2", _affine(3, 3)), ("cuba", CUBA)) + (1e-3,),
                           "node 'cuba' (CubaLIF) after 'fc2': no synaptic current"),
    "per-neuron decay in a feed-forward layer": (lambda: _chain(("fc", _affine(2, 4)), ("a", nir.LIF(tau=np.array([2e-3, 3e-3]), r=np.ones(2),
                                                 v_leak=np.zeros(2), v_threshold=np.ones(2))), ("fc2", _affine(2, 2)), ("b", _lif(2))) + (1e-3,),
                                                 "node 'a' (LIF): 2 different decays"),
    "li in the middle": (lambda: _chain(("fc", _affine(3, 4)), ("li", nir.LI(tau=np.full(3, 4e-3), r=np.ones(3), v_leak=np.zeros(3))),
                                        ("fc2", _affine(3, 3)), ("lif", _lif(3))) + (1e-3,), "node 'li' (LI): a one-layer (HRSNN) import runs"),
    "li in a conv net's middle": (lambda: _chain(("fc", _affine(3, 4)), ("a", _lif(3)), ("fc2", _affine(3, 3)), ("li", nir.LI(tau=np.full(3, 4e-3),
                                  r=np.ones(3), v_leak=np.zeros(3))), ("fc3", _affine(3, 3)), ("b", _lif(3))) + (1e-3,),
                                  "node 'li' (LI): a non-spiking LI is imported only as the readout"),
    "delay": (lambda: _chain(("fc", _affine(3, 4)), ("d", nir.Delay(delay=np.ones(3))), ("lif", _lif(3))) + (1e-3,), "node 'd' (Delay): spikeedge has no layer"),
    "cuba leak": (lambda: _chain(("fc", _affine(3, 4)), ("c", nir.CubaLIF(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 4e-3), r=np.ones(3),
                                                                          v_leak=np.ones(3), v_threshold=np.ones(3)))) + (1e-3,),
                  "node 'c' (CubaLIF): v_leak is not 0"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_in_one_line_naming_the_node(tmp_path: Path, case: str) -> None:
    make, fragment = REFUSALS[case]
    nodes, edges, dt = make()
    with pytest.raises(ModelError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        import_nir(_write(tmp_path, nodes, edges, dt=dt))


def test_branches_and_pooling_padding_are_refused(tmp_path: Path) -> None:
    nodes, edges = _chain(("fc", _affine(3, 4)), ("lif", _lif(3)))
    nodes["fc_b"] = _affine(3, 4)
    with pytest.raises(ModelError, match="node 'input' feeds 2 nodes"):
        import_nir(_write(tmp_path, nodes, edges + [("input", "fc_b"), ("fc_b", "lif")]))
    conv = nir.Conv2d(input_shape=(6, 6), weight=RNG.normal(0, 1, (2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    names = ["input", "conv", "lif", "pool", "output"]
    nodes = {"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": conv, "lif": _lif(2), "pool": pool, "output": nir.Output(output_type=np.array([1]))}
    with pytest.raises(ModelError, match="node 'pool' \\(SumPool2d\\): padding is not 0"):
        import_nir(_write(tmp_path, nodes, list(zip(names[:-1], names[1:]))))


def test_cli_import_then_export_and_run(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    conv = nir.Conv2d(input_shape=(6, 6), weight=RNG.normal(0, 1, (3, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    lif = nir.LIF(tau=np.full((3, 6, 6), 4e-3), r=np.full((3, 6, 6), 4.0), v_leak=np.zeros((3, 6, 6)), v_threshold=np.ones((3, 6, 6)))
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    flat = nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1)
    names = ["input", "conv", "lif", "pool", "flat", "fc", "output"]
    nodes = {"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": conv, "lif": lif, "pool": pool, "flat": flat, "fc": _affine(4, 27),
             "output": nir.Output(output_type=np.array([4]))}
    _write(tmp_path, nodes, list(zip(names[:-1], names[1:])), dt=None, name="net.nir")
    assert main(["import", "net.nir", "-o", "net.ckpt.npz"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --dt" in err
    assert main(["import", "net.nir", "--dt", "1e-3", "--time-steps", "5", "--input-peak", "3", "-o", "net.ckpt.npz", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"model": "folded"' in out and '"time_steps": 5' in out and "mean over the steps" in out
    assert main(["export", "net.ckpt.npz", "-o", "net.seb"]) == 0
    bundle = fmt.load("net.seb")
    assert [layer.kind for layer in bundle.layers] == ["conv_lif", "sum_pool", "flatten"] and bundle.time_steps == 5
    assert main(["export", "net.seb", "--format", "onnx", "-o", "net.onnx"]) == 2
    assert "sum_pool" in capsys.readouterr().err


def test_sum_pool_is_schema_version_2_and_refused_under_1() -> None:
    _, bundle, _ = net_and_bundle("sum-avg-pool", 0)
    manifest, arrays = fmt.bundle_to_manifest(bundle)
    assert manifest["schema_version"] == fmt.schema_version_of(bundle) == 2
    with pytest.raises(BundleError, match="kind 'sum_pool' needs schema version 2, the file says 1"):
        fmt.loads(fmt.encode_bytes(dict(manifest, schema_version=1), arrays))
    newer = fmt.SCHEMA_VERSION + 1
    with pytest.raises(BundleError, match="schema version %d is not supported" % newer):
        fmt.loads(fmt.encode_bytes(dict(manifest, schema_version=newer), arrays))


def test_a_compiled_core_without_sum_pool_falls_back_to_numpy(monkeypatch: Any) -> None:
    _, bundle, x = net_and_bundle("sum-avg-pool", 0)
    _, plain, _ = net_and_bundle("vgg28", 0)
    monkeypatch.setattr(cores, "COMPILED_CONV_KINDS", ("conv_lif", "maxpool", "flatten", "linear_lif"))
    monkeypatch.setattr(cores, "LOAD_ERROR", None)
    assert cores.choose(plain) == ("compiled", "auto")
    assert cores.choose(bundle) == ("numpy", "the compiled conv core lacks layer kind sum_pool")
    with pytest.raises(cores.CoreUnavailable, match="sum_pool"):
        cores.choose(bundle, "compiled")
    session = open_session(bundle, len(x))
    assert session.core == "numpy"


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(FIXTURE), fixture_graph())
