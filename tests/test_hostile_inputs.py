"""Hostile input files for ``run`` and ``profile`` (issue 18, items 9 and 11): refused from the
``.npy`` header, in one line naming the file, before any data is read; large inputs streamed in
``--batch-size`` pieces with the same results as one batch.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from cli_helpers import assert_user_error, call, one_json
from spikeedge.runtime import bundle as fmt
from spikeedge.tasks.npz_stream import NpzArray
from test_hostile_bundles import N_IN, conv_bundle, recurrent


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.seb"
    fmt.save(recurrent(output="last"), path)
    return path


def npy_bytes(header: dict, data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def archive(path, members: dict, compression: int = zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def refused(capsys, model, path, fragment):
    for argv in (["run", model, "--input", path], ["run", model, "--input", path, "--json"],
                 ["profile", model, "--input", path, "--meter", "none", "--baseline", "0"]):
        rc, out, err = call(capsys, *argv)
        assert_user_error(rc, out, err, str(path), fragment)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_header_claiming_a_huge_shape(tmp_path, capsys, model, compression):
    """(10**11, 1) float64 is 800 GB: refused from the header, not by running out of memory."""
    blob = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**11, 1)}, b"\0" * 64)
    refused(capsys, model, archive(tmp_path / "huge.npz", {"x.npy": blob}, compression), "declares shape (100000000000, 1)")


@pytest.mark.parametrize("x,fragment", [
    (np.zeros(4, dtype=[("a", "<f8"), ("b", "<i4")]), "structured"),
    (np.ones((4, N_IN), np.complex128), "complex128"),
    (np.array([["1"] * N_IN] * 4), "<U1"),
    (np.array([[b"1"] * N_IN] * 4), "|S1"),
    (np.zeros((0, 5, N_IN)), "a batch of no inputs"),
    (np.zeros((2, 0, N_IN)), "inputs per step"),
    (np.array([np.datetime64("2020-01-01")] * N_IN), "datetime64"),
], ids=["structured", "complex", "unicode", "bytes", "zero-batch", "zero-steps", "datetime"])
def test_inputs_refused_in_one_line(tmp_path, capsys, model, x, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, x=x)
    refused(capsys, model, path, fragment)


def test_object_arrays_and_npy_version_3_are_refused(tmp_path, capsys, model):
    blob = npy_bytes({"descr": "|O", "fortran_order": False, "shape": (2, N_IN)}, b"\0" * 48)
    refused(capsys, model, archive(tmp_path / "obj.npz", {"x.npy": blob}), "pickled object arrays")
    v3 = b"\x93NUMPY\x03\x00" + b"\x10\x00\x00\x00" + b"{}".ljust(16)
    refused(capsys, model, archive(tmp_path / "v3.npz", {"x.npy": v3}), "version 3.0")


def test_truncated_member_is_refused(tmp_path, capsys, model):
    good = io.BytesIO()
    np.save(good, np.ones((4, N_IN)))
    refused(capsys, model, archive(tmp_path / "short.npz", {"x.npy": good.getvalue()[:-8]}), "declares shape (4, 3)")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_chunks_read_in_bounded_pieces(tmp_path, compression):
    x = np.arange(7 * 5 * N_IN, dtype=np.float32).reshape(7, 5, N_IN)
    buf = io.BytesIO()
    np.save(buf, x)
    arr = NpzArray(archive(tmp_path / "x.npz", {"x.npy": buf.getvalue()}, compression), "x")
    pieces = list(arr.chunks(3))
    assert [len(p) for p in pieces] == [3, 3, 1] and np.array_equal(np.concatenate(pieces), x)
    assert np.array_equal(arr.read(), x)


@pytest.mark.parametrize("batch_size", ["1", "3", "64"])
def test_run_in_batches_gives_the_same_results(tmp_path, capsys, model, batch_size):
    x = np.random.default_rng(0).uniform(-1, 1, (7, 20, N_IN))
    path = tmp_path / "x.npz"
    np.savez_compressed(path, x=x)
    rc, out, err = call(capsys, "run", model, "--input", path, "--json", "--batch-size", batch_size, "-o", tmp_path / "y.npz")
    assert rc == 0, err
    got = one_json(out)
    from spikeedge.runtime.sessions import open_session

    want = open_session(fmt.load(model)).run(x)
    assert got["predictions"] == np.argmax(want.outputs[:, -1], axis=1).tolist()
    assert got["spike_counts"] == want.spike_counts and got["synops"] == want.synops and got["batch"] == 7
    with np.load(tmp_path / "y.npz") as y:
        assert np.array_equal(y["outputs"], want.outputs)


def test_conv_images_in_batches(tmp_path, capsys):
    model = tmp_path / "c.seb"
    fmt.save(conv_bundle(), model)
    x = np.random.default_rng(1).uniform(0, 1, (9, 1, 6, 6))
    path = tmp_path / "x.npz"
    np.savez(path, x=x)
    rc, out, err = call(capsys, "run", model, "--input", path, "--json", "--batch-size", "4")
    assert rc == 0, err
    from spikeedge.runtime.sessions import open_session

    want = open_session(fmt.load(model)).run(x)
    got = one_json(out)
    assert got["predictions"] == np.argmax(want.outputs[:, -1], axis=1).tolist() and got["synops"] == want.synops


def test_batch_size_must_be_positive(tmp_path, capsys, model):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((2, 3, N_IN)))
    rc, out, err = call(capsys, "run", model, "--input", path, "--batch-size", "0")
    assert_user_error(rc, out, err, "--batch-size")


# ----------------------------------------------------------------------------- fuzz: any npy header


DESCRS = ["<f8", "<f4", "<i8", "|u1", "|b1", ">f8", "<c16", "<U3", "|S2", "|O", "<m8[s]", "<M8[D]", [("a", "<f8")], "<f2"]
DIMS = [0, 1, 2, 3, 12, 10**11, 2**40]


def test_hostile_inputs_through_run_and_profile(tmp_path):
    """Hypothesis writes .npz inputs with any header (dtype, shape, order), correct or wrong data
    sizes, stored or deflated; ``run`` and ``profile`` on each, in the worker under RLIMIT_AS:
    exit 2 in one line naming the file, or a run."""
    import json
    import os
    import subprocess
    import sys

    from hypothesis import given, settings
    from hypothesis import strategies as st

    cases = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(descr=st.sampled_from(DESCRS), shape=st.one_of(st.lists(st.sampled_from(DIMS), max_size=4), st.sampled_from([[3, 12, N_IN], [12, N_IN], [12]])),
           fortran=st.booleans(), exact=st.booleans(), extra=st.integers(0, 64), deflate=st.booleans(), key=st.sampled_from(["x", "x", "y"]),
           fill=st.sampled_from([0, 0x3F, 0xFF]))
    def collect(descr, shape, fortran, exact, extra, deflate, key, fill):
        itemsize = np.dtype(descr).itemsize
        size = int(np.prod(shape, dtype=object)) * itemsize if shape else itemsize
        n = size if exact and size <= 1 << 20 else extra
        blob = npy_bytes({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}, bytes([fill]) * n)
        cases.append(({key + ".npy": blob}, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED))

    collect()
    model = tmp_path / "m.seb"
    fmt.save(recurrent(output="last"), model)
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 5, N_IN)))
    jobs = [{"bundle": str(model), "input": str(archive(tmp_path / ("in%03d.npz" % i), members, comp))} for i, (members, comp) in enumerate(cases)]
    (tmp_path / "jobs.json").write_text(json.dumps({"warmup": {"bundle": str(model), "input": str(good)}, "jobs": jobs}))
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_worker.py")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, worker, str(384 << 20), str(tmp_path / "jobs.json")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = 0
    for job, res in zip(jobs, json.loads(proc.stdout)["results"]):
        for name in ("run", "profile"):
            r = res[name]
            assert "exception" not in r, "%s: %s escaped the CLI:\n%s" % (job["input"], name, r["exception"])
            if r["rc"] == 2:
                lines = r["err"].strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("error: " + job["input"]) and r["out"] == "", (job, r["err"])
            else:
                assert r["rc"] == 0, (job, r)
                json.loads(r["out"])
                ran += name == "run"
    assert 0 < ran < len(jobs)
