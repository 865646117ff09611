"""The ``.seb`` bundle format: round trips for every registered kind, sparse matrices, byte
layout, checksum (``docs/bundle.md``). Saving (atomic writes, no pickle, provenance, schema
versions): tests/test_bundle_save.py.

Bundles are built from the record dataclasses directly (no torch), at random but valid, by
``random_bundle`` in ``tests/bundle_factory.py``; ``tests/test_bundle_corruption.py`` has the
refusals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from typing import List

import numpy as np
import pytest

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import (
    DirectEncoder,
    SparseMatrix,
)
from spikeedge.runtime.sessions import open_session
from bundle_factory import ALL_KINDS, ENCODERS, RESETS, assert_same, kinds_in, random_bundle, random_int8, split_blob


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
    assert back.sha256 == hashlib.sha256(blob).hexdigest()  # the identity: the whole file's sha256
    assert fmt.dumps(back) == blob  # deterministic: the same bundle gives the same bytes


@pytest.mark.parametrize("encoder,reset,seed", ALL_KINDS[::2])
def test_save_load_round_trip(tmp_path, encoder, reset, seed):
    bundle = random_bundle(seed, encoder, reset)
    path = tmp_path / "model.seb"
    digest = fmt.save(bundle, path)
    back = fmt.load(path)
    assert_same(bundle, back)
    raw = path.read_bytes()
    assert digest == back.sha256 == hashlib.sha256(raw).hexdigest()
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()  # the trailer: the checksum
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
    assert doc["format"] == "spikeedge-bundle" and doc["schema_version"] == 1 and fmt.SCHEMA_VERSION == 3  # version 1 unless a newer kind or field is used
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


def test_the_trailer_checks_the_body_and_the_identity_is_the_file_sha256(tmp_path):
    path = tmp_path / "m.seb"
    reported = fmt.save(random_bundle(8, "rate", "zero"), path)
    raw = path.read_bytes()
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()  # the checksum
    assert reported == hashlib.sha256(raw).hexdigest() == fmt.file_sha256(path)  # what bench and flash call the file
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
