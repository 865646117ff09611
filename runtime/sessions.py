"""One way to open a session of any bundle kind: ``open_session(bundle)``.

A recurrent bundle runs on ``engine.Session``, a convolutional one on ``conv_session.ConvSession``;
both have the same interface (``start``/``step``/``run``/``result``). Callers never pick the
class themselves, so neither session module needs to know the other.
"""

from __future__ import annotations

from typing import Any, Union

from .conv_session import ConvSession
from .engine import Session

AnySession = Union[Session, ConvSession]


def open_session(bundle: Any, batch: int = 1, record_spikes: bool = False, **options: Any) -> AnySession:
    """A session for ``bundle`` (a loaded ``Bundle`` or ``ConvBundle``) with ``batch`` streams.

    ``options`` go to the session class (``method`` for conv bundles: auto, event or dense).
    """
    if getattr(bundle, "model", None) == "conv":
        return ConvSession(bundle, batch, record_spikes, **options)
    return Session(bundle, batch, record_spikes, **options)


__all__ = ["open_session", "AnySession", "Session", "ConvSession"]
