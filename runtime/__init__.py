"""The board runtime: load a ``.seb`` bundle and run it event-driven, in numpy, without torch.

Holds the bundle format, the sessions, kernels, accumulation, encoders and the onnxruntime/TFLite
step-graph backends. May import numpy, the standard library and ``spikeedge.errors`` only.
"""

from .bundle import Bundle, load, save
from .engine import RunResult, Session
from .sessions import open_session

__all__ = ["Bundle", "load", "save", "Session", "RunResult", "open_session"]
