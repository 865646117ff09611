"""One array of an ``.npz`` archive, checked from its ``.npy`` header before any data is read, and
read whole or in chunks along its first axis (numpy and the standard library only: the board's
``spikeedge run`` uses it).

Before reading: the member exists; the header is npy version 1 or 2 (version 3 only exists for
structured dtypes); the dtype is a plain real number or bool (structured, complex, string, object
and datetime arrays are refused, never coerced); the declared ``shape x itemsize`` equals the
bytes the archive holds for the member (its uncompressed size, which zip inflation never
exceeds); an array read whole is at most ``MAX_ARRAY_BYTES``. A chunk holds ``rows`` entries of
the first axis, so a stored or deflated member of any size streams in bounded memory.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any, Iterator, Tuple

import numpy as np

from ..errors import DataError

MAX_ARRAY_BYTES = 2 << 30  # an input array read whole (a run streams larger ones in chunks)
MAX_HEADER_BYTES = 10_000  # numpy's own limit for npy headers


class NpzArray:
    """``key`` of the archive at ``path``: ``shape``, ``dtype`` and the readers; ``DataError``
    with a one-line reason naming the file otherwise."""

    def __init__(self, path: Path, key: str, expected: str = "", label: str = "") -> None:
        self.path, self.key = Path(path), key
        name = self.label = label or str(self.path)
        if not self.path.exists():
            raise DataError("%s: no such file" % name)
        if not self.path.is_file() or not zipfile.is_zipfile(str(self.path)):
            raise DataError("%s: not an .npz archive (save with numpy.savez)" % name)
        try:
            with zipfile.ZipFile(str(self.path)) as zf:
                self.info = zf.getinfo(key + ".npy")
                with zf.open(self.info) as f:
                    self.shape, self.fortran, self.dtype = _header(f)
                    self._data_start = f.tell()
        except KeyError:
            raise DataError("%s: missing array '%s'%s" % (name, key, " (%s)" % expected if expected else "")) from None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise DataError("%s: array '%s' is unreadable (%s)" % (name, key, _line(exc))) from None
        dt = self.dtype
        if dt.hasobject:
            raise DataError("%s: holds pickled object arrays, which are refused" % name)
        if dt.fields is not None or dt.subdtype is not None or dt.kind not in "biuf":
            raise DataError("%s: array '%s' has dtype %s, expected numbers (real, not complex or structured)" % (name, key, _dtype_name(dt)))
        self.nbytes = math.prod(self.shape) * dt.itemsize
        held = self.info.file_size - self._data_start
        if held != self.nbytes:
            raise DataError("%s: array '%s' declares shape %s (%d bytes) but the archive holds %d" % (name, key, self.shape, self.nbytes, held))

    def read(self) -> np.ndarray:
        """The whole array (at most ``MAX_ARRAY_BYTES``)."""
        if self.nbytes > MAX_ARRAY_BYTES:
            raise DataError("%s: array '%s' of shape %s is %d bytes, over the limit of %d read at once" % (self.label, self.key, self.shape, self.nbytes, MAX_ARRAY_BYTES))
        with self._open() as f:
            data = _read_exactly(f, self.nbytes, self)
        return np.frombuffer(data, self.dtype).reshape(self.shape, order="F" if self.fortran else "C").copy()

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Consecutive pieces of at most ``rows`` entries of the first axis (a Fortran-order
        array is read whole, within ``MAX_ARRAY_BYTES``)."""
        if self.fortran or len(self.shape) == 0:
            arr = self.read()
            for i in range(0, len(arr) if arr.ndim else 1, rows):
                yield arr[i : i + rows] if arr.ndim else arr
            return
        row_shape = self.shape[1:]
        row_bytes = math.prod(row_shape) * self.dtype.itemsize
        with self._open() as f:
            for i in range(0, self.shape[0], rows):
                k = min(rows, self.shape[0] - i)
                data = _read_exactly(f, k * row_bytes, self)
                yield np.frombuffer(data, self.dtype).reshape((k,) + row_shape)

    def _open(self) -> Any:
        zf = zipfile.ZipFile(str(self.path))
        f = zf.open(self.info)
        f.read(self._data_start)  # the header, already checked
        return _Closing(zf, f)


class _Closing:
    def __init__(self, zf: zipfile.ZipFile, f: Any) -> None:
        self.zf, self.f = zf, f

    def __enter__(self) -> Any:
        return self.f

    def __exit__(self, *exc: Any) -> None:
        self.f.close()
        self.zf.close()


def _header(f: Any) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
    raise ValueError("npy format version %d.%d is not read (structured dtypes are refused)" % version)


def _read_exactly(f: Any, n: int, arr: NpzArray) -> bytes:
    try:
        data = f.read(n)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError("%s: array '%s' is unreadable (%s)" % (arr.label, arr.key, _line(exc))) from None
    if len(data) != n:
        raise DataError("%s: array '%s' is truncated" % (arr.label, arr.key))
    return data


def _dtype_name(dt: np.dtype) -> str:
    return "structured" if dt.fields is not None else str(dt)


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
