"""IDX reading, the MNIST split and the digits split."""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeedge.errors import DataError
from spikeedge.tasks import images, packaged
from spikeedge.tasks.images import load_digits, load_digits_split, load_mnist_split, mnist_root, read_idx

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# The real MNIST files are required (CI has ../shared beside the repository); skipping them
# takes an explicit opt-out, so a missing folder can never pass silently.
needs_mnist = pytest.mark.skipif(
    not MNIST_DIR.is_dir() and os.environ.get("SPIKEEDGE_ALLOW_MISSING_SHARED") == "1",
    reason="../shared/data/mnist is absent and SPIKEEDGE_ALLOW_MISSING_SHARED=1",
)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(">%dI" % array.ndim, *array.shape) + \
        array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n: int, gz: bool) -> np.ndarray:
    """A tiny fake MNIST: image i is filled with value i, label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    imgs = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for base, arr, magic in ((images.MNIST_FILES[0], imgs, 2051),
                             (images.MNIST_FILES[1], labels, 2049)):
        data = idx_bytes(arr, magic)
        if gz:
            (folder / (base + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / base).write_bytes(data)
    return labels


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr, 2051)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 99                                    # the result is an ordinary array


@pytest.mark.parametrize("content, message", [
    (struct.pack(">I", 2052) + b"\0" * 20, "bad IDX magic number 2052"),
    (struct.pack(">II", 2049, 10) + b"\1" * 9, "needs 10 data bytes, file has 9"),
    (struct.pack(">II", 2049, 10) + b"\1" * 11, "needs 10 data bytes, file has 11"),
    (struct.pack(">II", 2051, 5), "truncated IDX header"),
    (b"\0\0", "too short"),
    (gzip.compress(struct.pack(">II", 2049, 3) + b"\1\2\3")[:-6], "corrupt gzip"),
])
def test_read_idx_rejects_malformed(tmp_path, content, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith("bad.idx: ") and "\n" not in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: file not found"):
        read_idx(tmp_path / "nope.gz")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_split_on_synthetic_files(tmp_path, gz):
    labels = write_mnist(tmp_path / "m", 50, gz)
    x_tr, y_tr, x_te, y_te = load_mnist_split(tmp_path / "m", n_train=30, n_test=15, seed=3)
    assert x_tr.shape == (30, 28, 28) and x_te.shape == (15, 28, 28)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    ids_tr = np.rint(x_tr[:, 0, 0] * 255).astype(int)    # image i holds value i
    ids_te = np.rint(x_te[:, 0, 0] * 255).astype(int)
    assert not set(ids_tr) & set(ids_te)
    assert list(ids_tr) == sorted(ids_tr)
    np.testing.assert_array_equal(y_tr, labels[ids_tr])
    perm = np.random.RandomState(3).permutation(50)     # the documented recipe
    np.testing.assert_array_equal(ids_te, np.sort(perm[30:45]))
    with pytest.raises(DataError, match="n_train \\+ n_test"):
        load_mnist_split(tmp_path / "m", n_train=40, n_test=11)


def test_mnist_inconsistent_files(tmp_path):
    write_mnist(tmp_path, 20, gz=False)
    (tmp_path / images.MNIST_FILES[1]).write_bytes(idx_bytes(np.zeros(19, np.uint8), 2049))
    with pytest.raises(DataError, match="expected 20 labels"):
        load_mnist_split(tmp_path, 10, 5)
    (tmp_path / images.MNIST_FILES[1]).unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist_split(tmp_path, 10, 5)


def test_mnist_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEEDGE_MNIST", str(tmp_path))
    assert mnist_root() == tmp_path
    monkeypatch.setenv("SPIKEEDGE_MNIST", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="SPIKEEDGE_MNIST="):
        mnist_root()
    with pytest.raises(DataError, match="MNIST folder not found"):
        mnist_root(tmp_path / "absent")
    monkeypatch.delenv("SPIKEEDGE_MNIST")
    # From a directory with a ../shared/data/mnist beside it.
    (tmp_path / "shared" / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert mnist_root().resolve() == (tmp_path / "shared" / "data" / "mnist").resolve()


@needs_mnist
def test_real_mnist_files():
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    imgs = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert imgs.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert list(labels[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(labels)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert imgs.max() == 255 and imgs.mean() == pytest.approx(33.79, abs=0.01)


@needs_mnist
def test_real_mnist_split_is_fixed():
    x_tr, y_tr, x_te, y_te = load_mnist_split(MNIST_DIR)
    assert x_tr.shape == (8000, 28, 28) and x_te.shape == (2000, 28, 28)
    assert 0.0 <= x_tr.min() and x_tr.max() == 1.0
    # Pinned so that a change of the recipe shows: the test part's class counts for seed 0.
    assert list(np.bincount(y_te)) == [191, 205, 217, 195, 209, 179, 190, 217, 200, 197]
    assert list(y_te[:10]) == [7, 0, 6, 0, 7, 0, 2, 7, 2, 5]
    again = load_mnist_split(MNIST_DIR)
    np.testing.assert_array_equal(again[3], y_te)
    other = load_mnist_split(MNIST_DIR, seed=1)
    assert not np.array_equal(other[3], y_te)


def test_digits_split():
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1346, 8, 8) and x_te.shape == (451, 8, 8)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    # Stratified: every class sends round(0.25 * count) images to test.
    counts = np.bincount(np.concatenate([y_tr, y_te]))
    np.testing.assert_array_equal(np.bincount(y_te), np.floor(0.25 * counts + 0.5))
    again = load_digits_split()
    np.testing.assert_array_equal(again[2], x_te)
    assert not np.array_equal(load_digits_split(seed=1)[2], x_te)
    with pytest.raises(DataError, match="test_fraction"):
        load_digits_split(test_fraction=1.0)


def test_digits_need_no_scikit_learn(monkeypatch):
    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)   # import sklearn now fails
    images_, target = load_digits()
    assert images_.shape == (1797, 8, 8) and target.shape == (1797,)
    assert images_.dtype == np.int64 and images_.min() == 0 and images_.max() == 16
    # Pinned from scikit-learn's load_digits(): the class counts and the first labels.
    assert list(np.bincount(target)) == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert list(target[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert int(images_.sum()) == 561718
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert list(np.bincount(y_te)) == [45, 46, 44, 46, 45, 46, 45, 45, 44, 45]   # docs/data.md


def test_digits_equal_scikit_learns():
    """Where scikit-learn is installed: the same file, byte for byte, and the same arrays."""
    sk = pytest.importorskip("sklearn.datasets")
    import hashlib

    shipped = (packaged.DATA_DIR / images.DIGITS_FILE[0]).read_bytes()
    theirs = (Path(sk.__file__).parent / "data" / "digits.csv.gz").read_bytes()
    assert hashlib.sha256(theirs).hexdigest() == hashlib.sha256(shipped).hexdigest() == images.DIGITS_FILE[1]
    ref = sk.load_digits()
    ours, target = load_digits()
    np.testing.assert_array_equal(ours, ref.images)
    np.testing.assert_array_equal(target, ref.target)


def test_digits_checksum_is_enforced(tmp_path, monkeypatch):
    name = images.DIGITS_FILE[0]
    raw = bytearray((packaged.DATA_DIR / name).read_bytes())
    raw[100] ^= 1
    (tmp_path / name).write_bytes(bytes(raw))
    monkeypatch.setattr(packaged, "DATA_DIR", tmp_path)
    with pytest.raises(DataError, match="digits.csv.gz: sha256 .* does not match"):
        load_digits_split()
