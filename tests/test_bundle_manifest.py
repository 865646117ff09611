"""Malformed bundles are refused, one manifest field or array at a time: each case edits a valid
bundle's manifest or arrays and re-signs the bytes, so that the checksum is valid and the check
under test is the one that fires, and names a fragment of the message it expects, so a case
refused for the wrong reason fails too (``docs/bundle.md``). The file, its framing and the fuzz:
tests/test_bundle_corruption.py.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

from spikeedge.runtime import bundle as fmt
from bundle_refusals import N, N_IN, N_OUT, base_bundle, base_parts, refused


# ----------------------------------------------------------------------------- manifest and arrays, re-signed


def _set(path: str, value: Any) -> Callable[[dict, dict], None]:
    """Edit: set a manifest value by dotted path (list indices as numbers)."""

    def edit(m: dict, a: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = m
        for k in parents:
            node = node[k]
        node[last] = value

    return edit


def _del(path: str) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = m
        for k in parents:
            node = node[k]
        del node[last]

    return edit


def _arr(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict, dict], None]:
    """Edit: replace array ``name`` with ``fn(old copy)``."""

    def edit(m: dict, a: dict) -> None:
        a[name] = fn(a[name].copy())

    return edit


def _put(index: Any, value: Any) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        x[index] = value
        return x

    return fn


def _both(*edits: Callable[[dict, dict], None]) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        for e in edits:
            e(m, a)

    return edit


L0 = "layers.0."
NNZ_IN = N * N_IN
CASES: List[Tuple[str, str, Callable[[dict, dict], None], Any]] = [
    # schema version and format
    *[("schema-%r" % (v,), "direct", _set("schema_version", v), "schema") for v in (0, fmt.SCHEMA_VERSION + 1, -1, 10**6, "1", 1.5, True, None, [1])],
    ("schema-missing", "direct", _del("schema_version"), "schema_version is missing"),
    ("format-other", "direct", _set("format", "spikeedge-checkpoint"), "not a spikeedge bundle"),
    ("format-missing", "direct", _del("format"), "not a spikeedge bundle"),
    # top-level structure
    ("layers-empty", "direct", _set("layers", []), "at least one layer"),
    ("layers-object", "direct", _set("layers", {"0": {}}), "layers must be a list"),
    ("layers-missing", "direct", _del("layers"), "layers must be a list"),
    ("layer-null", "direct", _set("layers.0", None), "layers.0 is not an object"),
    ("provenance-list", "direct", _set("provenance", [1]), "provenance must be an object"),
    ("provenance-null", "direct", _set("provenance", None), "provenance must be an object"),
    ("output-other", "direct", _set("output", "all"), "output must be"),
    ("output-number", "direct", _set("output", 1), "output must be a string"),
    ("output-missing", "direct", _del("output"), "output must be a string"),
    ("encoder-missing", "direct", _del("encoder"), "encoder is not an object"),
    ("readout-list", "direct", _set("readout", []), "readout is not an object"),
    # kinds
    ("kind-unknown", "direct", _set("encoder.kind", "encoder.spectral"), "unknown kind"),
    ("kind-missing", "direct", _del("encoder.kind"), "unknown kind"),
    ("kind-number", "direct", _set("layers.0.kind", 7), "unknown kind"),
    ("kind-list", "direct", _set("readout.kind", ["trace_readout"]), "unknown kind"),
    ("encoder-is-layer", "direct", _set("encoder.kind", "lif_recurrent"), "expected encoder."),
    ("layer-is-encoder", "direct", _set("layers.0.kind", "encoder.direct"), "expected lif_"),
    ("readout-is-layer", "direct", _set("readout.kind", "lif_recurrent"), "expected trace_"),
    ("w_in-is-readout", "direct", _set("layers.0.w_in.kind", "trace_readout"), "expected sparse"),
    ("w_in-not-record", "direct", _set("layers.0.w_in", {"array": "layers.0.w_in.values"}), "unknown kind"),
    # scalar fields
    ("n-negative", "direct", _set("layers.0.n", -6), "layers.0.n must be a non-negative integer"),
    ("n-float", "direct", _set("layers.0.n", 6.0), "layers.0.n must be a non-negative integer"),
    ("n-bool", "direct", _set("layers.0.n", True), "layers.0.n must be a non-negative integer"),
    ("n-string", "direct", _set("layers.0.n", "6"), "layers.0.n must be a non-negative integer"),
    ("n-wrong", "direct", _set("layers.0.n", N + 1), "layers.0: weights do not target 7 neurons"),
    ("n-missing", "direct", _del("layers.0.n"), "layers.0.n is missing"),
    ("name-number", "direct", _set("layers.0.name", 3), "layers.0.name must be a string"),
    ("reset-other", "direct", _set("layers.0.reset", "none"), "reset must be"),
    ("reset-missing", "direct", _del("layers.0.reset"), "layers.0.reset is missing"),
    ("bits-12", "direct", _set("encoder.bits", 12), "bits must be 8 or 16"),
    ("bits-float", "direct", _set("encoder.bits", 8.0), "encoder.bits must be a non-negative integer"),
    ("n_inputs-wrong", "direct", _set("encoder.n_inputs", N_IN + 1), "input channels"),
    ("n_inputs-negative", "direct", _set("encoder.n_inputs", -1), "non-negative integer"),
    ("delta-doubles-channels", "direct", _set("encoder", {"kind": "encoder.delta", "n_inputs": N_IN, "threshold": 0.1}), "expects 3 input channels, the encoder gives 6"),
    ("direct-halves-channels", "delta", _set("encoder", {"kind": "encoder.direct", "n_inputs": N_IN, "scale": 0.1, "bits": 8}), "expects 6 input channels, the encoder gives 3"),
    ("trace_bits-17", "direct", _set("readout.trace_bits", 17), "trace_bits must be in [0, 16]"),
    ("trace_bits-negative", "direct", _set("readout.trace_bits", -1), "non-negative integer"),
    ("readout-n_in", "direct", _set("readout.n_in", N + 1), "readout: w has shape"),
    ("readout-n_out", "direct", _set("readout.n_out", N_OUT + 1), "readout: w has shape"),
    ("rate-seed-negative", "rate", _set("encoder.seed", -1), "encoder.seed must be a non-negative integer"),
    ("rate-seed-float", "rate", _set("encoder.seed", 1.5), "encoder.seed must be a non-negative integer"),
    ("sparse-n_sources", "direct", _set("layers.0.w_in.n_sources", N_IN + 1), "layers.0.w_in: indptr has shape"),
    ("sparse-n_targets", "direct", _set("layers.0.w_rec.n_targets", N + 1), "weights do not target"),
    # encoder scales
    *[("direct-scale-%r" % v, "direct", _set("encoder.scale", v), "scale must be finite and > 0") for v in (0, 0.0, -0.05, -1e-300)],
    ("direct-scale-string", "direct", _set("encoder.scale", "0.05"), "encoder.scale must be a finite number"),
    ("direct-scale-bool", "direct", _set("encoder.scale", True), "encoder.scale must be a finite number"),
    *[("rate-gain-%r" % v, "rate", _set("encoder.gain", v), "gain must be finite and > 0") for v in (0, -0.8)],
    *[("delta-threshold-%r" % v, "delta", _set("encoder.threshold", v), "threshold must be finite and > 0") for v in (0.0, -0.1)],
    ("delta-threshold-null", "delta", _set("encoder.threshold", None), "encoder.threshold must be a finite number"),
    # array references
    ("array-ref-number", "direct", _set("layers.0.a_syn", {"array": 5}), "layers.0.a_syn must name an array"),
    ("array-ref-inline", "direct", _set("layers.0.a_syn", [52000] * N), "layers.0.a_syn must name an array"),
    ("array-ref-unknown", "direct", _set("layers.0.a_syn", {"array": "nowhere"}), "names missing array 'nowhere'"),
    ("array-ref-swapped", "direct", _set("layers.0.a_syn", {"array": "readout.w"}), "layers.0.a_syn has dtype int8"),
    ("array-ref-missing", "direct", _del("layers.0.a_mem"), "layers.0.a_mem is missing"),
    # shapes
    ("a_syn-short", "direct", _arr(L0 + "a_syn", lambda x: x[:-1]), "a_syn does not have 6 entries"),
    ("a_syn-long", "direct", _arr(L0 + "a_syn", lambda x: np.append(x, x[:1])), "a_syn does not have 6 entries"),
    ("a_syn-2d", "direct", _arr(L0 + "a_syn", lambda x: x.reshape(2, 3)), "layers.0.a_syn has 2 dimensions"),
    ("m_in-short", "direct", _arr(L0 + "m_in", lambda x: x[:2]), "m_in does not have 6 entries"),
    ("bias-long", "direct", _arr(L0 + "bias", lambda x: np.zeros(N + 2, np.int32)), "bias does not have 6 entries"),
    ("w_rec_scale-empty", "direct", _arr(L0 + "w_rec_scale", lambda x: x[:0]), "w_rec_scale does not have 6 entries"),
    ("indptr-short", "direct", _arr(L0 + "w_in.indptr", lambda x: x[:-1]), "indptr has shape (3,), expected (4,)"),
    ("indptr-long", "direct", _arr(L0 + "w_rec.indptr", lambda x: np.append(x, x[-1])), "indptr has shape"),
    ("indptr-2d", "direct", _arr(L0 + "w_in.indptr", lambda x: x.reshape(2, 2)), "has 2 dimensions"),
    ("indices-longer", "direct", _arr(L0 + "w_in.indices", lambda x: np.append(x, x[:1])), "indices and values differ"),
    ("values-shorter", "direct", _arr(L0 + "w_rec.values", lambda x: x[:-1]), "indices and values differ"),
    ("sparse-both-shorter", "direct", _both(_arr(L0 + "w_in.indices", lambda x: x[:-1]), _arr(L0 + "w_in.values", lambda x: x[:-1])), "indptr does not span"),
    ("readout-w-wide", "direct", _arr("readout.w", lambda x: np.zeros((N_OUT, N + 1), np.int8)), "w has shape (2, 7), expected (2, 6)"),
    ("readout-w-transposed", "direct", _arr("readout.w", lambda x: np.ascontiguousarray(x.T)), "w has shape (6, 2)"),
    ("readout-w-1d", "direct", _arr("readout.w", lambda x: x.ravel()), "readout.w has 1 dimensions, expected 2"),
    ("readout-w-3d", "direct", _arr("readout.w", lambda x: x[None]), "readout.w has 3 dimensions"),
    ("a_trace-short", "direct", _arr("readout.a_trace", lambda x: x[1:]), "a_trace does not have 6 entries"),
    ("w_scale-long", "direct", _arr("readout.w_scale", lambda x: np.ones(N_OUT + 1)), "w_scale does not have 2 entries"),
    ("readout-bias-short", "direct", _arr("readout.bias", lambda x: x[:1]), "bias is not 2 finite values"),
    # scales in arrays
    *[
        ("%s-%r" % (name, v), "direct", _arr(name, _put(i, v)), name.rsplit(".", 1)[1] + " must be finite and > 0")
        for name in (L0 + "w_in_scale", L0 + "w_rec_scale", "readout.w_scale")
        for i, v in ((0, np.nan), (-1, 0.0), (1, -0.5), (0, np.inf), (0, -np.inf), (1, -0.0))
    ],
    ("readout-bias-nan", "direct", _arr("readout.bias", _put(1, np.nan)), "bias is not 2 finite values"),
    ("readout-bias-inf", "direct", _arr("readout.bias", _put(0, -np.inf)), "bias is not 2 finite values"),
    # decays
    *[
        ("%s-%d" % (name, v), "direct", _arr(name, _put(2, v)), name.rsplit(".", 1)[1] + " is outside [0, 65536]")
        for name in (L0 + "a_syn", L0 + "a_mem", "readout.a_trace")
        for v in (-1, 65537, 2**31 - 1, -(2**31))
    ],
    # indices and indptr
    ("index-equal-n", "direct", _arr(L0 + "w_in.indices", _put(3, N)), "out of range"),
    ("index-max-uint16", "direct", _arr(L0 + "w_rec.indices", _put(-1, 65535)), "out of range"),
    ("index-negative-int32", "direct", _arr(L0 + "w_rec.indices", lambda x: _put(0, -1)(x.astype(np.int32))), "out of range"),
    ("indptr-decreasing", "direct", _arr(L0 + "w_in.indptr", _put(1, NNZ_IN)), "indptr is not non-decreasing"),
    ("indptr-start", "direct", _arr(L0 + "w_in.indptr", _put(0, 1)), "indptr does not span"),
    ("indptr-end", "direct", _arr(L0 + "w_in.indptr", _put(-1, NNZ_IN - 1)), "indptr does not span"),
    ("indptr-negative", "direct", _arr(L0 + "w_rec.indptr", _put(1, -1)), "indptr is not non-decreasing"),
    # dtypes
    ("a_syn-int64", "direct", _arr(L0 + "a_syn", lambda x: x.astype(np.int64)), "a_syn has dtype int64, expected int32"),
    ("a_mem-float64", "direct", _arr(L0 + "a_mem", lambda x: x.astype(np.float64)), "a_mem has dtype float64"),
    ("bias-uint8", "direct", _arr(L0 + "bias", lambda x: x.astype(np.uint8)), "bias has dtype uint8"),
    ("m_in-int32", "direct", _arr(L0 + "m_in", lambda x: x.astype(np.int32)), "m_in has dtype int32, expected int64"),
    ("values-uint8", "direct", _arr(L0 + "w_in.values", lambda x: x.astype(np.uint8)), "values has dtype uint8, expected int8"),
    ("values-int16", "direct", _arr(L0 + "w_in.values", lambda x: x.astype(np.int16)), "dtype 'int16' is not allowed"),
    ("indices-int64", "direct", _arr(L0 + "w_in.indices", lambda x: x.astype(np.int64)), "indices has dtype int64, expected uint16|int32"),
    ("indptr-uint16", "direct", _arr(L0 + "w_in.indptr", lambda x: x.astype(np.uint16)), "indptr has dtype uint16, expected int32|int64"),
    ("readout-w-uint8", "direct", _arr("readout.w", lambda x: x.astype(np.uint8)), "readout.w has dtype uint8"),
    ("w_scale-float32", "direct", _arr("readout.w_scale", lambda x: x.astype(np.float32)), "w_scale has dtype float32, expected float64"),
    ("w_in_scale-int64", "direct", _arr(L0 + "w_in_scale", lambda x: np.ones(N, np.int64)), "w_in_scale has dtype int64"),
    ("complex-dtype", "direct", _arr("readout.bias", lambda x: x.astype(np.complex128)), "dtype 'complex128' is not allowed"),
]
# every stored array, deleted from the table
CASES += [("missing-" + name, "direct", lambda m, a, name=name: a.pop(name), "names missing array %r" % name)
          for name in sorted(fmt.bundle_to_manifest(base_bundle())[1])]


@pytest.mark.parametrize("encoder,edit,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_manifest_or_arrays(tmp_path, capsys, encoder, edit, fragment):
    manifest, arrays = base_parts(encoder)
    edit(manifest, arrays)
    refused(tmp_path, capsys, fmt.encode_bytes(manifest, arrays), fragment)


def test_every_array_field_has_a_missing_case():
    names = {c[0] for c in CASES}
    _, arrays = fmt.bundle_to_manifest(base_bundle())
    assert len(arrays) == 2 * 3 + 7 + 4  # two sparse matrices, seven per-neuron arrays, four readout arrays
    assert {"missing-" + n for n in arrays} <= names


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("encoder", ["direct", "rate", "delta"])
def test_each_kind_refuses_a_bad_field(tmp_path, capsys, encoder, reset):
    """Every registered kind, in every encoder and reset combination, refuses a broken field."""
    scale_field = {"direct": "scale", "rate": "gain", "delta": "threshold"}[encoder]
    for edit, fragment in [
        (_set("encoder." + scale_field, 0), scale_field + " must be finite and > 0"),
        (_set("layers.0.reset", reset.upper()), "reset must be"),
        (_arr(L0 + "w_rec.indices", _put(0, N)), "layers.0.w_rec: a weight targets a neuron out of range"),
        (_arr("readout.a_trace", _put(0, -5)), "a_trace is outside"),
    ]:
        manifest, arrays = base_parts(encoder, reset)
        edit(manifest, arrays)
        refused(tmp_path, capsys, fmt.encode_bytes(manifest, arrays), fragment)
