"""The ``.seb`` bundle format: round trips for every registered kind, byte layout, checksum,
atomic writes, no pickle (``docs/bundle.md``).

Bundles are built from the record dataclasses directly (no torch), at random but valid, by
``random_bundle`` below; ``tests/test_bundle_corruption.py`` has the refusals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import struct
from typing import Any, Dict, List

import numpy as np
import pytest

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import (
    Bundle,
    DeltaEncoder,
    DirectEncoder,
    LifRecurrentLayer,
    RateEncoder,
    SparseMatrix,
    TraceReadout,
)
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import BundleError

ENCODERS = ("direct", "rate", "delta")
RESETS = ("subtract", "zero")

# ----------------------------------------------------------------------------- fixture factory


def random_int8(rng: np.random.RandomState, rows: int, cols: int) -> np.ndarray:
    """A random int8 matrix with a random density, some all-zero columns, extremes included."""
    w = rng.randint(-128, 128, size=(rows, cols)).astype(np.int8)
    w[rng.rand(rows, cols) > rng.choice([0.0, 0.2, 0.6, 1.0])] = 0
    if cols:
        w[:, rng.rand(cols) < 0.3] = 0  # empty columns: sources without targets
    return w


def random_sparse(rng: np.random.RandomState, rows: int, cols: int) -> SparseMatrix:
    """``from_dense`` of a random matrix, sometimes re-stored with the wider allowed dtypes
    (int32 indices, int64 indptr) so that both dtypes of each field go through the format."""
    m = SparseMatrix.from_dense(random_int8(rng, rows, cols))
    if rng.rand() < 0.5:
        m = SparseMatrix(m.n_targets, m.n_sources, m.indptr.astype(np.int64), m.indices.astype(np.int32), m.values)
    return m


def random_bundle(seed: int, encoder: str = "direct", reset: str = "subtract", n_layers: int = 0) -> Bundle:
    """A random valid bundle: ``encoder`` in ENCODERS, ``reset`` in RESETS, 1-2 layers
    (``n_layers`` 0 = random), nested JSON provenance."""
    rng = np.random.RandomState(seed)
    n_inputs = int(rng.randint(1, 5))
    if encoder == "direct":
        enc: Any = DirectEncoder(n_inputs, float(rng.uniform(1e-3, 1.0)), int(rng.choice([8, 16])))
    elif encoder == "rate":
        enc = RateEncoder(n_inputs, float(rng.uniform(0.1, 3.0)), int(rng.randint(0, 2**31 - 1)))
    else:
        enc = DeltaEncoder(n_inputs, float(rng.uniform(1e-2, 1.0)))
    n_ch = n_inputs * (2 if encoder == "delta" else 1)
    layers = []
    for i in range(n_layers or int(rng.randint(1, 3))):
        n = int(rng.randint(1, 9))
        layers.append(
            LifRecurrentLayer(
                name="hidden%d" % i,
                n=n,
                reset=reset,
                w_in=random_sparse(rng, n, n_ch),
                w_rec=random_sparse(rng, n, n),
                a_syn=rng.randint(0, (1 << 16) + 1, n).astype(np.int32),
                a_mem=rng.randint(0, (1 << 16) + 1, n).astype(np.int32),
                m_in=rng.randint(1, 1 << 20, n).astype(np.int64),
                m_rec=rng.randint(1, 1 << 20, n).astype(np.int64),
                bias=rng.randint(-4000, 4000, n).astype(np.int32),
                w_in_scale=rng.uniform(1e-4, 1.0, n),
                w_rec_scale=rng.uniform(1e-4, 1.0, n),
            )
        )
        n_ch = n
    n_out = int(rng.randint(1, 4))
    readout = TraceReadout(
        name="readout",
        n_in=n_ch,
        n_out=n_out,
        trace_bits=int(rng.randint(0, 17)),
        a_trace=rng.randint(0, (1 << 16) + 1, n_ch).astype(np.int32),
        w=random_int8(rng, n_out, n_ch),
        w_scale=rng.uniform(1e-4, 1.0, n_out),
        bias=rng.normal(size=n_out),
    )
    provenance = {
        "model": "hrsnn",
        "seed": seed,
        "config": {"neurons": [layer.n for layer in layers], "encoder": encoder, "reset": reset},
        "steps": [{"op": "prune", "kept": 0.25, "nested": {"deep": [1, [2, [3, None]]]}}, {"op": "quantize", "ok": True}],
        "note": "éλ∞ \"quoted\" \n newline",
        "big": 2**70,
        "empty": {},
    }
    return Bundle(enc, tuple(layers), readout, output=str(rng.choice(["sequence", "last"])), provenance=provenance)


ALL_KINDS = [(enc, reset, seed) for enc in ENCODERS for reset in RESETS for seed in range(3)]


def kinds_in(bundle: Bundle) -> set:
    """Every record kind a bundle holds (nested records included)."""
    found = set()

    def walk(obj: Any) -> None:
        if dataclasses.is_dataclass(obj) and hasattr(obj, "kind"):
            found.add(obj.kind)
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name))

    walk(bundle.encoder)
    for layer in bundle.layers:
        walk(layer)
    walk(bundle.readout)
    return found


def assert_same(a: Any, b: Any, where: str = "bundle") -> None:
    """Structural equality: same record types, arrays equal with the same dtype and shape,
    scalars equal with the same Python type."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            if f.name != "sha256":
                assert_same(getattr(a, f.name), getattr(b, f.name), "%s.%s" % (where, f.name))
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, "%s: %s%s vs %s%s" % (where, a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, "%s[%d]" % (where, i))
    else:
        assert type(a) is type(b) and a == b, "%s: %r != %r" % (where, a, b)


def split_blob(blob: bytes):
    """(manifest dict, data region, digest) of bundle bytes, parsed by hand from the layout."""
    assert blob[:8] == fmt.MAGIC
    (length,) = struct.unpack("<I", blob[8:12])
    doc = json.loads(blob[12 : 12 + length].decode("utf-8"))
    return doc, blob[12 + length : -32], blob[-32:]


# ----------------------------------------------------------------------------- round trips


def test_factory_covers_every_registered_kind():
    """A new record kind in REGISTRY must be added to ``random_bundle`` (and to the docs)."""
    found = set()
    for enc, reset, seed in ALL_KINDS:
        found |= kinds_in(random_bundle(seed, enc, reset))
    assert found == set(fmt.REGISTRY)
    resets = {layer.reset for enc, reset, seed in ALL_KINDS for layer in random_bundle(seed, enc, reset).layers}
    assert resets == set(RESETS)


@pytest.mark.parametrize("encoder,reset,seed", ALL_KINDS)
def test_dumps_loads_round_trip(encoder, reset, seed):
    bundle = random_bundle(seed, encoder, reset)
    bundle.check()
    blob = fmt.dumps(bundle)
    back = fmt.loads(blob)
    assert_same(bundle, back)
    assert back.sha256 == hashlib.sha256(blob[:-32]).hexdigest()
    assert fmt.dumps(back) == blob  # deterministic: the same bundle gives the same bytes


@pytest.mark.parametrize("encoder,reset,seed", ALL_KINDS[::2])
def test_save_load_round_trip(tmp_path, encoder, reset, seed):
    bundle = random_bundle(seed, encoder, reset)
    path = tmp_path / "model.seb"
    digest = fmt.save(bundle, path)
    back = fmt.load(path)
    assert_same(bundle, back)
    raw = path.read_bytes()
    assert digest == back.sha256 == hashlib.sha256(raw[:-32]).hexdigest() == raw[-32:].hex()
    assert raw == fmt.dumps(bundle)


@pytest.mark.parametrize("encoder,reset", [(e, r) for e in ENCODERS for r in RESETS])
def test_loaded_bundle_runs_like_the_original(encoder, reset):
    bundle = random_bundle(11, encoder, reset, n_layers=2)
    back = fmt.loads(fmt.dumps(bundle))
    xs = np.random.RandomState(0).uniform(-2, 2, size=(2, 12, bundle.n_inputs))
    a, b = open_session(bundle).run(xs), open_session(back).run(xs)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert a.spike_counts == b.spike_counts and a.synops == b.synops


def test_loaded_arrays_are_private_native_copies():
    raw = fmt.dumps(random_bundle(3, "direct"))
    for arr in fmt.bundle_to_manifest(fmt.loads(raw))[1].values():  # not read-only views of the bytes
        assert arr.flags.writeable and arr.flags.owndata and arr.flags.c_contiguous and arr.dtype.isnative
    blob = bytearray(raw)
    back = fmt.loads(blob)
    before = {name: arr.copy() for name, arr in fmt.bundle_to_manifest(back)[1].items()}
    (length,) = struct.unpack("<I", bytes(blob[8:12]))
    blob[12 + length : -32] = b"\x5a" * (len(blob) - 44 - length)  # the source buffer must not reach the bundle
    for name, arr in fmt.bundle_to_manifest(back)[1].items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)


def test_boundary_values_are_accepted():
    """The limits of the load checks are inclusive where the docs say so."""
    b = random_bundle(5, "direct", n_layers=1)
    layer = dataclasses.replace(
        b.layers[0],
        a_syn=np.where(np.arange(b.layers[0].n) % 2, 0, 1 << 16).astype(np.int32),
        a_mem=np.full(b.layers[0].n, 1 << 16, np.int32),
    )
    readout = dataclasses.replace(b.readout, trace_bits=16, a_trace=np.zeros(b.readout.n_in, np.int32))
    for enc in (DirectEncoder(b.n_inputs, 1e-300, 16), DirectEncoder(b.n_inputs, 1e300, 8)):
        edge = dataclasses.replace(b, encoder=enc, layers=(layer,), readout=readout)
        assert_same(edge, fmt.loads(fmt.dumps(edge)))
    zero_bits = dataclasses.replace(b, readout=dataclasses.replace(b.readout, trace_bits=0))
    assert fmt.loads(fmt.dumps(zero_bits)).readout.trace_bits == 0


# ----------------------------------------------------------------------------- sparse matrices


def _dense_cases() -> List[np.ndarray]:
    rng = np.random.RandomState(1)
    cases = [random_int8(rng, r, c) for r, c in [(1, 1), (3, 7), (7, 3), (16, 16), (40, 5), (5, 40)]]
    cases += [
        np.zeros((4, 6), np.int8),  # all zero: nnz 0, indptr all zeros
        np.zeros((0, 3), np.int8),  # no targets
        np.zeros((3, 0), np.int8),  # no sources: indptr == [0]
        np.full((3, 4), -128, np.int8),  # dense, extreme value
        np.eye(5, dtype=np.int8) * 127,
    ]
    col = random_int8(rng, 9, 6)
    col[:, [0, 2, 5]] = 0  # first, middle and last columns empty
    cases.append(col)
    return cases


@pytest.mark.parametrize("dense", _dense_cases(), ids=lambda d: "x".join(map(str, d.shape)))
def test_sparse_from_dense_round_trip(dense):
    m = SparseMatrix.from_dense(dense)
    m.check()
    assert (m.n_targets, m.n_sources) == dense.shape
    assert m.nnz == np.count_nonzero(dense)
    assert m.indptr.shape == (dense.shape[1] + 1,) and m.indptr.dtype == np.int32
    assert m.indices.dtype == np.uint16 and m.values.dtype == np.int8
    assert not np.any(m.values == 0)
    back = m.to_dense()
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, dense)
    # source-major: column j's targets are one contiguous, sorted block
    for j in range(m.n_sources):
        block = m.indices[m.indptr[j] : m.indptr[j + 1]]
        np.testing.assert_array_equal(block, np.flatnonzero(dense[:, j]))


@pytest.mark.parametrize("rows,dtype", [(65536, np.uint16), (65537, np.int32)])
def test_sparse_index_dtype_follows_target_count(rows, dtype):
    dense = np.zeros((rows, 2), np.int8)
    dense[[0, rows // 2, rows - 1], 0] = [1, -2, 3]
    dense[rows - 1, 1] = -128
    m = SparseMatrix.from_dense(dense)
    m.check()
    assert m.indices.dtype == dtype
    assert list(m.indices) == [0, rows // 2, rows - 1, rows - 1]
    np.testing.assert_array_equal(m.to_dense(), dense)


def test_sparse_wide_dtypes_survive_the_file():
    """int32 indices and int64 indptr are both allowed and come back as written."""
    dtypes = set()
    for seed in range(12):
        b = random_bundle(seed, "rate")
        back = fmt.loads(fmt.dumps(b))
        for layer in back.layers:
            for m in (layer.w_in, layer.w_rec):
                dtypes.add((m.indices.dtype.name, m.indptr.dtype.name))
        assert_same(b, back)
    assert {("uint16", "int32"), ("int32", "int64")} <= dtypes


# ----------------------------------------------------------------------------- byte layout


def test_byte_layout_matches_the_docs():
    bundle = random_bundle(4, "delta", "zero", n_layers=2)
    blob = fmt.dumps(bundle)
    assert blob[:8] == b"\x89SEB\r\n\x1a\n"
    doc, data, digest = split_blob(blob)
    assert digest == hashlib.sha256(blob[:-32]).digest()
    assert doc["format"] == "spikeedge-bundle" and doc["schema_version"] == fmt.SCHEMA_VERSION == 1
    (length,) = struct.unpack("<I", blob[8:12])
    text = blob[12 : 12 + length]
    assert text == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")  # canonical JSON
    assert set(doc) == {"format", "schema_version", "encoder", "layers", "readout", "output", "provenance", "arrays"}
    assert doc["encoder"] == {"kind": "encoder.delta", "n_inputs": bundle.n_inputs, "threshold": bundle.encoder.threshold}
    layer0 = doc["layers"][0]
    assert layer0["a_syn"] == {"array": "layers.0.a_syn"} and layer0["w_in"]["kind"] == "sparse"
    assert layer0["w_in"]["indptr"] == {"array": "layers.0.w_in.indptr"}
    _, arrays = fmt.bundle_to_manifest(bundle)
    assert sorted(doc["arrays"]) == sorted(arrays)
    end = 0
    for name in sorted(doc["arrays"]):  # arrays in name order, each 16-byte aligned, zero padding
        entry = doc["arrays"][name]
        assert entry["offset"] % 16 == 0 and entry["offset"] >= end
        assert set(data[end : entry["offset"]]) <= {0}
        arr = arrays[name]
        assert entry == {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": entry["offset"], "nbytes": arr.nbytes}
        stored = np.frombuffer(data, np.dtype(entry["dtype"]).newbyteorder("<"), arr.size, entry["offset"])
        np.testing.assert_array_equal(stored.reshape(arr.shape), arr)
        end = entry["offset"] + entry["nbytes"]
    assert end == len(data)  # nothing after the last array but the digest


def test_big_endian_arrays_are_stored_little_endian():
    b = random_bundle(2, "direct", n_layers=1)
    layer = b.layers[0]
    swapped = dataclasses.replace(layer, a_syn=layer.a_syn.astype(">i4"), w_in_scale=layer.w_in_scale.astype(">f8"))
    blob = fmt.dumps(dataclasses.replace(b, layers=(swapped,)))
    assert blob == fmt.dumps(b)
    back = fmt.loads(blob)
    assert back.layers[0].a_syn.dtype == np.dtype("int32") and back.layers[0].a_syn.dtype.isnative
    np.testing.assert_array_equal(back.layers[0].a_syn, layer.a_syn)


def test_sha256_is_the_digest_of_everything_before_the_trailer(tmp_path):
    path = tmp_path / "m.seb"
    reported = fmt.save(random_bundle(8, "rate", "zero"), path)
    raw = path.read_bytes()
    assert reported == hashlib.sha256(raw[:-32]).hexdigest()
    assert fmt.load(path).sha256 == reported
    assert fmt.loads(raw).sha256 == reported


def test_info_json_reports_the_file(tmp_path, capsys):
    from spikeedge.cli.app import main

    bundle = random_bundle(9, "delta", "subtract", n_layers=2)
    path = tmp_path / "model.seb"
    digest = fmt.save(bundle, path)
    assert main(["info", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1
    info = json.loads(out)
    assert info["sha256"] == digest and info["schema_version"] == 1
    assert info["file"] == str(path) and info["file_bytes"] == path.stat().st_size
    assert info["encoder"] == "delta" and info["inputs"] == bundle.n_inputs and info["outputs"] == bundle.n_outputs
    assert [layer["neurons"] for layer in info["layers"]] == [layer.n for layer in bundle.layers]
    assert info["neurons"] == sum(layer.n for layer in bundle.layers)
    assert info["synapses"]["without_readout"] == sum(l.w_in.nnz + l.w_rec.nnz for l in bundle.layers)
    assert info["provenance"] == bundle.provenance


# ----------------------------------------------------------------------------- atomic save


def test_save_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    fmt.save(random_bundle(1, "rate"), path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["model.seb"]
    assert_same(fmt.load(path), random_bundle(1, "rate"))


def test_save_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "model.seb"
    fmt.save(random_bundle(0, "delta"), path)
    assert fmt.load(path).encoder.kind == "encoder.delta"
    assert os.listdir(path.parent) == ["model.seb"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    old = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError):
        fmt.save(random_bundle(1, "rate"), path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["model.seb"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fmt.save(random_bundle(0, "direct"), tmp_path / "model.seb")
    assert os.listdir(tmp_path) == []


def test_invalid_bundle_is_not_written(tmp_path):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    old = path.read_bytes()
    good = random_bundle(0, "direct")
    bad = dataclasses.replace(good, encoder=DirectEncoder(good.n_inputs + 1, 1.0, 8))  # channel mismatch
    with pytest.raises(BundleError, match="cannot write bundle"):
        fmt.save(bad, path)
    with pytest.raises(BundleError, match="output"):
        fmt.dumps(dataclasses.replace(good, output="all"))
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["model.seb"]


# ----------------------------------------------------------------------------- no pickle, provenance


def test_no_pickle_and_nested_json_provenance(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or np.load/np.save used by the bundle format")

    for mod, name in [(pickle, "dumps"), (pickle, "loads"), (pickle, "dump"), (pickle, "load"),
                      (pickle, "Pickler"), (pickle, "Unpickler"), (np, "load"), (np, "save"), (np, "savez")]:
        monkeypatch.setattr(mod, name, forbidden)
    bundle = random_bundle(6, "rate", "zero")
    nested: Dict[str, Any] = {"a": [{"b": {"c": [1, 2.5, "x", None, True, {"d": []}]}}], "e": {"f": {"g": {"h": -7}}}}
    bundle = dataclasses.replace(bundle, provenance=dict(bundle.provenance, nested=nested))
    path = tmp_path / "model.seb"
    fmt.save(bundle, path)
    back = fmt.load(path)
    assert back.provenance == bundle.provenance and back.provenance["nested"] == nested
    assert_same(bundle, back)
    doc, _, _ = split_blob(path.read_bytes())
    assert doc["provenance"]["nested"] == nested  # plain JSON in the manifest, readable without spikeedge


def test_provenance_may_be_empty_or_absent():
    b = dataclasses.replace(random_bundle(0, "direct"), provenance={})
    assert fmt.loads(fmt.dumps(b)).provenance == {}
    manifest, arrays = fmt.bundle_to_manifest(b)
    del manifest["provenance"]
    assert fmt.loads(fmt.encode_bytes(manifest, arrays)).provenance == {}


# ----------------------------------------------------------------------------- schema versions


def test_migration_path(monkeypatch):
    """An old schema version goes through MIGRATIONS one step at a time up to SCHEMA_VERSION."""
    manifest, arrays = fmt.bundle_to_manifest(random_bundle(2, "direct"))
    old = dict(manifest, schema_version=fmt.SCHEMA_VERSION - 2, output_mode=manifest["output"])
    del old["output"]
    seen = []

    def two_to_one(m):  # e.g. a renamed field
        seen.append(m["schema_version"])
        m = dict(m, output=m["output_mode"], schema_version=m["schema_version"] + 1)
        del m["output_mode"]
        return m

    def one_to_two(m):
        seen.append(m["schema_version"])
        return dict(m, schema_version=m["schema_version"] + 1)

    blob = fmt.encode_bytes(old, arrays)
    with pytest.raises(BundleError, match="schema version -1 is not supported"):
        fmt.loads(blob)
    monkeypatch.setitem(fmt.MIGRATIONS, fmt.SCHEMA_VERSION - 2, two_to_one)
    monkeypatch.setitem(fmt.MIGRATIONS, fmt.SCHEMA_VERSION - 1, one_to_two)
    back = fmt.loads(blob)
    assert seen == [fmt.SCHEMA_VERSION - 2, fmt.SCHEMA_VERSION - 1]
    assert back.output == manifest["output"]
    assert fmt.MIGRATIONS.get(fmt.SCHEMA_VERSION) is None  # the current version never migrates


# ----------------------------------------------------------------------------- known bugs on the write side


def test_dumps_refuses_nan_scalar_with_bundle_error():
    b = random_bundle(0, "direct")
    with pytest.raises(BundleError):
        fmt.dumps(dataclasses.replace(b, encoder=DirectEncoder(b.n_inputs, float("nan"), 8)))


def test_dumps_refuses_what_load_would_refuse():
    b = random_bundle(0, "direct", n_layers=1)
    bad = dataclasses.replace(b, layers=(dataclasses.replace(b.layers[0], a_syn=np.full(b.layers[0].n, 70000, np.int32)),))
    with pytest.raises(BundleError):
        fmt.dumps(bad)  # today: written, and then refused by loads ("a_syn is outside [0, 65536]")


def test_saved_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "model.seb"
        fmt.save(random_bundle(0, "direct"), path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the board's runtime user, like any new file
