"""Malformed bundles are refused: one-line ``BundleError`` naming the file, and through the CLI
exit code 2 with a single ``error:`` line on stderr and no traceback (``docs/bundle.md``). This
file: the file itself, its framing, known bugs and a manifest fuzz; a bad manifest or arrays, one
field at a time: tests/test_bundle_manifest.py.

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
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeedge.cli.app import main
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import Bundle
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import BundleError
from bundle_refusals import N_IN, base_bundle, base_parts, frame, refused, split


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
        assert json.loads(out)["sha256"] == hashlib.sha256(blob).hexdigest() and err == ""


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
    assert isinstance(bundle, Bundle) and bundle.sha256 == hashlib.sha256(blob).hexdigest()
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
