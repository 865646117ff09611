"""Skips that CI turns into failures.

A few tests need tools from the system rather than from pip: gcc's sanitizer runtime, the
emulated arm64 board (qemu, debootstrap), the compiled cores built by ``pip install``. On a
developer's machine without them they skip; ``.ci/run`` installs every one and sets
``SPIKEEDGE_REQUIRE_ALL=1``, so there a missing tool fails the run instead of passing silently.
"""

from __future__ import annotations

import os

import pytest


def required() -> bool:
    """Whether this run promised every system tool (``SPIKEEDGE_REQUIRE_ALL=1``, set by CI)."""
    return os.environ.get("SPIKEEDGE_REQUIRE_ALL") == "1"


def skip_unless_required(reason: str) -> None:
    """Skip with ``reason``, or fail with it where the run promised every tool."""
    if required():
        pytest.fail("SPIKEEDGE_REQUIRE_ALL=1 but %s" % reason)
    pytest.skip(reason)
