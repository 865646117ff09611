"""Issue 18's acceptance test: hypothesis writes well-formed but hostile bundles, each with a
correct checksum (shapes, offsets, dtypes, aliased regions, sizes, names, synapse indices, decays),
and ``info``, ``run`` and ``profile`` must each either refuse it (exit 2, one ``error:`` line, no
traceback) or run it correctly, inside an address-space limit.

The commands run in-process in ONE subprocess (``hostile_worker.py``) that loops over every file
under ``RLIMIT_AS`` = its own address space after warm-up + ``HEADROOM``; a ``MemoryError`` there
is a failure. Hypothesis draws the cases first (``HOSTILE_EXAMPLES``, default 1,000); a failing
case is reported with its base bundle and the edits that made it (``pytest
--hypothesis-seed=N`` replays a run).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import DeltaEncoder, RateEncoder
from spikeedge.runtime.sessions import open_session
from test_hostile_bundles import EVIL, N_IN, conv_bundle, recurrent, sign, split

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "1000"))  # 1,000 take about 35 s
HEADROOM = int(os.environ.get("HOSTILE_HEADROOM_MB", "384")) << 20  # address space beyond the warmed-up worker's
HERE = Path(__file__).resolve().parent

def _conv_sum_pool() -> Any:
    """The conv base with a ``sum_pool`` (schema version 2) between its neurons and the readout."""
    base = conv_bundle(side=8)  # conv 3x3 -> (2, 6, 6)
    pool = fmt.SumPoolLayer("pool", 2, 2, 2, 2)  # -> (2, 3, 3)
    w = np.random.RandomState(4).randint(-60, 60, (3, 18)).astype(np.int8)
    readout = fmt.LinearReadout("readout", 18, 3, w, np.full(3, 0.01), np.zeros(3))
    return dataclasses.replace(base, layers=(base.layers[0], pool, base.layers[1]), readout=readout)


BASES = {
    "direct": recurrent(output="last"),
    "direct8": recurrent(bits=8),
    "rate": dataclasses.replace(recurrent(), encoder=RateEncoder(N_IN, 0.7, 5)),
    "delta": dataclasses.replace(recurrent(n_in=2 * N_IN, output="last"), encoder=DeltaEncoder(N_IN, 0.1)),
    "conv": conv_bundle(),
    "conv_pool": _conv_sum_pool(),
}
HOSTILE_INTS = [0, 1, 2, 3, 7, 16, 255, 65535, 65536, 65537, 2**31 - 1, 2**31, 2**32, 2**62, 2**63, -1]
HOSTILE_SHAPES = [[0, 2**62], [2**62, 0], [0] * 65, [1] * 9, [2**31], [0, 2**31 - 1, 2**31 - 1], [], [2**40, 2**40]]
NAMES = [EVIL, "x" * 10000, "", "readout", "hidden", "conv", "flat", "\u202e", "a\nb"]


def _int_paths(node: Any, path: Tuple = ()) -> List[Tuple]:
    """Paths to every integer scalar and every ``name`` of the records (not the table or provenance)."""
    out: List[Tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        if k in ("arrays", "provenance", "array"):
            continue
        if (isinstance(v, int) and not isinstance(v, bool)) or k == "name" or k == "input_shape":
            out.append(path + (k,))
        if isinstance(v, (dict, list)) and k != "input_shape":
            out.extend(_int_paths(v, path + (k,)))
    return out


def _at(doc: Any, path: Tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def hostile(draw: Any) -> Tuple[str, bytes, List[str]]:
    base = draw(st.sampled_from(sorted(BASES)))
    manifest, arrays = fmt.bundle_to_manifest(BASES[base])
    manifest, arrays = copy.deepcopy(manifest), {k: v.copy() for k, v in arrays.items()}
    edits: List[str] = []
    names = sorted(arrays)
    for _ in range(draw(st.integers(0, 2))):  # edits of array contents: indices, decays, weights
        name = draw(st.sampled_from(names))
        a = arrays[name]
        if not a.size:
            continue
        flat = a.reshape(-1)
        i = draw(st.integers(0, flat.size - 1))
        if name.endswith("indices"):
            if draw(st.booleans()) and flat.size > 1:
                flat[1] = flat[0]  # a repeat when both fall in one column
            else:
                flat[i] = draw(st.sampled_from([int(flat[0]), int(flat[-1]), int(np.iinfo(a.dtype).max), 0]))
        elif a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            value = draw(st.sampled_from([-1, 0, 1, 65536, 65537, 2**31 - 1, -(2**31), 127, -128]))
            if draw(st.booleans()):
                flat[:] = np.clip(value, info.min, info.max)
            else:
                flat[i] = np.clip(value, info.min, info.max)
        else:
            flat[i] = draw(st.sampled_from([0.0, -1.0, 1e308, np.inf, np.nan, 1e-320]))
        edits.append("array %s[%d]" % (name, i))
    doc, data = split(fmt.encode_bytes(manifest, arrays))
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["shape", "offset", "dtype", "alias_many", "field_alias", "scalar", "scalar", "name"]))
        table = doc["arrays"]
        entry_name = draw(st.sampled_from(sorted(table)))
        entry = table[entry_name]
        if op == "shape":
            shape = draw(st.one_of(st.sampled_from(HOSTILE_SHAPES), st.lists(st.integers(0, 2**40), max_size=4),
                                   st.just(list(reversed(entry["shape"])))))
            entry["shape"] = shape
            if draw(st.booleans()):
                entry["nbytes"] = int(np.prod([int(s) for s in shape], dtype=object) or 0) * np.dtype(entry["dtype"]).itemsize
        elif op == "offset":
            other = table[draw(st.sampled_from(sorted(table)))]
            entry["offset"] = draw(st.sampled_from([other["offset"], other["offset"] + 1, entry["offset"] + 8, max(0, len(data) - 8), 2**40]))
        elif op == "dtype":
            dtype = draw(st.sampled_from(fmt.ALLOWED_DTYPES))
            size = np.dtype(dtype).itemsize
            entry.update(dtype=dtype, shape=[entry["nbytes"] // size], nbytes=entry["nbytes"] // size * size)
        elif op == "alias_many":
            for k in range(draw(st.sampled_from([1, 10, 1500]))):
                table["%s.alias%d" % (entry_name, k)] = dict(entry)
        elif op == "field_alias":
            refs = [p for p in _ref_paths(doc)]
            if refs:
                _at(doc, draw(st.sampled_from(refs)))["array"] = entry_name
        elif op in ("scalar", "name"):
            paths = [p for p in _int_paths(doc) if (p[-1] == "name") == (op == "name")]
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            if op == "name":
                value: Any = draw(st.sampled_from(NAMES))
            elif path[-1] == "input_shape":
                value = draw(st.sampled_from([[1, 4100, 4100], [0, 6, 6], [1, 6], [2**31, 1, 1], [1, 1, 1]]))
            else:
                value = draw(st.sampled_from(HOSTILE_INTS))
            _at(doc, path[:-1])[path[-1]] = value
        edits.append("%s %s" % (op, entry_name))
    return base, sign(doc, data), edits


def _ref_paths(node: Any, path: Tuple = ()) -> List[Tuple]:
    out: List[Tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        if k == "arrays":
            continue
        if isinstance(v, dict) and isinstance(v.get("array"), str):
            out.append(path + (k,))
        elif isinstance(v, (dict, list)):
            out.extend(_ref_paths(v, path + (k,)))
    return out


def _inputs(tmp: Path) -> Dict[str, Path]:
    rng = np.random.default_rng(0)
    out = {}
    for base, bundle in BASES.items():
        path = tmp / ("x_%s.npz" % base)
        if base.startswith("conv"):
            np.savez(path, x=rng.uniform(0, 1, (3,) + tuple(bundle.input_shape)))
        else:
            np.savez(path, x=rng.uniform(-1, 1, (3, 12, bundle.n_inputs)))
        out[base] = path
    return out


def _check(case: Tuple[str, bytes, List[str]], path: Path, x: Path, res: Dict[str, Any]) -> None:
    base, blob, edits = case
    where = "%s from %s with %s" % (path.name, base, edits)
    for name, r in res.items():
        assert "exception" not in r, "%s: %s escaped the CLI:\n%s" % (where, name, r["exception"])
        assert r["rc"] in (0, 2), "%s: %s exited %r: %r" % (where, name, r["rc"], r["err"][-500:])
        assert "Traceback" not in r["err"], where
        if r["rc"] == 2:
            lines = r["err"].strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and r["out"] == "", "%s: %s: %r" % (where, name, r["err"][-500:])
            assert "\x1b" not in r["err"], where
        elif name != "info_text":
            json.loads(r["out"])  # one JSON object
    info = res["info"]
    if info["rc"] == 2:  # a refused bundle is refused by every command, with the same message
        for name in ("run", "profile", "info_text"):
            assert res[name]["err"] == info["err"], "%s: %s: %r vs %r" % (where, name, res[name]["err"], info["err"])
        return
    bundle = fmt.loads(blob, str(path))  # loaded by the CLI: the library agrees
    run = res["run"]
    if run["rc"] == 2:  # only the input may be refused now: it no longer fits the edited model
        assert str(x) in run["err"] and str(path) not in run["err"], "%s: %r" % (where, run["err"])
        return
    got = json.loads(run["out"])
    with np.load(x) as z:
        xs = z["x"]
    want = open_session(bundle).run(xs)
    assert got["synops"] == want.synops and got["spike_counts"] == want.spike_counts, where
    if bundle.output == "last":
        assert got["predictions"] == np.argmax(want.outputs[:, -1], axis=1).tolist(), where
    ref_counts, ref_last = _reference(bundle, xs)  # the offline integer reference, dense torch arithmetic
    assert got["spike_counts"] == ref_counts, "%s: %r vs reference %r" % (where, got["spike_counts"], ref_counts)
    assert np.array_equal(want.outputs[:, -1], ref_last), where


def _reference(bundle: Any, xs: np.ndarray) -> Tuple[Dict[str, int], np.ndarray]:
    """Spike counts and last outputs of the offline integer reference (dense torch int64)."""
    from spikeedge.offline.intref import IntegerReference
    from spikeedge.offline.intref_conv import ConvIntegerReference

    if isinstance(bundle, fmt.ConvBundle):
        ref: Any = ConvIntegerReference(bundle)
        ref.start(len(xs))
        for _ in range(bundle.time_steps):
            y = ref.step(xs.reshape(len(xs), -1))
    else:
        ref = IntegerReference(bundle)
        ref.start(len(xs), xs[:, 0])
        for t in range(xs.shape[1]):
            y = ref.step(xs[:, t])
    return ref.spike_counts, np.asarray(y)


def test_hostile_bundles_through_the_cli(tmp_path):
    cases: List[Tuple[str, bytes, List[str]]] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=hostile())
    def collect(case: Tuple[str, bytes, List[str]]) -> None:
        cases.append(case)

    t0 = time.perf_counter()
    collect()
    t1 = time.perf_counter()
    assert len(cases) >= min(EXAMPLES, 500)
    inputs = _inputs(tmp_path)
    warm = tmp_path / "warm.seb"
    fmt.save(BASES["direct"], warm)
    jobs = []
    for i, (base, blob, _) in enumerate(cases):
        path = tmp_path / ("h%04d.seb" % i)
        path.write_bytes(blob)
        jobs.append({"bundle": str(path), "input": str(inputs[base])})
    (tmp_path / "jobs.json").write_text(json.dumps({"warmup": {"bundle": str(warm), "input": str(inputs["direct"])}, "jobs": jobs}))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(HERE / "hostile_worker.py"), str(HEADROOM), str(tmp_path / "jobs.json")],
                          capture_output=True, text=True, env=env, timeout=600)
    t2 = time.perf_counter()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert len(report["results"]) == len(cases)
    refused = 0
    for case, job, res in zip(cases, jobs, report["results"]):
        _check(case, Path(job["bundle"]), Path(job["input"]), res)
        refused += res["info"]["rc"] == 2
    assert 0 < refused < len(cases)  # both outcomes were exercised
    print("%d hostile bundles: %d refused, %d ran; worker limit %.0f MB (baseline %.0f MB), peak RSS %.0f MB; drawn in %.1f s, "
          "worker %.1f s, checks %.1f s" % (len(cases), refused, len(cases) - refused, report["limit_bytes"] / 2**20, report["baseline_bytes"] / 2**20,
                                             report["peak_rss_bytes"] / 2**20, t1 - t0, t2 - t1, time.perf_counter() - t2))
