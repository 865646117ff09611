"""The compiled event core (``runtime/_core.c``) equals the numpy runtime and the offline integer
reference bit for bit, falls back to numpy when it cannot run, and refuses malformed buffers.

Random recurrent bundles are drawn by hypothesis over every encoder, both resets, one or two
layers, batch sizes 1-5, decays up to 1.0 (no leak: the int32 clamp fires), huge biases
(saturation), every trace width, and each accumulation path of both cores forced in turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeedge.runtime import accumulate, compiled
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import SpikeedgeError
from required import skip_unless_required

pytestmark = pytest.mark.skipif(compiled.LOAD_ERROR is not None, reason=str(compiled.LOAD_ERROR))

INT32_MAX = (1 << 31) - 1


def make_bundle(seed: int, encoder: str, reset: str, n_layers: int = 1, saturate: bool = False, small: bool = False,
                n_in: int = 0) -> fmt.Bundle:
    """A random valid recurrent bundle; ``saturate``: no leak and huge biases, so the clamp fires;
    ``small``: every multiplier below 2**16 (the int32 loops' two-multiply form); ``n_in``: that
    many inputs (default 1-5)."""
    rng = np.random.default_rng(seed)
    n_in = n_in or int(rng.integers(1, 6))
    n_ch = 2 * n_in if encoder == "delta" else n_in
    layers, src = [], n_ch
    for i in range(n_layers):
        n = int(rng.integers(1, 50))
        density = float(rng.choice([0.05, 0.3, 1.0]))

        def sparse(rows: int, cols: int) -> fmt.SparseMatrix:
            w = np.where(rng.random((rows, cols)) < density, rng.integers(-127, 128, (rows, cols)), 0)
            return fmt.SparseMatrix.from_dense(w.astype(np.int8))

        decay = lambda: (np.full(n, 65536) if saturate else rng.integers(0, 65537, n)).astype(np.int32)  # noqa: E731
        m = lambda: np.exp(rng.uniform(np.log(1 << 10), np.log(1 << (16 if small else 24)), n)).astype(np.int64).clip(0, 65535 if small else None)  # noqa: E731
        bias = rng.integers(-(1 << 29), 1 << 29, n) if saturate else rng.integers(-3000, 6000, n)
        layers.append(fmt.LifRecurrentLayer(
            name="l%d" % i, n=n, reset=reset, w_in=sparse(n, src), w_rec=sparse(n, n), a_syn=decay(), a_mem=decay(), m_in=m(),
            m_rec=m(), bias=bias.astype(np.int32), w_in_scale=np.full(n, 0.01), w_rec_scale=np.full(n, 0.01)))
        src = n
    n_out = int(rng.integers(1, 4))
    a_trace = np.full(src, 65536) if saturate else rng.integers(0, 65537, src)
    ro = fmt.TraceReadout(name="readout", n_in=src, n_out=n_out, trace_bits=int(rng.integers(0, 17)), a_trace=a_trace.astype(np.int32),
                          w=rng.integers(-127, 128, (n_out, src)).astype(np.int8), w_scale=rng.uniform(1e-4, 1e-2, n_out),
                          bias=rng.uniform(-1, 1, n_out))
    if encoder == "direct":
        enc: Any = fmt.DirectEncoder(n_in, float(rng.uniform(0.001, 0.1)), int(rng.choice([8, 16])))
    elif encoder == "rate":
        enc = fmt.RateEncoder(n_in, float(rng.uniform(0.2, 2.0)), int(rng.integers(0, 1 << 31)))
    else:
        enc = fmt.DeltaEncoder(n_in, float(rng.uniform(0.05, 0.5)))
    return fmt.loads(fmt.dumps(fmt.Bundle(enc, tuple(layers), ro)))


def inputs(bundle: fmt.Bundle, batch: int, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, steps, bundle.encoder.n_inputs)
    if bundle.encoder.kind == "encoder.delta":
        return np.cumsum(rng.normal(0, 0.4, shape), axis=1)
    return rng.uniform(-0.5, 1.5, shape)


@contextmanager
def numpy_path(path: str) -> Iterator[None]:
    """The numpy core's accumulation: ``rows`` (dense int8 rows, the default), ``sparse`` (the
    sparse gather of matrices too large to copy)."""
    before = accumulate.DENSE_ROWS_MAX_BYTES
    if path == "sparse":
        accumulate.DENSE_ROWS_MAX_BYTES = 0
    try:
        yield
    finally:
        accumulate.DENSE_ROWS_MAX_BYTES = before


def check_equal(bundle: fmt.Bundle, xs: np.ndarray, c_path: str, np_path: str, reference: bool) -> Any:
    """Compiled run == compiled step-by-step == numpy run (== integer reference); returns the
    compiled run's result."""
    batch = xs.shape[0]
    with numpy_path(np_path):
        ref_np = open_session(bundle, batch, record_spikes=True, core="numpy")
        want = ref_np.run(xs)
    sc = open_session(bundle, batch, record_spikes=True, core="compiled")
    assert sc.core == "compiled" and ref_np.core == "numpy"
    if c_path != "auto":
        sc.force_path(c_path)
    got = sc.run(xs)
    assert np.array_equal(got.outputs, want.outputs)
    assert got.spike_counts == want.spike_counts and got.synops == want.synops and got.steps == want.steps
    for h_c, h_n in zip(sc.spike_history, ref_np.spike_history):
        assert np.array_equal(np.array(h_c), np.array(h_n))
    state_c, state_n = sc.get_state(), ref_np.get_state()
    assert all(np.array_equal(state_c[k], state_n[k]) for k in state_n)
    sc.start(batch, xs[:, 0])
    stepped = np.stack([sc.step(xs[:, t]) for t in range(xs.shape[1])], axis=1)
    assert np.array_equal(stepped, want.outputs)
    if c_path != "auto":
        steps = [v["steps"] for entry in sc.accumulation_report().values() for v in entry.values()]
        other = "scatter" if c_path == "rows" else "rows"
        assert sum(s[other] for s in steps) == 0
    if reference:
        from spikeedge.offline.intref import IntegerReference

        ref = IntegerReference(bundle)
        ref.start(batch, xs[:, 0])
        out_ref = np.stack([ref.step(xs[:, t]) for t in range(xs.shape[1])], axis=1)
        assert np.array_equal(out_ref, got.outputs)
        for h_c, h_r in zip(sc.spike_history, ref.spike_history):
            assert np.array_equal(np.array(h_c[-xs.shape[1]:]), np.array(h_r))
    return got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), encoder=st.sampled_from(["direct", "rate", "delta"]), reset=st.sampled_from(["subtract", "zero"]),
       n_layers=st.integers(1, 2), batch=st.integers(1, 5), c_path=st.sampled_from(["auto", "rows", "scatter"]),
       np_path=st.sampled_from(["rows", "sparse"]), saturate=st.booleans(), small=st.booleans())
def test_random_bundles_compiled_equals_numpy(seed, encoder, reset, n_layers, batch, c_path, np_path, saturate, small):
    bundle = make_bundle(seed, encoder, reset, n_layers, saturate, small)
    check_equal(bundle, inputs(bundle, batch, 40, seed + 1), c_path, np_path, reference=False)


@pytest.mark.parametrize("encoder", ["direct", "rate", "delta"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("c_path", ["rows", "scatter"])
def test_compiled_equals_the_integer_reference(encoder, reset, c_path):
    """Against the offline reference (torch, dense), two layers, 3 streams, 300 steps; the
    network must be active for the comparison to mean something."""
    pytest.importorskip("torch")
    bundle = next(b for s in range(50) for b in [make_bundle(s, encoder, reset, 2)] if min(layer.n for layer in b.layers) >= 10)
    got = check_equal(bundle, inputs(bundle, 3, 300, 7), c_path, "rows", reference=True)
    rates = [got.spike_counts[layer.name] / (300 * 3 * layer.n) for layer in bundle.layers]
    assert all(0.005 < r < 0.95 for r in rates), rates


def test_saturation_fires_and_stays_exact():
    """No leak and huge biases: syn, mem and the trace reach the int32 limits; still exact."""
    pytest.importorskip("torch")
    bundle = make_bundle(3, "rate", "zero", 1, saturate=True)
    sc = open_session(bundle, 2, record_spikes=True, core="compiled")
    xs = inputs(bundle, 2, 200, 4)
    check_equal(bundle, xs, "auto", "rows", reference=True)
    sc.run(xs)
    state = sc.get_state()
    assert np.abs(state["syn0"]).max() == INT32_MAX or np.abs(state["mem0"]).max() >= INT32_MAX or np.abs(state["trace"]).max() == INT32_MAX


@pytest.mark.parametrize("small", [True, False])
def test_every_neuron_trace_and_readout_loop_is_exercised_and_exact(small):
    """The int32 loops (two-multiply form for multipliers < 2**16, split form above) where the
    bounds keep values inside int32, float64 / int64 where the clamp can fire: each one taken
    (``paths``), each one equal to numpy and the integer reference."""
    pytest.importorskip("torch")
    seen = set()
    for saturate in (False, True):
        bundle = next(b for s in range(50) for b in [make_bundle(s, "rate", "subtract", 2, saturate, small)] if min(x.n for x in b.layers) >= 10)
        sc = open_session(bundle, 2, core="compiled")
        sc.start(2)
        paths = sc._c.paths()
        seen.update(paths["neuron"] + [paths["trace"], paths["readout"]])
        check_equal(bundle, inputs(bundle, 2, 120, 5), "auto", "rows", reference=True)
    want = {"int32" if small else "int32-split", "int32-blocks", "float64"}
    assert want <= seen, seen


@pytest.mark.parametrize("vector_draws", [True, False])
def test_rate_encoder_skipped_draws_and_long_frames_equal_numpy(vector_draws, monkeypatch):
    """Inputs that cannot fire (<= 0, NaN) or must (rate >= 1) take no draw in C, all-zero frames
    take none at all, and frames longer than the 1,024-entry jump table go in blocks: the spikes
    and the generator's state stay numpy's, with the AVX-512 draws (eight per pass, where the CPU
    has them) and with the scalar ones (``SPIKEEDGE_NO_AVX512``)."""
    if not vector_draws:
        monkeypatch.setenv("SPIKEEDGE_NO_AVX512", "1")
    bundle = make_bundle(4, "rate", "zero", 1, small=True, n_in=2500)
    rng = np.random.default_rng(9)
    xs = rng.choice([0.0, -0.3, 0.2, 0.9, 1.0, 3.0, np.nan], size=(2, 30, 2500), p=[0.4, 0.1, 0.2, 0.1, 0.05, 0.05, 0.1])
    xs[:, 5:9] = 0.0  # whole frames of zeros
    xs[0, 12] = 0.5
    sn, sc = open_session(bundle, 2, record_spikes=True, core="numpy"), open_session(bundle, 2, record_spikes=True, core="compiled")
    sn.start(2)
    sc.start(2)
    for t in range(xs.shape[1]):
        assert np.array_equal(sc.step(xs[:, t]), sn.step(xs[:, t]))
    assert np.array_equal(np.array(sc.spike_history), np.array(sn.spike_history))
    assert sc.synops == sn.synops and sc.synops > 0
    st_n = sn.encoder.rng.bit_generator.state["state"]["state"]
    assert (int(sc._rng[0]) << 64 | int(sc._rng[1])) == st_n


def test_rate_encoder_draws_are_numpys():
    """The C PCG64 gives Generator.random's doubles, from any seed, across calls."""
    from spikeedge.runtime import _core

    for seed in (0, 1, 12345, 2**31 - 1):
        s = np.random.default_rng(seed).bit_generator.state["state"]
        state = np.array([s["state"] >> 64, s["state"] & (2**64 - 1), s["inc"] >> 64, s["inc"] & (2**64 - 1)], np.uint64)
        a, b = np.empty(1000), np.empty(7)
        _core.pcg64_fill(state, a)
        _core.pcg64_fill(state, b)
        assert np.array_equal(np.concatenate([a, b]), np.random.default_rng(seed).random(1007))


def test_set_state_open_loop_equals_numpy():
    """Every step starts from the numpy session's state (``set_state``): the spike lists are
    rebuilt from the loaded spikes, so the recurrent input matches."""
    bundle = make_bundle(11, "direct", "subtract", 2)
    xs = inputs(bundle, 2, 60, 3)
    sn, sc = open_session(bundle, 2, core="numpy"), open_session(bundle, 2, core="compiled")
    sn.start(2, xs[:, 0])
    sc.start(2, xs[:, 0])
    for t in range(60):
        sc.set_state(sn.get_state())
        assert np.array_equal(sc.step(xs[:, t]), sn.step(xs[:, t]))
    assert sc.get_state().keys() == sn.get_state().keys()
    assert all(np.array_equal(sc.get_state()[k], sn.get_state()[k]) for k in sn.get_state())


def test_core_choice_env_and_fallback(monkeypatch):
    bundle = make_bundle(5, "rate", "subtract")
    monkeypatch.setenv(compiled.ENV, "numpy")
    assert open_session(bundle).core == "numpy"
    monkeypatch.setenv(compiled.ENV, "compiled")
    assert open_session(bundle).core == "compiled"
    assert open_session(bundle, core="numpy").core == "numpy"
    monkeypatch.setenv(compiled.ENV, "fast")
    with pytest.raises(SpikeedgeError, match="SPIKEEDGE_CORE"):
        open_session(bundle)
    monkeypatch.delenv(compiled.ENV)
    assert open_session(bundle).core == "compiled"
    with pytest.raises(compiled.CoreUnavailable, match="conv"):
        compiled.choose(type("Conv", (), {"model": "conv"})(), "compiled")


def test_without_the_extension_everything_runs_on_numpy(tmp_path):
    """A fresh process where the extension cannot be imported (as on a board with no compiler):
    sessions open on numpy and say so; requiring the compiled core is an error."""
    bundle = make_bundle(6, "delta", "zero")
    fmt.save(bundle, tmp_path / "m.seb")
    script = (
        "import sys; sys.modules['spikeedge.runtime._core'] = None\n"
        "import numpy as np\nfrom spikeedge.runtime import bundle as fmt, compiled\nfrom spikeedge.runtime.sessions import open_session\n"
        "b = fmt.load(sys.argv[1]); s = open_session(b, 2)\nr = s.run(np.random.default_rng(0).random((2, 30, b.n_inputs)))\n"
        "assert s.core == 'numpy' and r.steps == 30 and compiled.LOAD_ERROR\n"
        "try:\n    open_session(b, core='compiled')\nexcept compiled.CoreUnavailable as e:\n    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.seb")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: the compiled core cannot run this model: the compiled core is not built here" in out.stdout


def test_malformed_buffers_are_refused():
    """The C side checks every length, index and bound itself (never trusts the glue)."""
    from spikeedge.runtime import _core

    bundle = make_bundle(8, "direct", "subtract")
    sc = open_session(bundle, 1, core="compiled")
    layer = bundle.layers[0]
    good = dict(sc._spec)

    def spec_with(**changes: Any) -> dict:
        lay = dict(good["layers"][0])
        w_in = dict(lay["w_in"])
        w_in.update(changes)
        lay["w_in"] = w_in
        return dict(good, layers=[lay])

    _core.Recurrent(dict(good))  # the glue's own spec is accepted
    bad_idx = good["layers"][0]["w_in"]["indices"].copy()
    if bad_idx.size:
        bad_idx[0] = layer.n
        with pytest.raises(ValueError, match="out of range"):
            _core.Recurrent(spec_with(indices=bad_idx))
    with pytest.raises(ValueError, match="indices"):
        _core.Recurrent(spec_with(indices=np.zeros(good["layers"][0]["w_in"]["indices"].size + 1, np.int32)))
    with pytest.raises(ValueError, match="chunk"):
        _core.Recurrent(spec_with(chunk=32767))
    with pytest.raises(ValueError, match="indptr"):
        _core.Recurrent(spec_with(indptr=np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="trace"):
        _core.Recurrent(dict(good, trace=np.zeros(layer.n + 1, np.int32)))
    with pytest.raises(BufferError, match="step"):  # BufferError: the glue converts such an x and calls again
        sc._c.step(np.zeros(bundle.n_inputs + 1), np.zeros(bundle.n_outputs))
    with pytest.raises(BufferError, match="float64"):  # the same bytes as float32: the type is checked too
        sc._c.step(np.zeros(2 * bundle.n_inputs, np.float32), np.zeros(bundle.n_outputs))
    with pytest.raises(BufferError, match="float64"):  # not C-contiguous
        sc._c.step(np.zeros((bundle.n_inputs, 2))[:, 0], np.zeros(bundle.n_outputs))
    with pytest.raises(ValueError, match="out"):
        sc._c.step(np.zeros(bundle.n_inputs), np.zeros(bundle.n_outputs + 1))
    want = open_session(bundle, 1, core="numpy")  # what the glue converts: lists, float32, strided views, 1-d
    for x in ([0.3] * bundle.n_inputs, np.full(bundle.n_inputs, 0.3, np.float32), np.full((bundle.n_inputs, 2), 0.3)[:, 0]):
        assert np.array_equal(sc.step(x), want.step(np.asarray(x, np.float64)))
    with pytest.raises(SpikeedgeError, match="values per step"):
        sc.step(np.zeros(bundle.n_inputs + 1))
    with pytest.raises(ValueError, match="record"):
        sc._c.run(np.zeros((1, 3, bundle.n_inputs)), np.zeros((1, 3, bundle.n_outputs)), (np.zeros(3 * layer.n + 1, np.uint8),))
    with pytest.raises(ValueError, match="NaN"):
        sc.step(np.full((1, bundle.n_inputs), np.nan))


SANITIZED = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("spikeedge.runtime._core", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["spikeedge.runtime._core"] = mod
sys.path.insert(0, sys.argv[2])
import test_compiled_core as t
from spikeedge.runtime import _core
assert _core is mod
n = 0
for seed in range(6):
    for enc in ("direct", "rate", "delta"):
        for reset in ("subtract", "zero"):
            b = t.make_bundle(seed, enc, reset, 1 + seed % 2, saturate=seed == 5, small=seed % 3 == 1)
            for path in ("rows", "scatter", "auto"):
                t.check_equal(b, t.inputs(b, 1 + seed % 4, 30, seed), path, "rows", reference=False)
                n += 1
t.test_malformed_buffers_are_refused()
t.test_set_state_open_loop_equals_numpy()
import pytest as _pytest
t.test_rate_encoder_skipped_draws_and_long_frames_equal_numpy(False, _pytest.MonkeyPatch())
print("sanitized checks:", n)
"""


@pytest.mark.slow
def test_exactness_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """``_core.c`` built with ``-fsanitize=address,undefined`` runs the exactness checks clean
    (any out-of-bounds access, signed overflow or misaligned load aborts the process), on the
    portable code paths (no ``__int128``, no AVX2 clones) that this machine's build skips."""
    import shutil
    import sysconfig
    from pathlib import Path

    cc = shutil.which("gcc")
    if cc is None:
        skip_unless_required("no gcc")
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        skip_unless_required("gcc has no AddressSanitizer runtime (libasan.so)")
    so = tmp_path / ("_core" + sysconfig.get_config_var("EXT_SUFFIX"))
    src = Path(compiled.__file__).with_name("_core.c")
    # the portable branches too: 64-bit multiplies without __int128 (32-bit boards), no AVX2 clones
    cmd = [cc, "-shared", "-fPIC", "-O1", "-g", "-std=c11", "-ffp-contract=off", "-fno-trapping-math", "-fno-omit-frame-pointer",
           "-DSPIKEEDGE_NO_INT128", "-DSPIKEEDGE_NO_CLONES",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-I" + sysconfig.get_paths()["include"], str(src), "-o", str(so)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0 and ("cannot find" in build.stderr or "Python.h" in build.stderr):
        skip_unless_required("toolchain lacks a sanitizer library or Python headers: %s" % build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               PYTHONMALLOC="malloc", PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SANITIZED, str(so), str(Path(__file__).parent)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0 and "sanitized checks: 108" in out.stdout, out.stderr[-4000:]
    assert "runtime error" not in out.stderr, out.stderr[-4000:]


def test_info_and_profile_say_which_core_ran(tmp_path, capsys, monkeypatch):
    from cli_helpers import call, one_json

    from spikeedge.measure.profile import profile_model

    bundle = make_bundle(9, "rate", "subtract")
    fmt.save(bundle, tmp_path / "m.seb")
    xs = inputs(bundle, 1, 20, 0)
    for core in ("compiled", "numpy"):
        monkeypatch.setenv(compiled.ENV, core)
        rc, out, err = call(capsys, "info", str(tmp_path / "m.seb"), "--json")
        assert rc == 0, err
        assert one_json(out)["core"]["core"] == core
        rec = profile_model(open_session(bundle), xs)
        assert rec["core"] == core
        assert set(rec["phases_share"]) == {"encode", "accumulate", "neuron", "readout"}  # timed inside C on the compiled core
        assert sum(rec["phases_share"].values()) == pytest.approx(1.0) and rec["phases_share"]["neuron"] > 0


def test_run_releases_the_gil_and_refuses_concurrent_use():
    """A long ``run`` executes without the GIL (so ``bench``'s power-sampler thread keeps
    sampling), and the same session used from another thread meanwhile is refused, not raced."""
    import threading

    bundle = make_bundle(12, "direct", "subtract")
    sc = open_session(bundle, 1, core="compiled")
    xs = np.random.default_rng(0).random((1, 400_000, bundle.n_inputs))
    worker = threading.Thread(target=sc.run, args=(xs,))
    refused = []
    worker.start()
    while worker.is_alive() and not refused:
        try:
            sc._c.step(np.zeros(bundle.n_inputs), np.zeros(bundle.n_outputs))
        except RuntimeError as exc:
            refused.append(str(exc))
    worker.join()
    assert refused == ["this session is running in another thread"]
    assert sc.steps == 400_000 or sc.steps == 400_001  # the run completed (a step may have slipped in before it began)
