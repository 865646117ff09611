"""The bundle-corruption tests' base (tests/test_bundle_corruption.py,
tests/test_bundle_manifest.py): a small valid bundle, its parts, re-signed framing, and the check
that a damaged copy is refused with one line naming the file (library and CLI)."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest

from spikeedge.cli.app import main
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import Bundle, DeltaEncoder, DirectEncoder, LifRecurrentLayer, RateEncoder, SparseMatrix, TraceReadout
from spikeedge.errors import BundleError


N_IN, N, N_OUT = 3, 6, 2  # the base bundle's sizes: 3 inputs, 6 neurons, 2 outputs


def base_bundle(encoder: str = "direct", reset: str = "subtract") -> Bundle:
    """A small valid bundle with dense (no zero) weights, so indptr is [0, 6, 12, ...]."""
    rng = np.random.RandomState(0)
    enc: Any = {
        "direct": DirectEncoder(N_IN, 0.05, 16),
        "rate": RateEncoder(N_IN, 0.8, 1234),
        "delta": DeltaEncoder(N_IN, 0.1),
    }[encoder]
    n_ch = N_IN * (2 if encoder == "delta" else 1)
    nonzero = lambda shape: (rng.randint(1, 100, shape) * rng.choice([-1, 1], shape)).astype(np.int8)  # noqa: E731
    layer = LifRecurrentLayer(
        name="hidden",
        n=N,
        reset=reset,
        w_in=SparseMatrix.from_dense(nonzero((N, n_ch))),
        w_rec=SparseMatrix.from_dense(nonzero((N, N))),
        a_syn=np.full(N, 52000, np.int32),
        a_mem=np.full(N, 60000, np.int32),
        m_in=np.full(N, 3000, np.int64),
        m_rec=np.full(N, 2000, np.int64),
        bias=np.arange(N, dtype=np.int32) * 100,
        w_in_scale=np.full(N, 0.01),
        w_rec_scale=np.full(N, 0.02),
    )
    readout = TraceReadout("readout", N, N_OUT, 12, np.full(N, 58000, np.int32), nonzero((N_OUT, N)), np.full(N_OUT, 0.003), np.zeros(N_OUT))
    return Bundle(enc, (layer,), readout, output="sequence", provenance={"model": "test", "nested": {"a": [1, {"b": None}]}})


def base_parts(encoder: str = "direct", reset: str = "subtract") -> Tuple[dict, Dict[str, np.ndarray]]:
    """A fresh, editable (manifest, arrays) pair of the base bundle."""
    manifest, arrays = fmt.bundle_to_manifest(base_bundle(encoder, reset))
    return copy.deepcopy(manifest), {k: v.copy() for k, v in arrays.items()}


def split(blob: bytes) -> Tuple[dict, bytes]:
    """(manifest with its array table, data region) of valid bundle bytes."""
    (length,) = struct.unpack("<I", blob[8:12])
    return json.loads(blob[12 : 12 + length]), blob[12 + length : -32]


def frame(text: Any, data: bytes = b"", magic: bytes = fmt.MAGIC, length: Optional[int] = None) -> bytes:
    """Bundle bytes from a manifest (a dict, dumped as JSON with NaN allowed, or raw bytes) and a
    data region, signed with a valid sha256: the layout of ``encode_bytes`` with a hand-made table."""
    if not isinstance(text, bytes):
        text = json.dumps(text, sort_keys=True, separators=(",", ":")).encode("utf-8")
    body = magic + struct.pack("<I", len(text) if length is None else length) + text + data
    return body + hashlib.sha256(body).digest()


def refused(tmp_path, capsys, blob: Optional[bytes], fragment: Any = None, path=None) -> str:
    """Assert ``load`` and ``spikeedge info`` refuse the file; returns the message.

    ``fragment``: a string, or a tuple of alternatives, that the message must contain."""
    if path is None:
        path = tmp_path / "broken-model.seb"
        path.write_bytes(blob)
    with pytest.raises(BundleError) as info:
        fmt.load(path)
    message = str(info.value)
    assert message and message.splitlines() == [message], "not one line: %r" % message
    assert message.startswith(str(path) + ": "), message
    if fragment is not None:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(f in message for f in options), "%r does not mention %r" % (message, fragment)
    if blob is not None:  # the same refusal from bytes, with the caller's source name
        with pytest.raises(BundleError, match="^elsewhere.seb: "):
            fmt.loads(blob, "elsewhere.seb")
    capsys.readouterr()
    rc = main(["info", str(path)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("error:") and path.name in lines[0], err
    assert "Traceback" not in err
    return message
