"""Random but valid ``.seb`` bundles built from the record dataclasses directly (no torch), one
per registered kind, and the comparisons the bundle tests make (tests/test_bundle_format.py,
tests/test_bundle_save.py, tests/test_conv_bundle.py)."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import numpy as np

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


ENCODERS = ("direct", "rate", "delta")
RESETS = ("subtract", "zero")


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
