"""The board runtime: load a ``.seb`` bundle and run it event-driven, in numpy, without torch.

Python 3.8+, numpy only (checked by the tests). ``bundle`` is the single source of truth of the
file format; ``neuron`` the integer step; ``engine`` the event-driven session.
"""

from .bundle import Bundle, load, save
from .engine import RunResult, Session

__all__ = ["Bundle", "load", "save", "Session", "RunResult"]
