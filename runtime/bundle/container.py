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
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from ...errors import BundleError
from .layers import _Invalid, _require
from .manifest import bundle_from_manifest, bundle_to_manifest
from .models import AnyBundle, ConvBundle

MAGIC = b"\x89SEB\r\n\x1a\n"
ALIGN = 16
DIGEST_BYTES = 32
MAX_MANIFEST_BYTES = 64 << 20
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
