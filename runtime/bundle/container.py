"""The bundle file itself: header, 16-byte aligned array table, sha256 trailer; ``dumps``/``loads``
and atomic ``save``/``load`` (the byte layout is in the package docstring and ``docs/bundle.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Tuple, Union

import numpy as np

from ...errors import BundleError
from .layers import _Invalid, _require
from .limits import MAX_ARRAY_DIM, MAX_ARRAY_NDIM, MAX_ARRAY_SPAN, MAX_MANIFEST_BYTES, MAX_MANIFEST_CONTAINERS
from .manifest import bundle_from_manifest, bundle_to_manifest
from .models import AnyBundle, ConvBundle

MAGIC = b"\x89SEB\r\n\x1a\n"
ALIGN = 16
DIGEST_BYTES = 32
ALLOWED_DTYPES = ("int8", "uint8", "uint16", "int32", "int64", "float32", "float64")

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


def decode_bytes(blob: bytes) -> Tuple[dict, "ArrayTable", str]:
    """Check framing and checksum, then parse the manifest and check the array table (every
    entry, before any array exists); raises ``_Invalid``. The arrays are made on first use."""
    head = len(MAGIC) + 4
    _require(len(blob) >= head + DIGEST_BYTES, "file is too short to be a bundle (%d bytes)" % len(blob))
    _require(blob[: len(MAGIC)] == MAGIC, "not a spikeedge bundle (bad magic bytes)")
    body, digest = memoryview(blob)[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    _require(hashlib.sha256(body).digest() == digest, "checksum mismatch: the file is corrupt or truncated")
    (length,) = struct.unpack("<I", blob[len(MAGIC) : head])
    _require(length <= len(body) - head, "manifest length %d exceeds the file" % length)
    _require(length <= MAX_MANIFEST_BYTES, "manifest of %d bytes exceeds the limit of %d" % (length, MAX_MANIFEST_BYTES))
    text = bytes(body[head : head + length])
    containers = text.count(b"{") + text.count(b"[")
    _require(containers <= MAX_MANIFEST_CONTAINERS, "manifest has more than %d JSON objects and arrays" % MAX_MANIFEST_CONTAINERS)
    try:
        manifest = json.loads(text.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _Invalid:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Invalid("manifest is not valid JSON (%s)" % str(exc).splitlines()[0]) from None
    except RecursionError:
        raise _Invalid("manifest is nested too deeply") from None
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    table = manifest.get("arrays")
    _require(isinstance(table, dict), "the array table is missing")
    return manifest, ArrayTable(table, body[head + length :]), digest.hex()


def _reject_constant(name: str) -> None:
    raise ValueError("%s is not a JSON number" % name)


def _unique_keys(pairs: List[Tuple[str, Any]]) -> dict:
    """``json.loads``' object hook: a key given twice is refused (JSON would keep the last)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Invalid("manifest has the key %r twice in one object" % twice)
    return out


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class ArrayTable(Mapping):
    """The array table, every entry checked on construction: dtype allowed, shape a list of at
    most ``MAX_ARRAY_NDIM`` integers in ``[0, MAX_ARRAY_DIM]``, ``nbytes`` exactly the shape's,
    the region inside the data region and overlapping no other entry's. An array is copied out
    of the file (aligned, native byte order) when a record first names it, once: unreferenced
    entries cost nothing and, regions being disjoint, the copies never exceed the data region."""

    def __init__(self, table: Dict[str, Any], data: memoryview) -> None:
        self._entries: Dict[str, Tuple[np.dtype, Tuple[int, ...], int, int]] = {}
        self._data = data
        self._arrays: Dict[str, np.ndarray] = {}
        for name, entry in table.items():
            self._entries[name] = _check_entry(name, entry, len(data))
        regions = sorted((e[2], e[3], n) for n, e in self._entries.items() if e[3] > 0)
        for (o1, n1, a), (o2, _, b) in zip(regions, regions[1:]):
            _require(o1 + n1 <= o2, "arrays %r and %r overlap in the file" % (a, b))

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            dt, shape, offset, nbytes = self._entries[name]
            raw = np.frombuffer(self._data, dtype=dt.newbyteorder("<"), count=nbytes // dt.itemsize, offset=offset)
            arr = self._arrays[name] = raw.reshape(shape).astype(dt, copy=True)
        return arr

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _check_entry(name: str, entry: Any, data_bytes: int) -> Tuple[np.dtype, Tuple[int, ...], int, int]:
    _require(isinstance(entry, dict), "array %r: entry is not an object" % name)
    dtype, shape, offset, nbytes = (entry.get(k) for k in ("dtype", "shape", "offset", "nbytes"))
    _require(isinstance(dtype, str) and dtype in ALLOWED_DTYPES, "array %r: dtype %r is not allowed" % (name, dtype))
    _require(isinstance(shape, list) and all(_int(s) for s in shape), "array %r: bad shape %r" % (name, shape))
    _require(len(shape) <= MAX_ARRAY_NDIM, "array %r: %d dimensions, at most %d allowed" % (name, len(shape), MAX_ARRAY_NDIM))
    _require(all(s <= MAX_ARRAY_DIM for s in shape), "array %r: a dimension of %s exceeds %d" % (name, shape, MAX_ARRAY_DIM))
    span = math.prod(max(s, 1) for s in shape)  # what numpy checks even for an empty array
    _require(span <= MAX_ARRAY_SPAN, "array %r: shape %s exceeds %d values (zeros counted as 1)" % (name, shape, MAX_ARRAY_SPAN))
    for key, value in (("offset", offset), ("nbytes", nbytes)):
        _require(_int(value), "array %r: bad %s" % (name, key))
    dt = np.dtype(dtype)
    _require(math.prod(shape) * dt.itemsize == nbytes, "array %r: shape %s does not match %d bytes" % (name, shape, nbytes))
    _require(offset + nbytes <= data_bytes, "array %r lies beyond the end of the file" % name)
    return dt, tuple(shape), offset, nbytes


def dumps(bundle: AnyBundle) -> bytes:
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


def _records(bundle: AnyBundle) -> List[Any]:
    """Every record of a bundle, nested sparse matrices included, for their own checks."""
    out: List[Any] = [bundle.encoder, bundle.readout]
    if isinstance(bundle, ConvBundle):
        return out + list(bundle.layers)
    for layer in bundle.layers:
        out += [layer, layer.w_in, layer.w_rec]
    return out


def loads(blob: bytes, source: str = "<bytes>") -> AnyBundle:
    """Parse and fully validate bundle bytes; ``source`` names the file in error messages."""
    try:
        manifest, arrays, _checksum = decode_bytes(blob)
        bundle = bundle_from_manifest(manifest, arrays)
    except _Invalid as exc:
        raise BundleError("%s: %s" % (source, exc)) from None
    # the identity is the sha256 of the whole file (what sha256sum, bench and flash compute),
    # not the trailer (the checksum of everything before it): one digest names the model everywhere
    return dataclasses.replace(bundle, sha256=hashlib.sha256(blob).hexdigest())


def save(bundle: AnyBundle, path: Union[str, Path]) -> str:
    """Write atomically (temporary file in the same folder, fsync, rename); returns the sha256 of
    the file written (the bundle's identity, as ``load`` sets it)."""
    path = Path(path)
    blob = dumps(bundle)
    write_atomic(path, blob)
    return hashlib.sha256(blob).hexdigest()


def load(path: Union[str, Path]) -> AnyBundle:
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


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MB pieces (bundles, uploads and bench records name files by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
