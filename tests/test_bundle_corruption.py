"""Malformed bundles are refused: one-line ``BundleError`` naming the file, and through the CLI
exit code 2 with a single ``error:`` line on stderr and no traceback (``docs/bundle.md``).

Most cases edit a valid bundle's manifest or arrays and re-sign the bytes, so that the checksum
is valid and the check under test is the one that fires; each case names a fragment of the
message it expects, so a case refused for the wrong reason fails too.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeedge.cli.app import main
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import Bundle, DeltaEncoder, DirectEncoder, LifRecurrentLayer, RateEncoder, SparseMatrix, TraceReadout
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import BundleError

N_IN, N, N_OUT = 3, 6, 2  # the base bundle's sizes: 3 inputs, 6 neurons, 2 outputs

# ----------------------------------------------------------------------------- helpers


def base_bundle(encoder: str = "direct", reset: str = "subtract") -> Bundle:
    """A small valid bundle with dense (no zero) weights, so indptr is [0, 6, 12, ...]."""
    rng = np.random.RandomState(0)
    enc: Any = {
        "direct": DirectEncoder(N_IN, 0.05, 16),
        "rate": RateEncoder(N_IN, 0.8, 1234),
        "delta": DeltaEncoder(N_IN, 0.1),
    }[encoder]
    n_ch = N_IN * (2 if encoder == "delta" else 1)
    nonzero = lambda shape: (rng.randint(1, 100, shape) * rng.choice([-1, 1], shape)).astype(np.int8)  # noqa: E731
    layer = LifRecurrentLayer(
        name="hidden",
        n=N,
        reset=reset,
        w_in=SparseMatrix.from_dense(nonzero((N, n_ch))),
        w_rec=SparseMatrix.from_dense(nonzero((N, N))),
        a_syn=np.full(N, 52000, np.int32),
        a_mem=np.full(N, 60000, np.int32),
        m_in=np.full(N, 3000, np.int64),
        m_rec=np.full(N, 2000, np.int64),
        bias=np.arange(N, dtype=np.int32) * 100,
        w_in_scale=np.full(N, 0.01),
        w_rec_scale=np.full(N, 0.02),
    )
    readout = TraceReadout("readout", N, N_OUT, 12, np.full(N, 58000, np.int32), nonzero((N_OUT, N)), np.full(N_OUT, 0.003), np.zeros(N_OUT))
    return Bundle(enc, (layer,), readout, output="sequence", provenance={"model": "test", "nested": {"a": [1, {"b": None}]}})


def base_parts(encoder: str = "direct", reset: str = "subtract") -> Tuple[dict, Dict[str, np.ndarray]]:
    """A fresh, editable (manifest, arrays) pair of the base bundle."""
    manifest, arrays = fmt.bundle_to_manifest(base_bundle(encoder, reset))
    return copy.deepcopy(manifest), {k: v.copy() for k, v in arrays.items()}


def split(blob: bytes) -> Tuple[dict, bytes]:
    """(manifest with its array table, data region) of valid bundle bytes."""
    (length,) = struct.unpack("<I", blob[8:12])
    return json.loads(blob[12 : 12 + length]), blob[12 + length : -32]


def frame(text: Any, data: bytes = b"", magic: bytes = fmt.MAGIC, length: Optional[int] = None) -> bytes:
    """Bundle bytes from a manifest (a dict, dumped as JSON with NaN allowed, or raw bytes) and a
    data region, signed with a valid sha256: the layout of ``encode_bytes`` with a hand-made table."""
    if not isinstance(text, bytes):
        text = json.dumps(text, sort_keys=True, separators=(",", ":")).encode("utf-8")
    body = magic + struct.pack("<I", len(text) if length is None else length) + text + data
    return body + hashlib.sha256(body).digest()


def refused(tmp_path, capsys, blob: Optional[bytes], fragment: Any = None, path=None) -> str:
    """Assert ``load`` and ``spikeedge info`` refuse the file; returns the message.

    ``fragment``: a string, or a tuple of alternatives, that the message must contain."""
    if path is None:
        path = tmp_path / "broken-model.seb"
        path.write_bytes(blob)
    with pytest.raises(BundleError) as info:
        fmt.load(path)
    message = str(info.value)
    assert message and message.splitlines() == [message], "not one line: %r" % message
    assert message.startswith(str(path) + ": "), message
    if fragment is not None:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(f in message for f in options), "%r does not mention %r" % (message, fragment)
    if blob is not None:  # the same refusal from bytes, with the caller's source name
        with pytest.raises(BundleError, match="^elsewhere.seb: "):
            fmt.loads(blob, "elsewhere.seb")
    capsys.readouterr()
    rc = main(["info", str(path)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("error:") and path.name in lines[0], err
    assert "Traceback" not in err
    return message


def test_base_bundle_is_valid_and_resigning_is_neutral(tmp_path, capsys):
    """The positive control for every re-signed case below."""
    for enc in ("direct", "rate", "delta"):
        manifest, arrays = base_parts(enc)
        blob = fmt.encode_bytes(manifest, arrays)
        assert blob == fmt.dumps(base_bundle(enc))
        doc, data = split(blob)
        assert frame(doc, data) == blob  # the hand-made layout is the real one
        path = tmp_path / "good.seb"
        path.write_bytes(blob)
        assert fmt.load(path).n_inputs == N_IN
        assert main(["info", str(path), "--json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["sha256"] == blob[-32:].hex() and err == ""


# ----------------------------------------------------------------------------- the file itself


def test_missing_file(tmp_path, capsys):
    refused(tmp_path, capsys, None, "no such file", path=tmp_path / "absent.seb")


def test_directory(tmp_path, capsys):
    folder = tmp_path / "model.seb"
    folder.mkdir()
    refused(tmp_path, capsys, None, "is a directory", path=folder)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "locked.seb"
    path.write_bytes(fmt.dumps(base_bundle()))
    path.chmod(0)
    try:
        refused(tmp_path, capsys, None, "cannot read", path=path)
    finally:
        path.chmod(0o600)


GOOD = fmt.dumps(base_bundle())
LENGTH = struct.unpack("<I", GOOD[8:12])[0]
DATA_START, TRAILER = 12 + LENGTH, len(GOOD) - 32


@pytest.mark.parametrize(
    "size",
    [0, 1, 7, 8, 11, 12, 43, 44, 12 + LENGTH // 2, DATA_START, DATA_START + 5, TRAILER, TRAILER + 1, TRAILER + 16, len(GOOD) - 1],
)
def test_truncated(tmp_path, capsys, size):
    refused(tmp_path, capsys, GOOD[:size], ("too short", "checksum mismatch"))


def test_appended_bytes(tmp_path, capsys):
    refused(tmp_path, capsys, GOOD + b"\0", "checksum mismatch")
    refused(tmp_path, capsys, GOOD + GOOD, "checksum mismatch")


FLIP_AT = sorted(
    set(range(12))
    | {12 + int(f * (LENGTH - 1)) for f in (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1)}
    | {DATA_START + int(f * (TRAILER - DATA_START - 1)) for f in (0, 0.25, 0.5, 0.75, 1)}
    | {TRAILER, TRAILER + 1, TRAILER + 16, len(GOOD) - 1}
)


@pytest.mark.parametrize("pos", FLIP_AT)
def test_one_flipped_byte(tmp_path, capsys, pos):
    blob = bytearray(GOOD)
    blob[pos] ^= 0x01
    refused(tmp_path, capsys, bytes(blob), "bad magic" if pos < 8 else "checksum mismatch")


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, len(GOOD) - 1), mask=st.integers(1, 255))
def test_any_flipped_byte(pos, mask):
    blob = bytearray(GOOD)
    blob[pos] ^= mask
    with pytest.raises(BundleError) as info:
        fmt.loads(bytes(blob), "m.seb")
    message = str(info.value)
    assert message.splitlines() == [message] and message.startswith("m.seb: ")
    assert ("bad magic" if pos < 8 else "checksum mismatch") in message


# ----------------------------------------------------------------------------- framing, re-signed


DOC, DATA = split(GOOD)


def _doc(edit: Callable[[dict], Any]) -> dict:
    doc = copy.deepcopy(DOC)
    edit(doc)
    return doc


def _entry(name: str, **change: Any) -> Callable[[dict], None]:
    return lambda doc: doc["arrays"][name].update(change)


FRAMES: List[Tuple[str, Callable[[], bytes], Any]] = [
    ("bad-magic", lambda: frame(DOC, DATA, magic=b"\x89SEB\r\n\x1a\x00"), "bad magic"),
    ("png-magic", lambda: frame(DOC, DATA, magic=b"\x89PNG\r\n\x1a\n"), "bad magic"),
    ("only-digest", lambda: hashlib.sha256(b"").digest(), "too short"),
    ("header-and-digest", lambda: frame(b"", b"", length=0), "not valid JSON"),
    ("length-past-end", lambda: frame(DOC, DATA, length=LENGTH + len(DATA) + 1), "exceeds the file"),
    ("length-max", lambda: frame(DOC, DATA, length=0xFFFFFFFF), "exceeds the file"),
    ("length-short", lambda: frame(DOC, DATA, length=LENGTH - 1), "not valid JSON"),
    ("length-long", lambda: frame(DOC, DATA, length=LENGTH + 1), "not valid JSON"),
    ("empty-manifest", lambda: frame(b"", DATA), "not valid JSON"),
    ("not-json", lambda: frame(b"{not json", DATA), "not valid JSON"),
    ("not-utf8", lambda: frame(b'{"format":"\xff\xfe"}', DATA), "not valid JSON"),
    ("trailing-garbage", lambda: frame(json.dumps(DOC).encode() + b"}", DATA), "not valid JSON"),
    ("manifest-list", lambda: frame([DOC], DATA), "not a JSON object"),
    ("manifest-string", lambda: frame("spikeedge-bundle", DATA), "not a JSON object"),
    ("manifest-number", lambda: frame(b"1", DATA), "not a JSON object"),
    ("manifest-null", lambda: frame(b"null", DATA), "not a JSON object"),
    ("table-missing", lambda: frame(_doc(lambda d: d.pop("arrays")), DATA), "array table is missing"),
    ("table-list", lambda: frame(_doc(lambda d: d.update(arrays=list(d["arrays"]))), DATA), "array table is missing"),
    ("entry-not-object", lambda: frame(_doc(lambda d: d["arrays"].update({"readout.w": [0]})), DATA), "entry is not an object"),
    ("dtype-int16", lambda: frame(_doc(_entry("readout.w", dtype="int16")), DATA), "dtype 'int16' is not allowed"),
    ("dtype-object", lambda: frame(_doc(_entry("readout.w", dtype="object")), DATA), "is not allowed"),
    ("dtype-big-endian", lambda: frame(_doc(_entry("layers.0.a_syn", dtype=">i4")), DATA), "is not allowed"),
    ("dtype-null", lambda: frame(_doc(_entry("readout.w", dtype=None)), DATA), "is not allowed"),
    ("dtype-missing", lambda: frame(_doc(lambda d: d["arrays"]["readout.w"].pop("dtype")), DATA), "is not allowed"),
    ("shape-negative", lambda: frame(_doc(_entry("layers.0.a_syn", shape=[-6])), DATA), "bad shape"),
    ("shape-int", lambda: frame(_doc(_entry("layers.0.a_syn", shape=6)), DATA), "bad shape"),
    ("shape-float", lambda: frame(_doc(_entry("layers.0.a_syn", shape=[6.0])), DATA), "bad shape"),
    ("shape-bool", lambda: frame(_doc(_entry("readout.w", shape=[True, 6])), DATA), "bad shape"),
    ("shape-nbytes-mismatch", lambda: frame(_doc(_entry("layers.0.a_syn", shape=[5])), DATA), "does not match"),
    ("nbytes-mismatch", lambda: frame(_doc(_entry("layers.0.a_syn", nbytes=25)), DATA), "does not match"),
    ("nbytes-negative", lambda: frame(_doc(_entry("layers.0.a_syn", nbytes=-24)), DATA), "bad nbytes"),
    ("offset-negative", lambda: frame(_doc(_entry("layers.0.a_syn", offset=-16)), DATA), "bad offset"),
    ("offset-float", lambda: frame(_doc(_entry("layers.0.a_syn", offset=16.0)), DATA), "bad offset"),
    ("offset-string", lambda: frame(_doc(_entry("layers.0.a_syn", offset="0")), DATA), "bad offset"),
    ("offset-missing", lambda: frame(_doc(lambda d: d["arrays"]["layers.0.a_syn"].pop("offset")), DATA), "bad offset"),
    ("offset-past-end", lambda: frame(_doc(_entry("readout.w_scale", offset=len(DATA))), DATA), "beyond the end"),
    ("array-0d", lambda: frame(_doc(_entry("layers.0.a_syn", shape=[], nbytes=4)), DATA), "layers.0.a_syn has 0 dimensions"),
    ("data-cut", lambda: frame(DOC, DATA[:-1]), "beyond the end"),
    ("nan-literal-scale", lambda: frame(_doc(lambda d: d["encoder"].update(scale=float("nan"))), DATA), "is not a JSON number"),
    ("inf-literal-scale", lambda: frame(_doc(lambda d: d["encoder"].update(scale=float("inf"))), DATA), "is not a JSON number"),
    ("-inf-literal-scale", lambda: frame(_doc(lambda d: d["encoder"].update(scale=float("-inf"))), DATA), "is not a JSON number"),
    ("digits-limit", lambda: frame(json.dumps(DOC).replace('"bits": 16', '"bits": ' + "9" * 5000).encode(), DATA), "not valid JSON"),
]


@pytest.mark.parametrize("make,fragment", [c[1:] for c in FRAMES], ids=[c[0] for c in FRAMES])
def test_bad_framing(tmp_path, capsys, make, fragment):
    refused(tmp_path, capsys, make(), fragment)


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
    *[("schema-%r" % (v,), "direct", _set("schema_version", v), "schema") for v in (0, 2, -1, 10**6, "1", 1.5, True, None, [1])],
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


# ----------------------------------------------------------------------------- known bugs (reproducers)


def _resigned_with(edit: Callable[[dict], None]) -> bytes:
    return frame(_doc(edit), DATA)


def test_refuses_huge_integer_in_float_field():
    with pytest.raises(BundleError):
        fmt.loads(_resigned_with(lambda d: d["encoder"].update(scale=10**400)), "m.seb")


def test_refuses_shape_dimension_beyond_int64():
    with pytest.raises(BundleError):
        fmt.loads(_resigned_with(_entry("readout.bias", shape=[2**64])), "m.seb")


def test_refuses_shape_product_wraps_to_zero():
    with pytest.raises(BundleError):
        fmt.loads(_resigned_with(_entry("readout.bias", shape=[2**32, 2**32], nbytes=0)), "m.seb")


def test_refuses_deeply_nested_manifest():
    text = b'{"provenance":' + b"[" * 100000 + b"]" * 100000 + b"}"
    with pytest.raises(BundleError):
        fmt.loads(frame(text, DATA), "m.seb")


# ----------------------------------------------------------------------------- manifest fuzz


BASES = [split(fmt.dumps(base_bundle(enc, reset))) for enc in ("direct", "rate", "delta") for reset in ("subtract", "zero")]
ARRAY_NAMES = sorted(BASES[0][0]["arrays"])
WORDS = ["kind", "array", "sparse", "encoder.direct", "encoder.rate", "encoder.delta", "lif_recurrent", "trace_readout",
         "subtract", "zero", "sequence", "last", "int8", "uint16", "int32", "int64", "float64", "", "é\n\u2028"] + ARRAY_NAMES
INTS = st.one_of(
    st.integers(-3, 70000),
    st.sampled_from([-(2**63), -(2**31), 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, 10**400, -(10**400)]),
    st.integers(),
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    st.floats(allow_nan=False, allow_infinity=False),  # NaN and inf are not JSON
    st.text(max_size=6),
    st.sampled_from(WORDS),
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: Tuple = ()) -> List[Tuple]:
    """Every position below ``node`` (dict keys and list indices), depth first."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(_paths(v, prefix + (k,)))
    return out


def _get(doc: Any, path: Tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw) -> Tuple[dict, bytes]:
    doc, data = draw(st.sampled_from(BASES))
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "replace", "delete", "table", "table"]))
        if op == "replace":  # records and top level twice as often as the array table
            paths = _paths(doc)
            outside = [p for p in paths if p[0] != "arrays"]
            path = draw(st.sampled_from((outside if outside and draw(st.integers(0, 2)) else paths) or [()]))
            value = draw(JSON_VALUES)
            if not path:
                doc = value
                break
            _get(doc, path[:-1])[path[-1]] = value
        elif op == "delete":
            keyed = [p for p in _paths(doc) if isinstance(_get(doc, p[:-1]), dict)]
            if keyed:
                path = draw(st.sampled_from(keyed))
                del _get(doc, path[:-1])[path[-1]]
        else:
            table = doc.get("arrays") if isinstance(doc, dict) else None
            entries = [n for n in sorted(table) if isinstance(table[n], dict)] if isinstance(table, dict) else []
            if not entries:
                continue
            entry = table[draw(st.sampled_from(entries))]
            field = draw(st.sampled_from(["dtype", "shape", "offset", "nbytes", "reinterpret", "move"]))
            nbytes = entry.get("nbytes") if isinstance(entry.get("nbytes"), int) else 0
            if field == "dtype":
                entry["dtype"] = draw(st.sampled_from(list(fmt.ALLOWED_DTYPES) + ["int16", "float16", "bool", "object", "<i4", "S4"]))
            elif field == "shape":
                entry["shape"] = draw(st.one_of(st.lists(INTS, max_size=3), st.just(list(reversed(entry["shape"])) if isinstance(entry.get("shape"), list) else []), JSON_VALUES))
            elif field in ("offset", "nbytes"):
                old = entry.get(field) if isinstance(entry.get(field), int) else 0
                entry[field] = draw(st.one_of(st.integers(-32, 32).map(lambda d: old + d), st.integers(0, len(data) + 64), INTS))
            elif field == "reinterpret":  # same bytes, another allowed dtype: passes the table check
                dtype = draw(st.sampled_from(fmt.ALLOWED_DTYPES))
                size = np.dtype(dtype).itemsize
                entry.update(dtype=dtype, shape=[nbytes // size], nbytes=nbytes // size * size)
            else:  # same table entry over other bytes of the data region
                entry["offset"] = draw(st.integers(0, max(0, len(data) - nbytes)))
    return doc, data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=mutated())
def test_manifest_fuzz(case):
    """Any manifest and array table, re-signed: a valid Bundle that runs, or a BundleError."""
    doc, data = case
    blob = frame(doc, data)
    try:
        bundle = fmt.loads(blob, "fuzz.seb")
    except BundleError as exc:
        message = str(exc)
        assert message.splitlines() == [message] and message.startswith("fuzz.seb: ")
        return
    assert isinstance(bundle, Bundle) and bundle.sha256 == blob[-32:].hex()
    session = open_session(bundle)
    out = session.step(np.linspace(-1.0, 1.0, bundle.n_inputs)[None, :])
    assert out.shape == (1, bundle.n_outputs)
    again = fmt.loads(fmt.dumps(bundle))  # what loads accepts, dumps writes back unchanged
    assert fmt.bundle_to_manifest(again)[0] == fmt.bundle_to_manifest(bundle)[0]


def test_info_prints_manifest_strings_verbatim(tmp_path, capsys):
    bundle = dataclasses.replace(base_bundle(), provenance={"note": "[/x] [bold]not markup[/bold]"})
    path = tmp_path / "model.seb"
    fmt.save(bundle, path)
    rc = main(["info", str(path)])
    out, err = capsys.readouterr()
    assert rc == 0 and "[/x]" in out
