"""The spikeedge bundle (``.seb``): the single source of truth for the deployable model format.

A bundle is one file::

    magic        8 bytes   b"\\x89SEB\\r\\n\\x1a\\n"
    length       4 bytes   little-endian uint32: size of the manifest in bytes
    manifest     JSON      schema version, model records, array table, provenance
    arrays       raw       little-endian numpy arrays, each at a 16-byte aligned offset
    sha256       32 bytes  digest of everything before it

Model records are frozen dataclasses registered by ``kind``; scalar fields live in the manifest,
array fields in the array table (``dtype``, ``shape``, ``offset``, ``nbytes``). Loading checks, in
order: magic, checksum, manifest length, schema version, array table, every record's fields and types,
then each record's own consistency rules. Any failure is a one-line ``BundleError`` naming the
file; nothing half-valid is ever returned. No pickle anywhere. ``docs/bundle.md`` documents the
format; a change to it means a new ``SCHEMA_VERSION`` and a migration in ``MIGRATIONS``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

import numpy as np

from .errors import BundleError

MAGIC = b"\x89SEB\r\n\x1a\n"
SCHEMA_VERSION = 1
FORMAT_NAME = "spikeedge-bundle"
ALIGN = 16
DIGEST_BYTES = 32
MAX_MANIFEST_BYTES = 64 << 20
ALLOWED_DTYPES = ("int8", "uint8", "uint16", "int32", "int64", "float32", "float64")

# Migrations from older schema versions: {old_version: function(manifest) -> manifest of old+1}.
MIGRATIONS: Dict[int, Callable[[dict], dict]] = {}


def _array(dtype: str, ndim: int, optional: bool = False) -> Any:
    """Declare an array field: stored in the array table, checked for dtype and rank on load."""
    meta = {"array": True, "dtypes": dtype.split("|"), "ndim": ndim, "optional": optional}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SparseMatrix:
    """Weights ``W[target, source]`` stored source-major (compressed sparse columns).

    For event-driven inference: when source ``j`` emits an event, its targets are
    ``indices[indptr[j]:indptr[j+1]]`` with int8 weights ``values[...]`` - one contiguous block.
    """

    kind = "sparse"
    n_targets: int  # rows of W
    n_sources: int  # columns of W
    indptr: np.ndarray = _array("int32|int64", 1)  # (n_sources + 1,), start of each column
    indices: np.ndarray = _array("uint16|int32", 1)  # (nnz,), target of each weight
    values: np.ndarray = _array("int8", 1)  # (nnz,), int8 weights

    def check(self) -> None:
        _require(self.indptr.shape == (self.n_sources + 1,), "indptr has shape %s, expected (%d,)" % (self.indptr.shape, self.n_sources + 1))
        _require(self.indices.shape == self.values.shape, "indices and values differ in length")
        _require(int(self.indptr[0]) == 0 and int(self.indptr[-1]) == self.values.size, "indptr does not span the stored weights")
        _require(bool(np.all(np.diff(self.indptr) >= 0)), "indptr is not non-decreasing")
        if self.indices.size:
            _require(int(self.indices.min()) >= 0 and int(self.indices.max()) < self.n_targets, "a weight targets a neuron out of range")

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    def to_dense(self) -> np.ndarray:
        """Dense int8 ``(n_targets, n_sources)``: for references and tests, not for inference."""
        dense = np.zeros((self.n_targets, self.n_sources), np.int8)
        cols = np.repeat(np.arange(self.n_sources), np.diff(self.indptr))
        dense[self.indices.astype(np.int64), cols] = self.values
        return dense

    @classmethod
    def from_dense(cls, w: np.ndarray) -> "SparseMatrix":
        """Pack a dense int8 ``(n_targets, n_sources)`` matrix, dropping zeros."""
        w = np.asarray(w, np.int8)
        tgt, src = np.nonzero(w.T)  # source-major order
        counts = np.bincount(tgt, minlength=w.shape[1])
        idx_dtype = np.uint16 if w.shape[0] <= 65536 else np.int32
        ptr_dtype = np.int32 if len(src) < 2**31 else np.int64
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(ptr_dtype)
        return cls(w.shape[0], w.shape[1], indptr, src.astype(idx_dtype), w.T[tgt, src])


@dataclass(frozen=True)
class DirectEncoder:
    """Real inputs fed as currents: ``round(x / scale)`` as a signed ``bits``-bit integer."""

    kind = "encoder.direct"
    n_inputs: int
    scale: float  # input units per integer step
    bits: int  # 8 or 16

    def check(self) -> None:
        _require_scale(self.scale, "scale")
        _require(self.bits in (8, 16), "bits must be 8 or 16")


@dataclass(frozen=True)
class RateEncoder:
    """Bernoulli spikes with probability ``clip(gain * x, 0, 1)``; ``seed`` fixes the trains."""

    kind = "encoder.rate"
    n_inputs: int
    gain: float
    seed: int

    def check(self) -> None:
        _require_scale(self.gain, "gain")


@dataclass(frozen=True)
class DeltaEncoder:
    """Level-crossing spikes, an up and a down channel per input, every ``threshold``."""

    kind = "encoder.delta"
    n_inputs: int
    threshold: float

    def check(self) -> None:
        _require_scale(self.threshold, "threshold")


@dataclass(frozen=True)
class LifRecurrentLayer:
    """A recurrent layer of current-based LIF neurons in integer form (``runtime/neuron.py``)."""

    kind = "lif_recurrent"
    name: str
    n: int
    reset: str  # "subtract" or "zero"
    w_in: SparseMatrix  # (n, input channels)
    w_rec: SparseMatrix  # (n, n)
    a_syn: np.ndarray = _array("int32", 1)  # Q16 synaptic decay per neuron
    a_mem: np.ndarray = _array("int32", 1)  # Q16 membrane decay per neuron
    m_in: np.ndarray = _array("int64", 1)  # Q16 requantisation of input accumulations
    m_rec: np.ndarray = _array("int64", 1)  # Q16 requantisation of recurrent accumulations
    bias: np.ndarray = _array("int32", 1)  # constant current per step, state units
    w_in_scale: np.ndarray = _array("float64", 1)  # float weight per int8 step, per neuron
    w_rec_scale: np.ndarray = _array("float64", 1)

    def check(self) -> None:
        _require(self.reset in ("subtract", "zero"), "reset must be 'subtract' or 'zero'")
        _require(self.w_in.n_targets == self.n and self.w_rec.n_targets == self.n, "weights do not target %d neurons" % self.n)
        _require(self.w_rec.n_sources == self.n, "recurrent weights are not square")
        for name in ("a_syn", "a_mem", "m_in", "m_rec", "bias", "w_in_scale", "w_rec_scale"):
            _require(getattr(self, name).shape == (self.n,), "%s does not have %d entries" % (name, self.n))
        for name in ("a_syn", "a_mem"):
            arr = getattr(self, name)
            _require(bool(np.all((arr >= 0) & (arr <= 1 << 16))), "%s is outside [0, 65536]" % name)
        for name in ("w_in_scale", "w_rec_scale"):
            _require_scale(getattr(self, name), name)
        for name in ("m_in", "m_rec"):  # keeps acc * m inside int64 for any int32 accumulation
            arr = getattr(self, name)
            _require(bool(np.all((arr >= 0) & (arr < 1 << 31))), "%s is outside [0, 2**31)" % name)


@dataclass(frozen=True)
class TraceReadout:
    """Dense readout of exponential spike traces: ``y = (w @ trace) * w_scale / 2**trace_bits + bias``."""

    kind = "trace_readout"
    name: str
    n_in: int
    n_out: int
    trace_bits: int
    a_trace: np.ndarray = _array("int32", 1)  # Q16 trace decay per input neuron
    w: np.ndarray = _array("int8", 2)  # (n_out, n_in)
    w_scale: np.ndarray = _array("float64", 1)  # per output
    bias: np.ndarray = _array("float64", 1)  # per output, in output units

    def check(self) -> None:
        _require(self.w.shape == (self.n_out, self.n_in), "w has shape %s, expected (%d, %d)" % (self.w.shape, self.n_out, self.n_in))
        _require(self.a_trace.shape == (self.n_in,), "a_trace does not have %d entries" % self.n_in)
        _require(bool(np.all((self.a_trace >= 0) & (self.a_trace <= 1 << 16))), "a_trace is outside [0, 65536]")
        _require(self.bias.shape == (self.n_out,) and bool(np.all(np.isfinite(self.bias))), "bias is not %d finite values" % self.n_out)
        _require_scale(self.w_scale, "w_scale")
        _require(self.w_scale.shape == (self.n_out,), "w_scale does not have %d entries" % self.n_out)
        _require(0 <= self.trace_bits <= 16, "trace_bits must be in [0, 16]")


Encoder = Union[DirectEncoder, RateEncoder, DeltaEncoder]
REGISTRY: Dict[str, Type[Any]] = {
    cls.kind: cls for cls in (SparseMatrix, DirectEncoder, RateEncoder, DeltaEncoder, LifRecurrentLayer, TraceReadout)
}


@dataclass(frozen=True)
class Bundle:
    """A whole deployable model: encoder, recurrent layers, readout, and where it came from.

    ``output``: "sequence" (one output per step: regression, prediction) or "last" (the output
    at the last step is the answer: classification). ``provenance`` records the training,
    pruning and quantization that made the model (plain JSON, shown by ``spikeedge info``).
    """

    encoder: Encoder
    layers: Tuple[LifRecurrentLayer, ...]
    readout: TraceReadout
    output: str = "sequence"
    provenance: Dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # filled in on write and load

    def check(self) -> None:
        _require(self.output in ("sequence", "last"), "output must be 'sequence' or 'last'")
        _require(len(self.layers) >= 1, "a bundle needs at least one layer")
        names = [layer.name for layer in self.layers]
        _require(len(set(names)) == len(names), "layer names are not unique")
        n_ch = self.encoder.n_inputs * (2 if self.encoder.kind == "encoder.delta" else 1)
        for layer in self.layers:
            _require(layer.w_in.n_sources == n_ch, "layer %r expects %d input channels, the encoder gives %d" % (layer.name, layer.w_in.n_sources, n_ch))
            n_ch = layer.n
        _require(self.readout.n_in == n_ch, "readout expects %d inputs, the last layer has %d neurons" % (self.readout.n_in, n_ch))

    @property
    def n_inputs(self) -> int:
        return self.encoder.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.readout.n_out


# ----------------------------------------------------------------------------- validation helpers


class _Invalid(Exception):
    """Internal: a consistency rule failed; turned into a BundleError naming the file."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _Invalid(message)


def _require_scale(value: Any, name: str) -> None:
    arr = np.asarray(value, dtype=np.float64)
    _require(bool(np.all(np.isfinite(arr))) and bool(np.all(arr > 0)), "%s must be finite and > 0" % name)


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


def _record_from_json(d: Any, where: str, arrays: Dict[str, np.ndarray], expect: Optional[str] = None) -> Any:
    _require(isinstance(d, dict), "%s is not an object" % where)
    kind = d.get("kind")
    _require(isinstance(kind, str) and kind in REGISTRY, "%s has unknown kind %r" % (where, kind))
    _require(expect is None or kind.startswith(expect), "%s has kind %r, expected %s" % (where, kind, expect))
    cls = REGISTRY[kind]
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


def bundle_to_manifest(bundle: Bundle) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The manifest (JSON-able dict) and the named arrays of a bundle."""
    arrays: Dict[str, np.ndarray] = {}
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "encoder": _record_to_json(bundle.encoder, "encoder", arrays),
        "layers": [_record_to_json(layer, "layers.%d" % i, arrays) for i, layer in enumerate(bundle.layers)],
        "readout": _record_to_json(bundle.readout, "readout", arrays),
        "output": bundle.output,
        "provenance": bundle.provenance,
    }
    return manifest, arrays


def bundle_from_manifest(manifest: Any, arrays: Dict[str, np.ndarray]) -> Bundle:
    """Build and check a Bundle from a manifest dict; raises ``_Invalid`` on any problem."""
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    _require(manifest.get("format") == FORMAT_NAME, "not a spikeedge bundle (format %r)" % manifest.get("format"))
    version = manifest.get("schema_version")
    _require(isinstance(version, int) and not isinstance(version, bool), "schema_version is missing or not an integer")
    while version in MIGRATIONS:
        manifest = MIGRATIONS[version](manifest)
        version = manifest["schema_version"]
    _require(version == SCHEMA_VERSION, "schema version %s is not supported (this runtime reads version %d)" % (version, SCHEMA_VERSION))
    _require(isinstance(manifest.get("layers"), list), "layers must be a list")
    provenance = manifest.get("provenance", {})
    _require(isinstance(provenance, dict), "provenance must be an object")
    output = manifest.get("output")
    _require(isinstance(output, str), "output must be a string")
    bundle = Bundle(
        encoder=_record_from_json(manifest.get("encoder"), "encoder", arrays, expect="encoder."),
        layers=tuple(_record_from_json(d, "layers.%d" % i, arrays, expect="lif_") for i, d in enumerate(manifest["layers"])),
        readout=_record_from_json(manifest.get("readout"), "readout", arrays, expect="trace_"),
        output=output,
        provenance=provenance,
    )
    bundle.check()
    return bundle


# ----------------------------------------------------------------------------- bytes <-> file


def encode_bytes(manifest: dict, arrays: Dict[str, np.ndarray]) -> bytes:
    """Serialise a manifest and its arrays to the bundle byte layout (with the digest)."""
    table: Dict[str, dict] = {}
    chunks: List[bytes] = []
    offset = 0
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-offset) % ALIGN
        chunks.append(b"\0" * pad)
        offset += pad
        table[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset, "nbytes": len(data)}
        chunks.append(data)
        offset += len(data)
    doc = dict(manifest, arrays=table)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    body = MAGIC + struct.pack("<I", len(text)) + text + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def decode_bytes(blob: bytes) -> Tuple[dict, Dict[str, np.ndarray], str]:
    """Check framing and checksum, then parse manifest and arrays; raises ``_Invalid``."""
    head = len(MAGIC) + 4
    _require(len(blob) >= head + DIGEST_BYTES, "file is too short to be a bundle (%d bytes)" % len(blob))
    _require(blob[: len(MAGIC)] == MAGIC, "not a spikeedge bundle (bad magic bytes)")
    body, digest = blob[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    _require(hashlib.sha256(body).digest() == digest, "checksum mismatch: the file is corrupt or truncated")
    (length,) = struct.unpack("<I", blob[len(MAGIC) : head])
    _require(length <= min(MAX_MANIFEST_BYTES, len(body) - head), "manifest length %d exceeds the file" % length)
    try:
        manifest = json.loads(body[head : head + length].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Invalid("manifest is not valid JSON (%s)" % str(exc).splitlines()[0]) from None
    except RecursionError:
        raise _Invalid("manifest is nested too deeply") from None
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    data = memoryview(body)[head + length :]
    table = manifest.get("arrays")
    _require(isinstance(table, dict), "the array table is missing")
    arrays = {}
    for name, entry in table.items():
        arrays[name] = _read_array(name, entry, data)
    return manifest, arrays, digest.hex()


def _reject_constant(name: str) -> None:
    raise ValueError("%s is not a JSON number" % name)


def _read_array(name: str, entry: Any, data: memoryview) -> np.ndarray:
    _require(isinstance(entry, dict), "array %r: entry is not an object" % name)
    dtype, shape, offset, nbytes = (entry.get(k) for k in ("dtype", "shape", "offset", "nbytes"))
    _require(dtype in ALLOWED_DTYPES, "array %r: dtype %r is not allowed" % (name, dtype))
    _require(isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape), "array %r: bad shape %r" % (name, shape))
    for key, value in (("offset", offset), ("nbytes", nbytes)):
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, "array %r: bad %s" % (name, key))
    dt = np.dtype(dtype).newbyteorder("<")
    _require(math.prod(shape) * dt.itemsize == nbytes, "array %r: shape %s does not match %d bytes" % (name, shape, nbytes))
    _require(offset + nbytes <= len(data), "array %r lies beyond the end of the file" % name)
    arr = np.frombuffer(data, dtype=dt, count=nbytes // dt.itemsize, offset=offset).reshape(shape)
    return arr.astype(np.dtype(dtype), copy=True)


def dumps(bundle: Bundle) -> bytes:
    """The bundle as bytes (what ``save`` writes)."""
    try:
        for record in _records(bundle):
            record.check()
        bundle.check()
        manifest, arrays = bundle_to_manifest(bundle)
        return encode_bytes(manifest, arrays)
    except _Invalid as exc:
        raise BundleError("cannot write bundle: %s" % exc) from None
    except (TypeError, ValueError) as exc:  # NaN or non-JSON values in scalars or provenance
        raise BundleError("cannot write bundle: %s" % str(exc).splitlines()[0]) from None


def _records(bundle: Bundle) -> List[Any]:
    """Every record of a bundle, nested sparse matrices included, for their own checks."""
    out: List[Any] = [bundle.encoder, bundle.readout]
    for layer in bundle.layers:
        out += [layer, layer.w_in, layer.w_rec]
    return out


def loads(blob: bytes, source: str = "<bytes>") -> Bundle:
    """Parse and fully validate bundle bytes; ``source`` names the file in error messages."""
    try:
        manifest, arrays, digest = decode_bytes(blob)
        bundle = bundle_from_manifest(manifest, arrays)
    except _Invalid as exc:
        raise BundleError("%s: %s" % (source, exc)) from None
    return dataclasses.replace(bundle, sha256=digest)


def save(bundle: Bundle, path: Union[str, Path]) -> str:
    """Write atomically (temporary file in the same folder, fsync, rename); returns the sha256."""
    path = Path(path)
    blob = dumps(bundle)
    write_atomic(path, blob)
    return blob[-DIGEST_BYTES:].hex()


def load(path: Union[str, Path]) -> Bundle:
    """Read and validate a bundle file; any problem is a one-line ``BundleError``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise BundleError("%s: no such file" % path) from None
    except IsADirectoryError:
        raise BundleError("%s: is a directory, not a bundle" % path) from None
    except OSError as exc:
        raise BundleError("%s: cannot read (%s)" % (path, exc.strerror)) from None
    return loads(blob, str(path))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
