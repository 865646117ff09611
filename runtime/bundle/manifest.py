"""Records <-> manifest: the JSON half of the container, the schema version and its migrations, and
the registry-driven reader that checks every record's fields, types and rules on load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

from .conv_layers import CONV_LAYER_KINDS, CONV_REGISTRY, KIND_SINCE
from .layers import REGISTRY, Encoder, _Invalid, _require
from .limits import MAX_TIME_STEPS
from .models import AnyBundle, Bundle, ConvBundle

SCHEMA_VERSION = 3  # the newest version this runtime reads; 2 added the conv kind ``sum_pool``,
# 3 the trace readout's ``delays`` (taps over past traces)
READOUT_DELAYS_SINCE = 3
FORMAT_NAME = "spikeedge-bundle"


def schema_version_of(bundle: AnyBundle) -> int:
    """The version a bundle is written with: the lowest that holds every kind it uses
    (``KIND_SINCE``), so that a model without the newer kinds keeps the bytes and the digest it
    always had, and an older runtime refuses only the files it cannot run."""
    version = max([1] + [KIND_SINCE.get(layer.kind, 1) for layer in bundle.layers])
    if getattr(bundle.readout, "delays", None) is not None:
        version = max(version, READOUT_DELAYS_SINCE)
    return version

# Migrations from older schema versions: {old_version: function(manifest) -> manifest of old+1}.
MIGRATIONS: Dict[int, Callable[[dict], dict]] = {}

# ----------------------------------------------------------------------------- records <-> manifest


def _record_to_json(obj: Any, prefix: str, arrays: Dict[str, np.ndarray]) -> dict:
    out: Dict[str, Any] = {"kind": obj.kind}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = "%s.%s" % (prefix, f.name)
        if f.metadata.get("array"):
            if value is not None:
                arrays[key] = np.ascontiguousarray(value)
                out[f.name] = {"array": key}
        elif dataclasses.is_dataclass(value):
            out[f.name] = _record_to_json(value, key, arrays)
        else:
            out[f.name] = value
    return out


def _scalar(value: Any, annotation: str, where: str) -> Any:
    if annotation == "int":
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, "%s must be a non-negative integer" % where)
    elif annotation == "float":
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), "%s must be a finite number" % where)
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        _require(math.isfinite(value), "%s must be a finite number" % where)
    elif annotation == "str":
        _require(isinstance(value, str), "%s must be a string" % where)
    elif annotation == "bool":
        _require(isinstance(value, bool), "%s must be true or false" % where)
    return value


def _record_from_json(d: Any, where: str, arrays: Dict[str, np.ndarray], expect: Union[None, str, Tuple[str, ...]] = None) -> Any:
    """``expect``: the kind's prefix, or a tuple of allowed prefixes."""
    _require(isinstance(d, dict), "%s is not an object" % where)
    kind = d.get("kind")
    _require(isinstance(kind, str) and (kind in REGISTRY or kind in CONV_REGISTRY), "%s has unknown kind %r" % (where, kind))
    _require(expect is None or kind.startswith(expect), "%s has kind %r, expected %s" % (where, kind, expect if isinstance(expect, str) else " or ".join(expect)))
    cls = REGISTRY[kind] if kind in REGISTRY else CONV_REGISTRY[kind]
    values: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = "%s.%s" % (where, f.name)
        meta = f.metadata
        if f.name not in d:
            _require(bool(meta.get("optional")), "%s is missing" % sub)
            values[f.name] = None
            continue
        raw = d[f.name]
        if meta.get("array"):
            _require(isinstance(raw, dict) and isinstance(raw.get("array"), str), "%s must name an array" % sub)
            _require(raw["array"] in arrays, "%s names missing array %r" % (sub, raw["array"]))
            arr = arrays[raw["array"]]
            _require(arr.dtype.name in meta["dtypes"], "%s has dtype %s, expected %s" % (sub, arr.dtype.name, "|".join(meta["dtypes"])))
            _require(arr.ndim == meta["ndim"], "%s has %d dimensions, expected %d" % (sub, arr.ndim, meta["ndim"]))
            values[f.name] = arr
        elif f.type in ("SparseMatrix",):
            values[f.name] = _record_from_json(raw, sub, arrays, expect="sparse")
        else:
            values[f.name] = _scalar(raw, str(f.type), sub)
    obj = cls(**values)
    try:
        obj.check()
    except _Invalid as exc:
        raise _Invalid("%s: %s" % (where, exc)) from None
    return obj


def encoder_to_json(encoder: Encoder) -> dict:
    """An encoder record (it has no arrays) as JSON: what exported step graphs carry."""
    return _record_to_json(encoder, "encoder", {})


def encoder_from_json(d: Any, where: str = "encoder") -> Encoder:
    """The inverse of ``encoder_to_json``; ``BundleError``-free: raises ``ValueError`` with a
    one-line reason."""
    try:
        return _record_from_json(d, where, {}, expect="encoder")
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def bundle_to_manifest(bundle: AnyBundle) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The manifest (JSON-able dict) and the named arrays of a bundle."""
    arrays: Dict[str, np.ndarray] = {}
    if isinstance(bundle, ConvBundle):
        manifest = {
            "format": FORMAT_NAME,
            "schema_version": schema_version_of(bundle),
            "model": ConvBundle.model,
            "input_shape": list(bundle.input_shape),
            "time_steps": bundle.time_steps,
            "encoder": _record_to_json(bundle.encoder, "encoder", arrays),
            "layers": [_record_to_json(layer, "layers.%d" % i, arrays) for i, layer in enumerate(bundle.layers)],
            "readout": _record_to_json(bundle.readout, "readout", arrays),
            "output": bundle.output,
            "provenance": bundle.provenance,
        }
        return manifest, arrays
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": schema_version_of(bundle),
        "encoder": _record_to_json(bundle.encoder, "encoder", arrays),
        "layers": [_record_to_json(layer, "layers.%d" % i, arrays) for i, layer in enumerate(bundle.layers)],
        "readout": _record_to_json(bundle.readout, "readout", arrays),
        "output": bundle.output,
        "provenance": bundle.provenance,
    }
    return manifest, arrays


def bundle_from_manifest(manifest: Any, arrays: Dict[str, np.ndarray]) -> AnyBundle:
    """Build and check a Bundle from a manifest dict; raises ``_Invalid`` on any problem."""
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    _require(manifest.get("format") == FORMAT_NAME, "not a spikeedge bundle (format %r)" % manifest.get("format"))
    version = manifest.get("schema_version")
    _require(isinstance(version, int) and not isinstance(version, bool), "schema_version is missing or not an integer")
    while version in MIGRATIONS:
        manifest = MIGRATIONS[version](manifest)
        version = manifest["schema_version"]
    _require(1 <= version <= SCHEMA_VERSION, "schema version %s is not supported (this runtime reads versions 1 to %d)" % (version, SCHEMA_VERSION))
    _require(isinstance(manifest.get("layers"), list), "layers must be a list")
    provenance = manifest.get("provenance", {})
    _require(isinstance(provenance, dict), "provenance must be an object")
    output = manifest.get("output")
    _require(isinstance(output, str), "output must be a string")
    model = manifest.get("model", "hrsnn")
    _require(model in ("hrsnn", ConvBundle.model), "unknown model kind %r (expected 'hrsnn' or 'conv')" % (model,))
    if model == ConvBundle.model:
        return _conv_from_manifest(manifest, arrays, output, provenance)
    bundle = Bundle(
        encoder=_record_from_json(manifest.get("encoder"), "encoder", arrays, expect="encoder."),
        layers=tuple(_record_from_json(d, "layers.%d" % i, arrays, expect="lif_") for i, d in enumerate(manifest["layers"])),
        readout=_record_from_json(manifest.get("readout"), "readout", arrays, expect="trace_"),
        output=output,
        provenance=provenance,
    )
    _require(bundle.readout.delays is None or version >= READOUT_DELAYS_SINCE,
             "readout.delays needs schema version %d, the file says %d" % (READOUT_DELAYS_SINCE, version))
    bundle.check()
    return bundle


def _conv_from_manifest(manifest: dict, arrays: Dict[str, np.ndarray], output: str, provenance: dict) -> ConvBundle:
    shape = manifest.get("input_shape")
    ok = isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 1 << 31 for v in shape)
    _require(ok, "input_shape must be a list of three integers >= 1")
    steps = manifest.get("time_steps")
    _require(isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps, "time_steps must be an integer >= 1")
    _require(steps <= MAX_TIME_STEPS, "time_steps %d exceeds the limit of %d" % (steps, MAX_TIME_STEPS))
    for i, d in enumerate(manifest["layers"]):  # a kind newer than the file's version: a file no writer makes
        kind = d.get("kind") if isinstance(d, dict) else None
        _require(KIND_SINCE.get(kind, 1) <= manifest["schema_version"], "layers.%d: kind %r needs schema version %d, the file says %d"
                 % (i, kind, KIND_SINCE.get(kind, 1), manifest["schema_version"]))
    bundle = ConvBundle(
        encoder=_record_from_json(manifest.get("encoder"), "encoder", arrays, expect="encoder.direct"),
        input_shape=tuple(shape),
        time_steps=steps,
        layers=tuple(_record_from_json(d, "layers.%d" % i, arrays, expect=CONV_LAYER_KINDS) for i, d in enumerate(manifest["layers"])),
        readout=_record_from_json(manifest.get("readout"), "readout", arrays, expect="linear_readout"),
        output=output,
        provenance=provenance,
    )
    bundle.check()
    return bundle
