"""Read the metadata entries of a TFLite model (``Model.metadata``: name -> bytes of a buffer)
with ``struct`` alone.

Every board interpreter (ai-edge-litert, tflite-runtime) runs a model but none exposes its
metadata, and tflite-runtime ships no schema code; walking the few flatbuffer tables involved
by hand keeps the board install at numpy. Field slots follow ``schema.fbs`` of TFLite:
Model.buffers is field 4 and Model.metadata field 6; Metadata.name 0, Metadata.buffer 1;
Buffer.data 0 (inline bytes) or Buffer.offset 1 / size 2 (bytes past the flatbuffer).
"""

from __future__ import annotations

import struct
from typing import Dict, Optional

MODEL_BUFFERS, MODEL_METADATA = 4, 6
META_NAME, META_BUFFER = 0, 1
BUF_DATA, BUF_OFFSET, BUF_SIZE = 0, 1, 2


class _Table:
    def __init__(self, blob: bytes, pos: int) -> None:
        if pos + 4 > len(blob):
            raise ValueError("table at %d lies past the end" % pos)
        self.blob, self.pos = blob, pos
        vt = pos - struct.unpack_from("<i", blob, pos)[0]
        if not 0 <= vt < len(blob) - 4:
            raise ValueError("bad vtable offset")
        self.vt = vt
        self.vt_len = struct.unpack_from("<H", blob, vt)[0]

    def field(self, slot: int) -> Optional[int]:
        """Absolute position of field ``slot``'s value, or None when absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_len:
            return None
        off = struct.unpack_from("<H", self.blob, self.vt + entry)[0]
        return self.pos + off if off else None

    def ref(self, slot: int) -> Optional[int]:
        at = self.field(slot)
        return None if at is None else at + struct.unpack_from("<I", self.blob, at)[0]

    def u32(self, slot: int, default: int = 0) -> int:
        at = self.field(slot)
        return default if at is None else struct.unpack_from("<I", self.blob, at)[0]

    def u64(self, slot: int, default: int = 0) -> int:
        at = self.field(slot)
        return default if at is None else struct.unpack_from("<Q", self.blob, at)[0]


def _vector(blob: bytes, at: int) -> range:
    n = struct.unpack_from("<I", blob, at)[0]
    if n > len(blob):
        raise ValueError("vector longer than the file")
    return range(n)


def read_metadata(blob: bytes) -> Dict[str, bytes]:
    """All metadata entries of the TFLite flatbuffer ``blob``; ``ValueError`` if it is not one."""
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    try:
        model = _Table(blob, struct.unpack_from("<I", blob, 0)[0])
        meta_vec, buf_vec = model.ref(MODEL_METADATA), model.ref(MODEL_BUFFERS)
        if meta_vec is None or buf_vec is None:
            return {}
        n_buffers = len(_vector(blob, buf_vec))
        out: Dict[str, bytes] = {}
        for i in _vector(blob, meta_vec):
            at = meta_vec + 4 + 4 * i
            entry = _Table(blob, at + struct.unpack_from("<I", blob, at)[0])
            name_at = entry.ref(META_NAME)
            if name_at is None:
                continue
            n = struct.unpack_from("<I", blob, name_at)[0]
            name = blob[name_at + 4 : name_at + 4 + n].decode("utf-8")
            index = entry.u32(META_BUFFER)
            if index >= n_buffers:
                raise ValueError("metadata %r names buffer %d of %d" % (name, index, n_buffers))
            at = buf_vec + 4 + 4 * index
            buf = _Table(blob, at + struct.unpack_from("<I", blob, at)[0])
            data_at = buf.ref(BUF_DATA)
            if data_at is not None:
                size = struct.unpack_from("<I", blob, data_at)[0]
                out[name] = bytes(blob[data_at + 4 : data_at + 4 + size])
            else:
                offset, size = buf.u64(BUF_OFFSET), buf.u64(BUF_SIZE)
                out[name] = bytes(blob[offset : offset + size])
        return out
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError("malformed flatbuffer (%s)" % exc) from None
