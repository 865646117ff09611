"""Data files shipped inside the package (``tasks/data/``), read with their sha256 checked.

Shipped rather than regenerated or fetched: a board has no scikit-learn and no network, and a
chaotic series regenerated under another numpy drifts (``docs/data.md``). Each file's digest is
written in the module that reads it; a file that does not match is refused, never used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError

DATA_DIR = Path(__file__).resolve().parent / "data"


def read_checked(name: str, sha256: str) -> bytes:
    """The bytes of ``tasks/data/NAME``, after checking that their sha256 is ``sha256``."""
    path = DATA_DIR / name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError("%s: shipped data file missing or unreadable (%s); reinstall spikeedge"
                        % (name, exc.strerror or type(exc).__name__)) from None
    got = hashlib.sha256(raw).hexdigest()
    if got != sha256:
        raise DataError("%s: sha256 %s does not match the shipped %s (file changed or corrupt); "
                        "reinstall spikeedge" % (name, got[:16], sha256[:16]))
    return raw
