"""One way to open a session of any bundle kind: ``open_session(bundle)``.

A bundle runs on the compiled core where ``cores.choose`` allows it (recurrent:
``compiled.CompiledSession``; convolutional: ``conv_compiled.CompiledConvSession``), else on the
numpy core (``engine.Session``; ``conv_session.ConvSession``). All have the same interface (``start``/``step``/``run``/``result``).
Callers never pick the class themselves, so no session module needs to know another.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from .conv_session import ConvSession
from .cores import choose
from .engine import Session

AnySession = Union[Session, ConvSession]


def open_session(bundle: Any, batch: int = 1, record_spikes: bool = False, core: Optional[str] = None, **options: Any) -> AnySession:
    """A session for ``bundle`` (a loaded ``Bundle`` or ``ConvBundle``) with ``batch`` streams.

    ``core``: ``auto`` (default; ``$SPIKEEDGE_CORE`` when set), ``compiled`` or ``numpy``
    (``runtime/cores.py``). ``options`` go to the session class (``method`` for conv bundles:
    auto, event or dense).
    """
    if getattr(bundle, "model", None) == "conv":
        if choose(bundle, core)[0] == "compiled":
            from .conv_compiled import CompiledConvSession

            return CompiledConvSession(bundle, batch, record_spikes, **options)
        return ConvSession(bundle, batch, record_spikes, **options)
    if choose(bundle, core)[0] == "compiled":
        from .compiled import CompiledSession

        return CompiledSession(bundle, batch, record_spikes, core=core, **options)
    return Session(bundle, batch, record_spikes, core=core, **options)


__all__ = ["open_session", "AnySession", "Session", "ConvSession"]
