"""The compiled conv core (``runtime/_conv_core.c``) equals the numpy conv session and the offline
integer reference bit for bit, falls back to numpy when it cannot run, and refuses malformed specs.

Random conv bundles are built from the records directly (numpy only: the sanitizer run imports
no torch): VGG-style (convs of strides 1-2, paddings, non-square kernels, pooling, flatten,
linear), ResNet-style (residual streams set and added, stream neurons with negative scales,
global sum pooling) and a linear net on the image; 8- and 16-bit direct inputs (the conv
model's only encoder; conv neurons have the one hard reset), batch sizes 1-4, pruned (all-zero)
channels, and a saturating variant (no leak, huge multipliers and biases: the int32 clamp fires
and the neuron takes the int64 loop instead of the float64 one). Each accumulation path of both
cores is forced in turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, List

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime import cores
from spikeedge.runtime.conv_session import ConvSession
from spikeedge.runtime.sessions import open_session
from required import skip_unless_required

pytestmark = pytest.mark.skipif(cores.CONV_LOAD_ERROR is not None, reason=str(cores.CONV_LOAD_ERROR))

KINDS = ("vgg", "resnet", "mlp")


def _weights(rng: np.random.Generator, shape: tuple, saturate: bool) -> np.ndarray:
    w = rng.integers(-128, 128, shape)
    w = np.where(rng.random(shape) < float(rng.choice([0.3, 1.0])), w, 0)
    if shape[0] > 1:
        w[rng.integers(0, shape[0])] = 0  # a pruned output channel
    return (np.full(shape, 127) if saturate and rng.random() < 0.3 else w).astype(np.int8)


def _neuron(rng: np.random.Generator, n: int, fan_in: int, peak: float, saturate: bool, signed: bool = False) -> dict:
    """Multiplier, shift, bias and decay that make a layer fire at a few to tens of percent (or,
    ``saturate``: no leak, multipliers near 2**31 and biases near 2**30)."""
    if saturate:
        m = rng.integers(1 << 30, (1 << 31) - 1, n)
        return dict(m=m.astype(np.int64), shift=int(rng.integers(1, 8)), decay=65536, bias=rng.integers(-(1 << 30), 1 << 30, n).astype(np.int32))
    shift = int(rng.integers(8, 24))
    typical = max(1.0, 40.0 * np.sqrt(fan_in) * peak)
    m = np.clip((2.0**shift * 16384 / typical) * rng.uniform(0.3, 3.0, n), 1, (1 << 31) - 1).astype(np.int64)
    if signed:
        m = m * rng.choice([-1, 1], n, p=[0.2, 0.8])
    return dict(m=m, shift=shift, decay=int(rng.integers(30000, 65537)), bias=rng.integers(-3000, 6000, n).astype(np.int32))


def make_conv_bundle(seed: int, kind: str, saturate: bool = False) -> fmt.ConvBundle:
    """A random valid conv bundle of ``kind`` in KINDS."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 10)), int(rng.integers(5, 10))
    bits = int(rng.choice([8, 16]))
    layers: List[Any] = []
    shape = (c, h, w)
    peak = 0.5 * ((1 << (bits - 1)) - 1)

    def conv(name: str, out: int, stream: str = "", same: bool = False) -> None:
        nonlocal shape
        kh, kw = int(rng.integers(1, min(3, shape[1]) + 1)), int(rng.integers(1, min(3, shape[2]) + 1))
        same = same or stream == "add"
        stride = 1 if same else int(rng.integers(1, 3))
        pad = int(rng.integers(0, min(kh, kw)))
        if same:  # a residual block keeps the stream's shape: odd kernels, "same" padding
            kh = kw = int(rng.choice([1, 3]))
            pad = kh // 2
        wt = _weights(rng, (out, shape[0], kh, kw), saturate)
        if stream:
            nm = _neuron(rng, out, shape[0] * kh * kw, peak, saturate)
            layers.append(fmt.ConvStreamLayer(name, shape[0], out, kh, kw, stride, pad, stream, nm["shift"], wt, nm["m"], np.full(out, 0.01)))
        else:
            nm = _neuron(rng, out, shape[0] * kh * kw, peak, saturate)
            layers.append(fmt.ConvLifLayer(name, shape[0], out, kh, kw, stride, pad, nm["decay"], nm["shift"], wt, nm["m"], nm["bias"], np.full(out, 0.01)))
        shape = layers[-1].out_shape(shape)

    def linear(name: str, out: int) -> None:
        nonlocal shape
        nm = _neuron(rng, out, shape[0], peak, saturate)
        layers.append(fmt.LinearLifLayer(name, shape[0], out, nm["decay"], nm["shift"], _weights(rng, (out, shape[0]), saturate), nm["m"], nm["bias"], np.full(out, 0.01)))
        shape = (out,)

    def stream_lif(name: str) -> None:
        nm = _neuron(rng, shape[0], 1, 2.0**24, saturate, signed=True)
        layers.append(fmt.StreamLifLayer(name, shape[0], nm["decay"], nm["shift"], nm["m"], nm["bias"]))

    if kind == "vgg":
        conv("c0", int(rng.integers(2, 7)))
        peak = 0.3
        if rng.random() < 0.6 and min(shape[1:]) >= 2:
            layers.append(fmt.MaxPoolLayer("p0", int(rng.integers(2, min(3, min(shape[1:])) + 1))))
            shape = (shape[0], shape[1] // layers[-1].size, shape[2] // layers[-1].size)
        conv("c1", int(rng.integers(1, 9)))
        layers.append(fmt.FlattenLayer("f"))
        shape = (int(np.prod(shape)),)
        if rng.random() < 0.7:
            linear("l0", int(rng.integers(2, 20)))
    elif kind == "resnet":
        conv("stem", int(rng.integers(2, 6)), "set")
        stream_lif("s0")
        peak = 0.3
        out = shape[0]
        for b in range(int(rng.integers(1, 3))):
            conv("b%da" % b, int(rng.integers(1, 6)), same=True)
            conv("b%db" % b, out, "add")
            stream_lif("s%d" % (b + 1))
        layers.append(fmt.GlobalSumPoolLayer("g"))
        peak = 0.3 * shape[1] * shape[2]
        shape = (shape[0],)
        if rng.random() < 0.5:
            linear("l0", int(rng.integers(2, 10)))
    else:
        layers.append(fmt.FlattenLayer("f"))
        shape = (int(np.prod(shape)),)
        linear("l0", int(rng.integers(2, 30)))
    n_out = int(rng.integers(1, 5))
    ro = fmt.LinearReadout("readout", shape[0], n_out, _weights(rng, (n_out, shape[0]), False), rng.uniform(1e-4, 1e-2, n_out), rng.uniform(-1, 1, n_out))
    enc = fmt.DirectEncoder(c * h * w, float(rng.uniform(1e-4, 1e-2) if bits == 16 else rng.uniform(0.005, 0.05)), bits)
    return fmt.loads(fmt.dumps(fmt.ConvBundle(enc, (c, h, w), int(rng.integers(1, 7)), tuple(layers), ro)))  # every record checked


def images(bundle: fmt.ConvBundle, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.3, 1.5, (batch,) + tuple(bundle.input_shape)) * (rng.random((batch,) + tuple(bundle.input_shape)) < 0.6)
    x[0, 0, 0, 0] = 1e9  # far beyond the input range: clipped
    return x


def check_equal(bundle: fmt.ConvBundle, x: np.ndarray, c_method: str, np_method: str) -> None:
    """run, then step by step with a changing image and a state round trip: outputs, spikes of
    every neuron, counters and state identical."""
    sn = ConvSession(bundle, len(x), record_spikes=True, method=np_method)
    sc = open_session(bundle, len(x), record_spikes=True, core="compiled", method=c_method)
    assert sc.core == "compiled" and sn.core == "numpy"
    rn, rc = sn.run(x), sc.run(x)
    assert np.array_equal(rn.outputs, rc.outputs)
    assert rn.spike_counts == rc.spike_counts and rn.synops == rc.synops and rn.steps == rc.steps
    assert sn.layer_synops == sc.layer_synops
    for hn, hc in zip(sn.spike_history, sc.spike_history):
        assert len(hn) == len(hc) and all(np.array_equal(a, b) for a, b in zip(hn, hc))
    gn, gc = sn.get_state(), sc.get_state()
    assert gn.keys() == gc.keys() and all(np.array_equal(gn[k], gc[k]) for k in gn)
    sn.start(len(x))
    sc.start(len(x))
    for t in range(4):
        xt = x * (1.0 + 0.3 * t)
        assert np.array_equal(sn.step(xt), sc.step(xt.reshape(len(x), -1)))
        if t == 1:
            sc.set_state(sn.get_state())
    assert sn.synops == sc.synops and sn.spike_counts == sc.spike_counts
    assert np.array_equal(sn.readout_values(), sc.readout_values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(KINDS), batch=st.integers(1, 4),
       c_method=st.sampled_from(["event", "dense", "auto"]), np_method=st.sampled_from(["event", "dense", "auto"]), saturate=st.booleans())
def test_random_conv_bundles_compiled_equals_numpy(seed, kind, batch, c_method, np_method, saturate):
    bundle = make_conv_bundle(seed, kind, saturate)
    check_equal(bundle, images(bundle, batch, seed), c_method, np_method)


def test_the_random_bundles_spike_and_saturate():
    """The factory's nets do what the property test needs: they fire (neither never nor
    always), and the saturating variant drives membranes to the int32 clamp."""
    rates, clamped = [], 0
    for seed in range(12):
        for kind in KINDS:
            b = make_conv_bundle(seed, kind)
            r = ConvSession(b, 2).run(images(b, 2, seed))
            rates += [r.spike_counts[k] / (r.steps * 2 * n) for k, n in r.neurons.items()]
            s = ConvSession(make_conv_bundle(seed, kind, saturate=True), 2, method="dense")
            s.run(images(s.bundle, 2, seed))
            clamped += any(np.abs(m).max() >= (1 << 31) - 1 for m in s.get_state().values() if m.ndim > 1)
    assert 0.02 < float(np.mean(rates)) < 0.9 and clamped > 0, (np.mean(rates), clamped)


@pytest.mark.parametrize("name", ["vgg28", "stride2-if-8bit", "nonsquare-pool3", "narrowing", "resnet-mini", "resnet-if-8bit", "mlp-on-image"])
def test_compiled_equals_the_integer_reference(name):
    """The trained-net factory of the numpy core's exactness test, against the torch reference."""
    from test_conv_runtime_exact import net_and_bundle

    from spikeedge.offline.intref_conv import ConvIntegerReference

    _, bundle, x = net_and_bundle(name, 1, time_steps=6)
    ref = ConvIntegerReference(bundle)
    y_ref = ref.run(x)
    for method in ("event", "dense", "auto"):
        s = open_session(bundle, len(x), record_spikes=True, core="compiled", method=method)
        assert np.array_equal(s.run(x).outputs, y_ref), method
        for k, hist in enumerate(s.spike_history):
            assert np.array_equal(np.stack(hist), np.stack(ref.spike_history[k])), (method, k)


def test_core_choice_env_and_fallback(monkeypatch, tmp_path):
    bundle = make_conv_bundle(3, "vgg")
    monkeypatch.setenv(cores.ENV, "numpy")
    assert open_session(bundle).core == "numpy"
    monkeypatch.setenv(cores.ENV, "compiled")
    assert open_session(bundle).core == "compiled"
    assert open_session(bundle, core="numpy").core == "numpy"
    monkeypatch.delenv(cores.ENV)
    assert open_session(bundle).core == "compiled"
    fmt.save(bundle, tmp_path / "c.seb")
    script = (
        "import sys; sys.modules['spikeedge.runtime._conv_core'] = None\n"
        "import numpy as np\nfrom spikeedge.runtime import bundle as fmt, cores\nfrom spikeedge.runtime.sessions import open_session\n"
        "b = fmt.load(sys.argv[1]); s = open_session(b, 2)\nr = s.run(np.random.default_rng(0).random((2,) + tuple(b.input_shape)))\n"
        "assert s.core == 'numpy' and r.steps == b.time_steps and cores.CONV_LOAD_ERROR\n"
        "try:\n    open_session(b, core='compiled')\nexcept cores.CoreUnavailable as e:\n    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.seb")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: the compiled core cannot run this model: the compiled conv core is not built here" in out.stdout


def test_malformed_specs_are_refused():
    """The C side derives every shape from the geometry and checks each buffer itself."""
    from spikeedge.runtime import _conv_core

    bundle = make_conv_bundle(5, "vgg")
    sc = open_session(bundle, 2, core="compiled")
    good = sc._spec
    _conv_core.Conv(dict(good))  # the glue's own spec is accepted

    def with_layer(i: int, **changes: Any) -> dict:
        layers = [dict(layer) for layer in good["layers"]]
        layers[i].update(changes)
        return dict(good, layers=layers)

    w0 = good["layers"][0]["weight"]
    with pytest.raises(ValueError, match="weight"):
        _conv_core.Conv(with_layer(0, weight=np.zeros(w0.size + 1, np.int8)))
    with pytest.raises(ValueError, match="weight"):
        _conv_core.Conv(with_layer(0, weight=w0.astype(np.int16)))
    with pytest.raises(ValueError, match="mem"):
        _conv_core.Conv(with_layer(0, mem=np.zeros(good["layers"][0]["mem"].size - 1, np.int32)))
    with pytest.raises(ValueError, match="in_channels"):
        _conv_core.Conv(with_layer(0, in_channels=good["layers"][0]["in_channels"] + 1))
    with pytest.raises(ValueError, match="padding"):
        _conv_core.Conv(with_layer(0, padding=good["layers"][0]["kernel_h"]))
    wide = fmt.ConvBundle(fmt.DirectEncoder(576, 0.01, 8), (1, 24, 24), 2, (fmt.FlattenLayer("f"), fmt.LinearLifLayer(
        "l", 576, 2, 65536, 16, np.full((2, 576), 127, np.int8), np.ones(2, np.int64), np.zeros(2, np.int32), np.ones(2))),
        fmt.LinearReadout("r", 2, 1, np.ones((1, 2), np.int8), np.ones(1), np.zeros(1)))
    wide.check()  # valid with 8-bit inputs (576 x 127 x 127 < 2**31); the same spec with 16-bit inputs is not
    _conv_core.Conv(open_session(wide, core="compiled")._spec)
    with pytest.raises(ValueError, match="int32"):
        _conv_core.Conv(dict(open_session(wide, core="compiled")._spec, qmax=32767))
    with pytest.raises(ValueError, match="m out of range"):
        _conv_core.Conv(with_layer(0, m=np.full(good["layers"][0]["m"].size, 1 << 31, np.int64)))
    with pytest.raises(ValueError, match="readout"):
        _conv_core.Conv(dict(good, readout=dict(good["readout"], n_in=good["readout"]["n_in"] + 1)))
    with pytest.raises(ValueError, match="counters"):
        _conv_core.Conv(dict(good, counters=np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="stream"):
        _conv_core.Conv(with_layer(0, kind=3, channels=1))  # stream_lif with no stream
    n_in, n_out = bundle.n_inputs, bundle.n_outputs
    with pytest.raises(ValueError, match="step"):
        sc._c.step(np.zeros(2 * n_in + 1), np.zeros(2 * n_out))
    with pytest.raises(ValueError, match="float64"):
        sc._c.step(np.zeros(4 * n_in, np.float32), np.zeros(2 * n_out))
    with pytest.raises(ValueError, match="record"):
        sc._c.run(np.zeros(2 * n_in), np.zeros((2, 3, n_out)), tuple(np.zeros(5, np.uint8) for _ in bundle.layers))
    with pytest.raises(ValueError, match="NaN"):
        sc.step(np.full((2, n_in), np.nan))


def test_info_and_profile_say_which_core_ran(tmp_path, capsys, monkeypatch):
    from cli_helpers import call, one_json

    from spikeedge.measure.profile import profile_model

    bundle = make_conv_bundle(9, "resnet")
    fmt.save(bundle, tmp_path / "c.seb")
    x = images(bundle, 3, 0)
    for core in ("compiled", "numpy"):
        monkeypatch.setenv(cores.ENV, core)
        rc, out, err = call(capsys, "info", str(tmp_path / "c.seb"), "--json")
        assert rc == 0, err
        assert one_json(out)["core"]["core"] == core
        rec = profile_model(open_session(bundle), x)
        assert rec["core"] == core
        if core == "compiled":  # timed inside C, the numpy session's phases
            assert set(rec["phases_share"]) == {"encode", "accumulate", "neuron", "readout"} and rec["phases_share"]["neuron"] > 0
            steps = [a["path"]["steps"] for a in rec["accumulation"].values()]  # the switch points and the paths taken
            assert steps and all(s["event"] + s["dense"] == bundle.time_steps * 3 for s in steps)
        assert sum(rec["phases_share"].values()) == pytest.approx(1.0)


SANITIZED = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("spikeedge.runtime._conv_core", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["spikeedge.runtime._conv_core"] = mod
sys.path.insert(0, sys.argv[2])
import test_compiled_conv_core as t
from spikeedge.runtime import cores
assert cores._conv_core is mod
n = 0
for seed in range(8):
    for kind in t.KINDS:
        b = t.make_conv_bundle(seed, kind, saturate=seed == 7)
        for method in ("event", "dense", "auto"):
            t.check_equal(b, t.images(b, 1 + seed % 3, seed), method, "auto")
            n += 1
t.test_malformed_specs_are_refused()
print("sanitized checks:", n)
"""


@pytest.mark.slow
def test_exactness_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """``_conv_core.c`` built with ``-fsanitize=address,undefined`` runs the exactness checks clean
    (an out-of-bounds access, a signed overflow or a misaligned load aborts the process), on the
    portable code path (no AVX2 clones)."""
    import shutil
    import sysconfig
    from pathlib import Path

    cc = shutil.which("gcc")
    if cc is None:
        skip_unless_required("no gcc")
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        skip_unless_required("gcc has no AddressSanitizer runtime (libasan.so)")
    so = tmp_path / ("_conv_core" + sysconfig.get_config_var("EXT_SUFFIX"))
    src = Path(cores.__file__).with_name("_conv_core.c")
    cmd = [cc, "-shared", "-fPIC", "-O1", "-g", "-std=c11", "-ffp-contract=off", "-fno-trapping-math", "-fno-omit-frame-pointer",
           "-DSPIKEEDGE_NO_CLONES", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-I" + sysconfig.get_paths()["include"], str(src), "-o", str(so)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0 and ("cannot find" in build.stderr or "Python.h" in build.stderr):
        skip_unless_required("toolchain lacks a sanitizer library or Python headers: %s" % build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               PYTHONMALLOC="malloc", PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SANITIZED, str(so), str(Path(__file__).parent)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0 and "sanitized checks: 72" in out.stdout, out.stderr[-4000:]
    assert "runtime error" not in out.stderr, out.stderr[-4000:]
