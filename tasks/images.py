"""Image classification data: scikit-learn's 8x8 digits and the MNIST test set (IDX files).

Both are read from local files only: the digits from the copy shipped in ``tasks/data/``
(scikit-learn's own ``digits.csv.gz``, BSD-3, attribution in ``tasks/data/DIGITS-LICENSE.txt``;
read with numpy alone, so a board needs neither scikit-learn nor torch), MNIST from a folder.
Only MNIST's 10,000 test images are available to the project, so ``load_mnist_split`` cuts a
fixed train/test split out of them. Splits use numpy's
legacy ``RandomState``, whose streams numpy keeps identical across versions, so a seed
gives the same split everywhere.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from ..errors import DataError
from .packaged import read_checked

PathLike = Union[str, "os.PathLike[str]"]
Split = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

IDX_LABELS, IDX_IMAGES = 2049, 2051   # unsigned bytes, 1 and 3 dimensions
MNIST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw, told apart by content) as a uint8 array of its shape."""
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("%s: file not found" % name) from None
    except OSError as exc:
        raise DataError("%s: cannot read (%s)" % (name, _one_line(exc))) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError("%s: corrupt gzip data (%s)" % (name, _one_line(exc))) from None
    if len(raw) < 4:
        raise DataError("%s: too short for an IDX header (%d bytes)" % (name, len(raw)))
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in (IDX_LABELS, IDX_IMAGES):
        raise DataError("%s: bad IDX magic number %d (expected %d for labels or %d for images)"
                        % (name, magic, IDX_LABELS, IDX_IMAGES))
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError("%s: truncated IDX header" % name)
    dims = struct.unpack(">%dI" % ndim, raw[4:start])
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - start != size:
        raise DataError("%s: shape %s needs %d data bytes, file has %d"
                        % (name, "x".join(map(str, dims)), size, len(raw) - start))
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims).copy()


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Per class (ascending), shuffle its indices and send the first round(f * count) to test."""
    rng = np.random.RandomState(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(math.floor(test_fraction * len(idx) + 0.5))
        mask[idx[rng.permutation(len(idx))[:k]]] = True
    return mask


# scikit-learn's sklearn/datasets/data/digits.csv.gz (1.9.1), shipped byte for byte.
DIGITS_FILE = ("digits.csv.gz", "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22")


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits, as scikit-learn's ``load_digits()`` gives them: ``images``
    (1797, 8, 8) integer pixels 0..16 and ``target`` (1797,), both int64, in file order.

    Read from the shipped ``digits.csv.gz`` (sha256 checked) with numpy only."""
    name, digest = DIGITS_FILE
    text = gzip.decompress(read_checked(name, digest)).decode("ascii")
    rows = [line.split(",") for line in text.split("\n") if line.strip()]
    if len(rows) != 1797 or any(len(r) != 65 for r in rows):
        raise DataError("%s: expected 1797 rows of 65 values" % name)
    table = np.array(rows, dtype=np.int64)
    images, target = table[:, :64].reshape(-1, 8, 8), table[:, 64].copy()
    if images.min() < 0 or images.max() > 16 or target.min() < 0 or target.max() > 9:
        raise DataError("%s: pixels must be 0..16 and labels 0..9" % name)
    return images, target


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> Split:
    """The 1,797 8x8 digits (``load_digits``), stratified split, both parts in file order.

    Returns ``(x_train, y_train, x_test, y_test)``: float32 images in [0, 1] (pixel / 16),
    shape (n, 8, 8), and int64 labels. fraction 0.25 gives 1,346 train / 451 test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError("load_digits_split: test_fraction must be in (0, 1), got %r"
                        % (test_fraction,))
    images, target = load_digits()
    x = (images.astype(np.float64) / 16.0).astype(np.float32)
    y = target
    test = _stratified_test_mask(y, test_fraction, seed)
    return x[~test], y[~test], x[test], y[test]


def mnist_root(root: Optional[PathLike] = None) -> Path:
    """Folder of the MNIST files: ``root``, else $SPIKEEDGE_MNIST, else ../shared/data/mnist
    from the current directory, else ``shared/data/mnist`` beside the repository root."""
    if root is not None:
        if not Path(root).is_dir():
            raise DataError("%s: MNIST folder not found" % root)
        return Path(root)
    env = os.environ.get("SPIKEEDGE_MNIST")
    if env:
        if not Path(env).is_dir():
            raise DataError("SPIKEEDGE_MNIST=%s: no such folder" % env)
        return Path(env)
    looked = [Path.cwd() / ".." / "shared" / "data" / "mnist",
              Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"]
    for candidate in looked:
        if candidate.is_dir():
            return candidate
    raise DataError("MNIST folder not found (set SPIKEEDGE_MNIST; looked in %s)"
                    % ", ".join(str(p) for p in looked))


def _find(folder: Path, base: str) -> Path:
    for name in (base + ".gz", base):
        if (folder / name).is_file():
            return folder / name
    raise DataError("%s: missing %s(.gz)" % (folder, base))


def load_mnist_split(root: Optional[PathLike] = None, n_train: int = 8000, n_test: int = 2000,
                     seed: int = 0) -> Split:
    """A fixed train/test split of the 10,000 MNIST test images.

    ``perm = RandomState(seed).permutation(10000)``; train = ``perm[:n_train]``, test =
    ``perm[n_train:n_train + n_test]``, each then sorted back into file order. Images are float32
    in [0, 1] (pixel / 255), shape (n, 28, 28); labels int64.
    """
    folder = mnist_root(root)
    images = read_idx(_find(folder, MNIST_FILES[0]))
    labels = read_idx(_find(folder, MNIST_FILES[1]))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError("%s: expected images of shape (n, 28, 28), got %s"
                        % (MNIST_FILES[0], images.shape))
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError("%s: expected %d labels, got shape %s"
                        % (MNIST_FILES[1], len(images), labels.shape))
    if labels.size and labels.max() > 9:
        raise DataError("%s: label %d is not a digit" % (MNIST_FILES[1], labels.max()))
    if n_train < 0 or n_test < 0 or n_train + n_test > len(images):
        raise DataError("load_mnist_split: n_train + n_test must be within 0..%d, got %d + %d"
                        % (len(images), n_train, n_test))
    perm = np.random.RandomState(seed).permutation(len(images))
    parts: List[np.ndarray] = []
    for idx in (np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + n_test])):
        parts += [images[idx].astype(np.float32) / np.float32(255.0), labels[idx].astype(np.int64)]
    return parts[0], parts[1], parts[2], parts[3]


def clutter(images: np.ndarray, seed: int, pieces: int = 6, piece: int = 8, shift: int = 3,
            noise: float = 0.1) -> np.ndarray:
    """Cluttered MNIST (after Mnih et al. 2014, at 28x28): each digit moved by up to ``shift``
    pixels, ``pieces`` random ``piece`` x ``piece`` fragments of *other* images of the same set
    pasted at random places (pixel-wise maximum), plus uniform noise of amplitude ``noise``;
    clipped to [0, 1]. Deterministic in ``seed`` (numpy ``RandomState``). The fragments are
    stroke pieces that look like parts of digits, so the network must find the digit among
    distractors: far harder than MNIST, with nothing downloaded."""
    x = np.asarray(images, np.float32)
    n, h, w = x.shape
    rng = np.random.RandomState(seed)
    out = np.zeros_like(x)
    dy, dx = rng.randint(-shift, shift + 1, size=(2, n))
    for i in range(n):
        out[i] = np.roll(np.roll(x[i], dy[i], axis=0), dx[i], axis=1)
    src = rng.randint(0, n, size=(n, pieces))
    sy, sx = rng.randint(4, h - piece - 3, size=(2, n, pieces))
    ty, tx = rng.randint(0, h - piece + 1, size=(2, n, pieces))
    for i in range(n):
        for k in range(pieces):
            j = src[i, k] if src[i, k] != i else (i + 1) % n
            frag = x[j, sy[i, k] : sy[i, k] + piece, sx[i, k] : sx[i, k] + piece]
            dst = out[i, ty[i, k] : ty[i, k] + piece, tx[i, k] : tx[i, k] + piece]
            np.maximum(dst, frag, out=dst)
    out += noise * rng.rand(n, h, w).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_mnist_clutter_split(root: Optional[PathLike] = None, seed: int = 0) -> Split:
    """``load_mnist_split`` (8,000 / 2,000) with each part cluttered (``clutter``) on its own,
    fragments taken only from the same part (train seed 1, test seed 2)."""
    xtr, ytr, xte, yte = load_mnist_split(root, seed=seed)
    return clutter(xtr, 1), ytr, clutter(xte, 2), yte
