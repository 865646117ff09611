"""Well-formed but hostile bundles (issue 18, items 7-10, 12, 13): a correct checksum, and a
manifest or array table that asks for what numpy cannot represent, for far more memory than the
model needs, or for an ambiguous meaning. Each is refused by ``info``, ``run``, ``profile`` and
``flash``'s local check with one ``error:`` line and exit 2, or runs correctly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from typing import Any, Callable, Tuple

import numpy as np
import pytest

from cli_helpers import assert_user_error, call
from spikeedge.errors import BundleError
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import Bundle, DirectEncoder, LifRecurrentLayer, SparseMatrix, TraceReadout
from spikeedge.runtime.bundle.limits import MAX_MANIFEST_BYTES, MAX_MANIFEST_CONTAINERS, MAX_TIME_STEPS

N_IN, N, N_OUT = 3, 6, 2


def small_bundle(output: str = "sequence") -> Bundle:
    rng = np.random.RandomState(0)
    nonzero = lambda shape: (rng.randint(1, 100, shape) * rng.choice([-1, 1], shape)).astype(np.int8)  # noqa: E731
    layer = LifRecurrentLayer(
        "hidden", N, "subtract", SparseMatrix.from_dense(nonzero((N, N_IN))), SparseMatrix.from_dense(nonzero((N, N))),
        np.full(N, 52000, np.int32), np.full(N, 60000, np.int32), np.full(N, 3000, np.int64), np.full(N, 2000, np.int64),
        np.arange(N, dtype=np.int32) * 100, np.full(N, 0.01), np.full(N, 0.02))
    readout = TraceReadout("readout", N, N_OUT, 12, np.full(N, 58000, np.int32), nonzero((N_OUT, N)), np.full(N_OUT, 0.003), np.zeros(N_OUT))
    return Bundle(DirectEncoder(N_IN, 0.05, 16), (layer,), readout, output=output)


def split(blob: bytes) -> Tuple[dict, bytes]:
    (length,) = struct.unpack("<I", blob[8:12])
    return json.loads(blob[12 : 12 + length]), blob[12 + length : -32]


def sign(text: Any, data: bytes) -> bytes:
    """Bundle bytes with a correct checksum from a manifest (dict or raw JSON bytes) and data."""
    if not isinstance(text, bytes):
        text = json.dumps(text, sort_keys=True, separators=(",", ":")).encode("utf-8")
    body = fmt.MAGIC + struct.pack("<I", len(text)) + text + data
    return body + hashlib.sha256(body).digest()


def edited(edit: Callable[[dict], Any], bundle: Any = None) -> bytes:
    doc, data = split(fmt.dumps(bundle or small_bundle()))
    doc = copy.deepcopy(doc)
    edit(doc)
    return sign(doc, data)


def entry(name: str, **change: Any) -> Callable[[dict], None]:
    return lambda d: d["arrays"][name].update(change)


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.linspace(-1, 1, 4 * N_IN).reshape(4, N_IN))
    return path


def refused_everywhere(tmp_path, capsys, blob: bytes, fragment: str, inputs) -> None:
    """``info``, ``run``, ``profile`` and ``flash`` (its local check, before any board) all exit 2
    with one line naming the file and ``fragment``; the library raises a one-line BundleError."""
    path = tmp_path / "hostile.seb"
    path.write_bytes(blob)
    with pytest.raises(BundleError) as exc:
        fmt.load(path)
    assert fragment in str(exc.value) and len(str(exc.value).splitlines()) == 1
    for argv in (["info", path], ["info", path, "--json"], ["run", path, "--input", inputs],
                 ["profile", path, "--input", inputs, "--meter", "none", "--baseline", "0"],
                 ["flash", path, "--to", "nobody@127.0.0.1:1"]):
        rc, out, err = call(capsys, *argv)
        assert_user_error(rc, out, err, str(path), fragment)


# ----------------------------------------------------------------------------- item 7: array table


@pytest.mark.parametrize("change,fragment", [
    (dict(shape=[0, 2**62], nbytes=0), "exceeds"),
    (dict(shape=[2**62, 0], nbytes=0), "exceeds"),
    (dict(shape=[0] * 65, nbytes=0), "dimensions"),
    (dict(shape=[1] * 65, nbytes=2 * 8), "dimensions"),
    (dict(shape=[0, 2**31], nbytes=0), "exceeds"),
    (dict(shape=[0, 2**31 - 1, 2**31 - 1], nbytes=0), "exceeds"),
    (dict(dtype="complex128"), "not allowed"),
    (dict(dtype=["int8"]), "not allowed"),
    (dict(offset=2**64), "beyond the end"),
    (dict(nbytes=-16), "bad nbytes"),
    (dict(shape=[2.0]), "bad shape"),
    (dict(shape=[True, 2]), "bad shape"),
])
def test_unrepresentable_array_entry_is_one_line(tmp_path, capsys, inputs, change, fragment):
    refused_everywhere(tmp_path, capsys, edited(entry("readout.bias", **change)), fragment, inputs)


# ----------------------------------------------------------------------------- item 9: resources


def test_entries_aliasing_one_region_are_refused(tmp_path, capsys, inputs):
    """1,500 extra entries over one region: refused, never 1,500 copies."""
    def edit(d):
        base = d["arrays"]["layers.0.a_syn"]
        for i in range(1500):
            d["arrays"]["alias%04d" % i] = dict(base)
    refused_everywhere(tmp_path, capsys, edited(edit), "overlap", inputs)


def test_two_fields_overlapping_regions_are_refused(tmp_path, capsys, inputs):
    def edit(d):
        a, b = d["arrays"]["layers.0.a_syn"], d["arrays"]["layers.0.a_mem"]
        b["offset"] = a["offset"] + 4
    refused_everywhere(tmp_path, capsys, edited(edit), "overlap", inputs)


def test_one_entry_named_by_two_fields_is_read_once():
    """Aliasing by name (two fields, one entry) costs one array, not two."""
    def edit(d):
        d["layers"][0]["a_mem"] = {"array": "layers.0.a_syn"}
    bundle = fmt.loads(edited(edit))
    assert bundle.layers[0].a_mem is bundle.layers[0].a_syn


def test_unreferenced_entries_are_not_copied():
    doc, data = split(fmt.dumps(small_bundle()))
    pad = b"\0" * (-len(data) % 16)
    doc["arrays"]["unused"] = {"dtype": "uint8", "shape": [1 << 20], "offset": len(data) + len(pad), "nbytes": 1 << 20}
    manifest, table, _ = fmt.decode_bytes(sign(doc, data + pad + b"\1" * (1 << 20)))
    fmt.bundle_from_manifest(manifest, table)
    assert "unused" in table and "unused" not in table._arrays


def test_manifest_size_limit(tmp_path, capsys, inputs):
    refused_everywhere(tmp_path, capsys, edited(lambda d: d.update(provenance={"pad": "x" * MAX_MANIFEST_BYTES})), "exceeds the limit", inputs)


def test_manifest_structure_limit(tmp_path, capsys, inputs):
    """A manifest of empty lists: refused before json builds them."""
    refused_everywhere(tmp_path, capsys, edited(lambda d: d.update(provenance={"l": [[]] * (MAX_MANIFEST_CONTAINERS + 1)})), "JSON objects and arrays", inputs)


# ----------------------------------------------------------------------------- item 13: duplicate keys


@pytest.mark.parametrize("key,first", [("schema_version", "1"), ("output", '"last"'), ("format", '"x"')])
def test_duplicate_manifest_keys_are_refused(tmp_path, capsys, inputs, key, first):
    doc, data = split(fmt.dumps(small_bundle()))
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    text = '{"%s":%s,' % (key, first) + text[1:]
    refused_everywhere(tmp_path, capsys, sign(text.encode(), data), "twice", inputs)


def test_duplicate_key_in_a_nested_record_is_refused():
    doc, data = split(fmt.dumps(small_bundle()))
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).replace('"kind":"trace_readout"', '"kind":"trace_readout","n_out":2')
    with pytest.raises(BundleError, match="'n_out' twice"):
        fmt.loads(sign(text.encode(), data), "m.seb")


# ----------------------------------------------------------------------------- helpers: any record values


def signed_bundle(bundle: Any) -> bytes:
    """Bytes of ``bundle`` with a correct checksum, without the writer's checks (``dumps`` would
    refuse what the loader must refuse)."""
    return fmt.encode_bytes(*fmt.bundle_to_manifest(bundle))


def recurrent(n_in: int = N_IN, n: int = N, n_out: int = N_OUT, w_in: Any = None, w_rec: Any = None, output: str = "sequence", bits: int = 16) -> Bundle:
    rng = np.random.RandomState(1)
    w_in = SparseMatrix.from_dense(rng.randint(-5, 6, (n, n_in)).astype(np.int8)) if w_in is None else w_in
    w_rec = SparseMatrix.from_dense(rng.randint(-5, 6, (n, n)).astype(np.int8)) if w_rec is None else w_rec
    full = lambda v, dt: np.full(n, v, dt)  # noqa: E731
    layer = LifRecurrentLayer("hidden", n, "subtract", w_in, w_rec, full(52000, np.int32), full(60000, np.int32), full(3000, np.int64),
                              full(2000, np.int64), full(100, np.int32), full(0.01, np.float64), full(0.02, np.float64))
    readout = TraceReadout("readout", n, n_out, 12, full(58000, np.int32), np.ones((n_out, n), np.int8), np.full(n_out, 0.003), np.zeros(n_out))
    return Bundle(DirectEncoder(n_in, 0.05, bits), (layer,), readout, output=output)


# ----------------------------------------------------------------------------- item 8: zero sizes


@pytest.mark.parametrize("make,fragment", [
    (lambda: recurrent(n=0), "n must be >= 1"),
    (lambda: recurrent(n_out=0, output="last"), "n_out must be >= 1"),
    (lambda: recurrent(n_out=0), "n_out must be >= 1"),
    (lambda: recurrent(n_in=0), "n_inputs must be >= 1"),
], ids=["n=0", "n_out=0-last", "n_out=0-sequence", "n_inputs=0"])
def test_zero_size_bundles_are_refused_at_load(tmp_path, capsys, inputs, make, fragment):
    refused_everywhere(tmp_path, capsys, signed_bundle(make()), fragment, inputs)


# ----------------------------------------------------------------------------- item 10: indices, int32


def test_repeated_synapse_indices_are_refused(tmp_path, capsys, inputs):
    """Before: the dense-row path kept the last of two weights on one (target, source), the
    sparse path added them; now one semantics: a pair has at most one weight."""
    w_rec = SparseMatrix(N, N, np.array([0, 2] + [2] * (N - 1), np.int32), np.array([3, 3], np.uint16), np.array([40, 50], np.int8))
    refused_everywhere(tmp_path, capsys, signed_bundle(recurrent(w_rec=w_rec)), "names target 3 twice", inputs)


def test_int32_overflow_of_the_input_accumulation_is_refused(tmp_path, capsys):
    """600 16-bit inputs x 127 onto one neuron reach 2.5e9: the sparse path wrapped, now refused."""
    n_in = 600
    w = np.zeros((N, n_in), np.int8)
    w[0] = 127
    blob = signed_bundle(recurrent(n_in=n_in, w_in=SparseMatrix.from_dense(w)))
    path = tmp_path / "x.npz"
    np.savez(path, x=np.ones((2, n_in)))
    refused_everywhere(tmp_path, capsys, blob, "overflow the int32 accumulation", path)
    w[0, 16:] = 0  # 16 x 127 x 32767 fits: the same layout loads
    fmt.loads(signed_bundle(recurrent(n_in=n_in, w_in=SparseMatrix.from_dense(w))))


# ----------------------------------------------------------------------------- conv: steps and sizes


def conv_bundle(time_steps: int = 4, side: int = 6, channels: int = 2) -> Any:
    from spikeedge.runtime.bundle import ConvBundle, ConvLifLayer, FlattenLayer, LinearReadout

    rng = np.random.RandomState(2)
    out_side = side - 2
    conv = ConvLifLayer("conv", 1, channels, 3, 3, 1, 0, 60000, 16, rng.randint(-60, 60, (channels, 1, 3, 3)).astype(np.int8),
                        np.full(channels, 30000, np.int64), np.full(channels, 2000, np.int32), np.full(channels, 0.01))
    n_flat = channels * out_side * out_side
    readout = LinearReadout("readout", n_flat, 3, rng.randint(-60, 60, (3, n_flat)).astype(np.int8), np.full(3, 0.01), np.zeros(3))
    return ConvBundle(DirectEncoder(side * side, 0.01, 8), (1, side, side), time_steps, (conv, FlattenLayer("flat")), readout)


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "images.npz"
    np.savez(path, x=np.random.RandomState(3).uniform(0, 1, (5, 1, 6, 6)))
    return path


@pytest.mark.parametrize("steps", [MAX_TIME_STEPS + 1, 10**6, 2**31 - 1])
def test_conv_time_steps_beyond_the_limit_are_refused(tmp_path, capsys, images, steps):
    blob = edited(lambda d: d.update(time_steps=steps), conv_bundle())
    refused_everywhere(tmp_path, capsys, blob, "time_steps %d exceeds the limit" % steps, images)


def test_conv_activation_beyond_the_limit_is_refused(tmp_path, capsys, images):
    """A 1x1 input blown up by padding-free geometry cannot be faked: the input shape itself
    (its encoder's n_inputs matches) is what a hostile file would enlarge."""
    def edit(d):
        d["input_shape"] = [1, 4100, 4100]
        d["encoder"]["n_inputs"] = 4100 * 4100
    refused_everywhere(tmp_path, capsys, edited(edit, conv_bundle()), "exceeds the limit of 16777216 values", images)


def test_conv_run_too_large_for_layer_major_steps_and_agrees(monkeypatch):
    """Above ``LAYER_MAJOR_MAX_VALUES`` a conv run steps instead of keeping every step: the same
    integers."""
    from spikeedge.runtime import conv_session
    from spikeedge.runtime.conv_session import ConvSession

    bundle = fmt.loads(fmt.dumps(conv_bundle(time_steps=6)))
    x = np.random.RandomState(4).uniform(0, 1, (3, 1, 6, 6))
    want = ConvSession(bundle, 3).run(x)
    monkeypatch.setattr(conv_session, "LAYER_MAJOR_MAX_VALUES", 10)
    got = ConvSession(bundle, 3).run(x)
    assert np.array_equal(got.outputs, want.outputs) and got.spike_counts == want.spike_counts and got.synops == want.synops


# ----------------------------------------------------------------------------- item 12: strings from files


EVIL = "h\x1b[2J\x1b]0;pwned\x07\nerror: forged\u202e\u2028\r\t"


def test_names_from_a_bundle_are_printed_escaped(tmp_path, capsys, inputs):
    import dataclasses

    bundle = small_bundle(output="last")
    layer = dataclasses.replace(bundle.layers[0], name=EVIL)
    bundle = dataclasses.replace(bundle, layers=(layer,), readout=dataclasses.replace(bundle.readout, name="r\x1b[31m"),
                                 provenance={EVIL: EVIL})
    path = tmp_path / "evil.seb"
    fmt.save(bundle, path)
    for argv in (["info", path], ["run", path, "--input", inputs],
                 ["profile", path, "--input", inputs, "--meter", "none", "--baseline", "0"]):
        rc, out, err = call(capsys, *argv)
        assert rc == 0, err
        for stream in (out, err):
            assert not any(c in stream for c in "\x1b\x07\r\t\u202e\u2028"), (argv, stream)
            assert not any(line.startswith("error:") for line in stream.splitlines()), (argv, stream)
        assert "\\x1b[2J" in out, argv  # shown, escaped
    for argv in (["info", path, "--json"], ["run", path, "--input", inputs, "--json"]):
        rc, out, err = call(capsys, *argv)
        doc = json.loads(out)
        assert "\x1b" not in out and out.count("\n") == 1
        names = [d["name"] for d in doc["layers"]] if "layers" in doc else list(doc["spike_counts"])
        assert EVIL in names  # JSON keeps the exact string, escaped


def test_error_lines_escape_what_came_from_the_file(tmp_path, capsys, inputs):
    """A message quoting a file's string stays one line without terminal controls."""
    blob = edited(lambda d: d["layers"][0].update(kind="x\x1b[2J\nerror: forged"))
    path = tmp_path / "evil.seb"
    path.write_bytes(blob)
    rc, out, err = call(capsys, "info", path)
    assert_user_error(rc, out, err, "unknown kind")
    assert "\x1b" not in err


def test_scales_that_overflow_outputs_are_refused(tmp_path, capsys, images):
    """An ``acc_scale`` of 1e308 made every logit inf; scales are bounded by 1e30."""
    doc, data = split(fmt.dumps(conv_bundle()))
    entry_ = doc["arrays"]["readout.acc_scale"]
    start = entry_["offset"]
    data = data[:start] + np.full(3, 1e308).tobytes() + data[start + 24:]
    refused_everywhere(tmp_path, capsys, sign(doc, data), "acc_scale must be at most 1e+30", images)
