"""Conv bundles in the ``.seb`` format: round trips of every conv record kind, recurrent bundles
unchanged, and refusals of malformed conv bundles (``docs/bundle.md``).

Refusal cases edit a valid conv bundle's manifest or arrays and re-sign the bytes (as
``tests/test_bundle_corruption.py`` does), so that the check under test is the one that fires;
each names a fragment of the message it expects. ``load``, ``loads`` and ``spikeedge info`` must
all refuse, in one line, exit code 2 for the CLI.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
from test_conv_runtime_exact import net_and_bundle

from spikeedge.cli.app import main
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import ConvBundle, ConvLifLayer, DirectEncoder, FlattenLayer, LinearReadout
from spikeedge.runtime.sessions import open_session
from spikeedge.errors import BundleError


def same(a: Any, b: Any, where: str = "bundle") -> None:
    """Structural equality, arrays with their dtype and shape, scalars with their type."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            if f.name != "sha256":
                same(getattr(a, f.name), getattr(b, f.name), "%s.%s" % (where, f.name))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (where, i))
    else:
        assert type(a) is type(b) and a == b, "%s: %r != %r" % (where, a, b)


NAMES = ["vgg28", "stride2-if-8bit", "nonsquare-pool3", "mlp-on-image", "resnet-mini", "sum-avg-pool"]


def test_round_trips_cover_every_conv_kind():
    kinds = set()
    for name in NAMES:
        _, bundle, _ = net_and_bundle(name, 0)
        kinds |= {layer.kind for layer in bundle.layers} | {bundle.readout.kind}
    assert kinds == set(fmt.CONV_REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_dumps_loads_save_load_round_trip(tmp_path, name):
    _, bundle, x = net_and_bundle(name, 1)
    bundle = dataclasses.replace(bundle, provenance=dict(bundle.provenance, nested={"a": [1, {"b": None}]}))
    blob = fmt.dumps(bundle)
    back = fmt.loads(blob)
    same(bundle, back)
    assert fmt.dumps(back) == blob  # deterministic bytes
    path = tmp_path / "conv.seb"
    digest = fmt.save(bundle, path)
    loaded = fmt.load(path)
    same(bundle, loaded)
    assert loaded.sha256 == digest == fmt.file_sha256(path)
    a, b = open_session(bundle).run(x), open_session(loaded).run(x)
    assert np.array_equal(a.outputs, b.outputs) and a.spike_counts == b.spike_counts and a.synops == b.synops


def test_conv_manifest_layout_and_recurrent_manifests_unchanged():
    _, bundle, _ = net_and_bundle("vgg28", 0)
    manifest, arrays = fmt.bundle_to_manifest(bundle)
    assert manifest["model"] == "conv" and manifest["input_shape"] == [1, 28, 28] and manifest["time_steps"] == 4
    assert [d["kind"] for d in manifest["layers"]] == ["conv_lif", "maxpool", "conv_lif", "maxpool", "flatten", "linear_lif"]
    assert manifest["layers"][0]["weight"] == {"array": "layers.0.weight"} and arrays["layers.0.weight"].dtype == np.int8
    assert manifest["readout"]["kind"] == "linear_readout"
    assert manifest["schema_version"] == 1 and fmt.SCHEMA_VERSION == 3  # no sum_pool: written as version 1, the bytes it always had
    from bundle_factory import random_bundle  # a recurrent bundle: no "model" key, same bytes as before

    assert "model" not in fmt.bundle_to_manifest(random_bundle(0, "direct"))[0]


def test_info_json_on_a_conv_bundle(tmp_path, capsys):
    _, bundle, _ = net_and_bundle("vgg28", 0)
    path = tmp_path / "conv.seb"
    digest = fmt.save(bundle, path)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == digest and info["model"] == "conv" and info["input_shape"] == [1, 28, 28]
    assert [row["kind"] for row in info["layers"]] == [layer.kind for layer in bundle.layers]
    conv0 = info["layers"][0]
    assert conv0["output_shape"] == [8, 28, 28] and conv0["neurons"] == 8 * 28 * 28 and conv0["macs"] == 8 * (3 * 28 - 2) ** 2
    assert info["neurons"] == 8 * 28 * 28 + 16 * 14 * 14 + 32
    assert info["macs_per_step"] == 8 * (3 * 28 - 2) ** 2 + 16 * 8 * (3 * 14 - 2) ** 2 + 784 * 32 + 32 * 10  # padding taps left out
    assert info["macs_per_inference"] == 4 * info["macs_per_step"]
    assert info["synapses"]["with_readout"] == sum(int(np.count_nonzero(l.weight)) for l in bundle.spiking_layers) + int(np.count_nonzero(bundle.readout.weight))


def test_run_cli_on_images(tmp_path, capsys):
    _, bundle, x = net_and_bundle("stride2-if-8bit", 0)
    path = tmp_path / "conv.seb"
    fmt.save(bundle, path)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "one.npz", x=x[0])
    np.savez(tmp_path / "flat.npz", x=x.reshape(len(x), -1))
    expected = open_session(bundle).run(x)
    assert main(["run", str(path), "--input", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predictions"] == np.argmax(expected.outputs[:, -1], axis=1).tolist()
    assert out["synops"] == expected.synops and out["steps"] == bundle.time_steps
    with np.load(tmp_path / "y.npz") as z:
        assert np.array_equal(z["outputs"], expected.outputs)
    assert main(["run", str(path), "--input", str(tmp_path / "one.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == out["predictions"][:1]
    assert main(["run", str(path), "--input", str(tmp_path / "flat.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes images of shape (3, 8, 8)" in err


# ----------------------------------------------------------------------------- refusals


def base_parts(name: str = "vgg28") -> Tuple[dict, Dict[str, np.ndarray]]:
    manifest, arrays = fmt.bundle_to_manifest(net_and_bundle(name, 0)[1])
    return copy.deepcopy(manifest), {k: v.copy() for k, v in arrays.items()}


def refused(tmp_path, capsys, blob: bytes, fragment: str) -> None:
    path = tmp_path / "broken-conv.seb"
    path.write_bytes(blob)
    with pytest.raises(BundleError) as info:
        fmt.load(path)
    message = str(info.value)
    assert message.splitlines() == [message] and message.startswith(str(path) + ": "), message
    assert fragment in message, "%r does not mention %r" % (message, fragment)
    with pytest.raises(BundleError, match="^elsewhere.seb: "):
        fmt.loads(blob, "elsewhere.seb")
    capsys.readouterr()
    assert main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err


def _set(path: str, value: Any) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        keys = path.split(".")
        node = m
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value

    return edit


def _del(path: str) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        del m[path]

    return edit


def _arr(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        a[name] = fn(a[name])

    return edit


def _both(*edits: Callable[[dict, dict], None]) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        for e in edits:
            e(m, a)

    return edit


def _put(index: Any, value: Any) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        x[index] = value
        return x

    return fn


def _swap_layers(i: int, j: int) -> Callable[[dict, dict], None]:
    def edit(m: dict, a: dict) -> None:
        m["layers"][i], m["layers"][j] = m["layers"][j], m["layers"][i]

    return edit


# the base (vgg28): conv0 1->8 3x3 pad 1, pool1, conv2 8->16, pool3, flatten4, fc5 784->32, readout 32->10
CASES: List[Tuple[str, Callable[[dict, dict], None], str]] = [
    ("model-unknown", _set("model", "transformer"), "unknown model kind"),
    ("input-shape-2d", _set("input_shape", [28, 28]), "input_shape must be"),
    ("input-shape-zero", _set("input_shape", [1, 0, 28]), "input_shape must be"),
    ("input-shape-bool", _set("input_shape", [True, 28, 28]), "input_shape must be"),
    ("input-shape-missing", _del("input_shape"), "input_shape must be"),
    ("input-shape-vs-encoder", _set("input_shape", [1, 28, 27]), "the encoder has 784 inputs"),
    ("time-steps-zero", _set("time_steps", 0), "time_steps must be"),
    ("time-steps-float", _set("time_steps", 1.5), "time_steps must be"),
    ("time-steps-missing", _del("time_steps"), "time_steps must be"),
    ("encoder-rate", _set("encoder", {"kind": "encoder.rate", "n_inputs": 784, "gain": 1.0, "seed": 0}), "expected encoder.direct"),
    ("recurrent-layer-kind", _set("layers.0.kind", "lif_recurrent"), "expected conv_lif or maxpool or flatten or linear_lif"),
    ("readout-kind", _set("readout.kind", "linear_lif"), "expected linear_readout"),
    ("readout-as-layer", _set("layers.5", None), "layers.5 is not an object"),
    ("weight-shape", _arr("layers.0.weight", lambda w: np.concatenate([w, w])), "weight has shape (16, 1, 3, 3), expected (8, 1, 3, 3)"),
    ("weight-rank", _arr("layers.0.weight", lambda w: w.reshape(8, 9)), "has 2 dimensions, expected 4"),
    ("weight-dtype", _arr("layers.0.weight", lambda w: w.astype(np.int32)), "has dtype int32, expected int8"),
    ("declared-channels", _set("layers.2.in_channels", 9), "weight has shape (16, 8, 3, 3), expected (16, 9, 3, 3)"),
    ("channel-chain", _both(_set("layers.2.in_channels", 4), _arr("layers.2.weight", lambda w: w[:, :4].copy())), "layers.2 (conv_lif) expects 4 channels, it gets 8"),
    ("pool-on-image", _swap_layers(0, 1), "max pooling takes spikes"),
    ("flatten-twice", _set("layers.3", {"kind": "flatten", "name": "again"}), "needs a (C, H, W) input"),
    ("linear-inputs", _both(_set("layers.5.n_in", 783), _arr("layers.5.weight", lambda w: w[:, :783].copy())), "expects 783 inputs, it gets [784]"),
    ("readout-inputs", _both(_set("readout.n_in", 31), _arr("readout.weight", lambda w: w[:, :31].copy())), "readout expects 31 inputs"),
    ("kernel-too-big", _set("layers.1.size", 40), "the window is larger than its input"),
    ("padding", _set("layers.0.padding", 3), "padding must be smaller than the kernel"),
    ("stride-zero", _set("layers.0.stride", 0), "stride must be >= 1"),
    ("stride-negative", _set("layers.0.stride", -1), "must be a non-negative integer"),
    ("shift-zero", _set("layers.0.shift", 0), "shift must be in [1, 62]"),
    ("shift-63", _set("layers.5.shift", 63), "shift must be in [1, 62]"),
    ("decay-over", _set("layers.2.decay", 65537), "decay is outside [0, 65536]"),
    ("decay-float", _set("layers.2.decay", 0.8), "must be a non-negative integer"),
    ("m-over", _arr("layers.0.m", _put(0, 1 << 31)), "m is outside [0, 2**31)"),
    ("m-negative", _arr("layers.5.m", _put(3, -1)), "m is outside"),
    ("m-length", _arr("layers.0.m", lambda m: m[:7].copy()), "m does not have 8 entries"),
    ("bias-length", _arr("layers.2.bias", lambda b: b[:3].copy()), "bias does not have 16 entries"),
    ("w-scale-zero", _arr("layers.0.w_scale", _put(2, 0.0)), "w_scale must be finite and > 0"),
    ("acc-scale-nan", _arr("readout.acc_scale", _put(0, np.nan)), "acc_scale must be finite and > 0"),
    ("readout-bias-inf", _arr("readout.bias", _put(1, np.inf)), "bias is not finite"),
    ("names", _set("layers.5.name", "conv0"), "layer names are not unique"),
    ("output", _set("output", "all"), "output must be"),
]


@pytest.mark.parametrize("name,edit,fragment", CASES, ids=[c[0] for c in CASES])
def test_refused(tmp_path, capsys, name, edit, fragment):
    manifest, arrays = base_parts()
    edit(manifest, arrays)
    refused(tmp_path, capsys, fmt.encode_bytes(manifest, arrays), fragment)


def test_positive_control(tmp_path):
    manifest, arrays = base_parts()
    path = tmp_path / "good.seb"
    path.write_bytes(fmt.encode_bytes(manifest, arrays))
    assert isinstance(fmt.load(path), ConvBundle)


def test_conv_kind_in_a_recurrent_bundle_is_refused(tmp_path, capsys):
    from bundle_factory import random_bundle

    manifest, arrays = fmt.bundle_to_manifest(random_bundle(0, "direct", n_layers=1))
    conv_manifest, conv_arrays = base_parts()
    manifest["layers"][0] = conv_manifest["layers"][4]  # a flatten record among recurrent layers
    refused(tmp_path, capsys, fmt.encode_bytes(manifest, dict(arrays, **conv_arrays)), "has kind 'flatten', expected lif_")


def test_int32_overflow_of_the_first_accumulation_is_refused(tmp_path, capsys):
    """128 * fan-in * 32767 must stay below 2**31: a 16-bit image into 64 channels of 3x3 may not."""
    w = np.ones((2, 64, 3, 3), np.int8)
    conv = ConvLifLayer("c", 64, 2, 3, 3, 1, 1, 65536, 16, w, np.ones(2, np.int64), np.zeros(2, np.int32), np.ones(2))
    readout = LinearReadout("r", 2 * 16, 2, np.ones((2, 32), np.int8), np.ones(2), np.zeros(2))
    ok = ConvBundle(DirectEncoder(64 * 16, 0.1, 8), (64, 4, 4), 2, (conv, FlattenLayer("f")), readout)
    back = fmt.loads(fmt.dumps(ok))  # 8-bit inputs fit: 128 * 576 * 127 < 2**31
    assert back.encoder.bits == 8
    with pytest.raises(BundleError, match="fan-in 576 times inputs up to 32767 can overflow"):
        fmt.dumps(dataclasses.replace(ok, encoder=DirectEncoder(64 * 16, 0.1, 16)))
    manifest, arrays = fmt.bundle_to_manifest(ok)
    manifest["encoder"]["bits"] = 16
    refused(tmp_path, capsys, fmt.encode_bytes(manifest, arrays), "can overflow the int32 accumulation")
