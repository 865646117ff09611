"""Which core runs a session: the compiled one (``runtime/_core.c``, glue in ``runtime/compiled.py``,
for recurrent bundles; ``runtime/_conv_core.c``, glue in ``runtime/conv_compiled.py``, for conv
bundles) or numpy (``runtime/engine.py``, ``runtime/conv_session.py``), and why.

``SPIKEEDGE_CORE`` (or ``Session(..., core=...)``) picks: ``auto`` (the default: compiled when
the extension loads and supports the bundle), ``numpy``, or ``compiled`` (an error when it
cannot run, so that a comparison never silently measures the wrong core).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import SpikeedgeError

try:
    from . import _core
    LOAD_ERROR: Optional[str] = None
except ImportError as exc:  # not built (no compiler at install time) or built for another Python
    _core = None
    LOAD_ERROR = "the compiled core is not built here (%s)" % exc

try:  # a second extension, built and loaded on its own: either may be absent
    from . import _conv_core
    CONV_LOAD_ERROR: Optional[str] = None
except ImportError as exc:
    _conv_core = None
    CONV_LOAD_ERROR = "the compiled conv core is not built here (%s)" % exc

ENV = "SPIKEEDGE_CORE"
CORES = ("auto", "numpy", "compiled")
ENCODERS = {"encoder.direct": 0, "encoder.rate": 1, "encoder.delta": 2}
INT32_LIMIT = (1 << 31) - 1
# The conv layer kinds the compiled conv core (runtime/_conv_core.c) runs. A bundle with any
# other kind (``sum_pool``, say, added for NIR imports) falls back to numpy, and ``choose``
# reports which kind made it so.
COMPILED_CONV_KINDS: Tuple[str, ...] = ("conv_lif", "maxpool", "flatten", "linear_lif", "conv_stream", "stream_lif", "global_sum_pool")


class CoreUnavailable(SpikeedgeError):
    """The compiled core was required (``SPIKEEDGE_CORE=compiled``) but cannot run this bundle."""


def requested(core: Optional[str] = None) -> str:
    """The core asked for: the argument, else ``SPIKEEDGE_CORE``, else ``auto``."""
    want = core or os.environ.get(ENV, "") or "auto"
    if want not in CORES:
        raise SpikeedgeError("%s=%r: expected one of %s" % (ENV, want, ", ".join(CORES)))
    return want


def unsupported(bundle: Any) -> Optional[str]:
    """Why the compiled core cannot run ``bundle`` (None: it can)."""
    if getattr(getattr(bundle, "readout", None), "taps", (0,)) != (0,):
        return "a readout with delayed taps (the compiled core reads the current traces only)"
    if getattr(bundle, "model", None) == "conv":  # its own extension: either may be absent
        return conv_unsupported(bundle)
    if LOAD_ERROR is not None:
        return LOAD_ERROR
    if len(bundle.layers) > 8:
        return "more than 8 layers"
    if bundle.encoder.kind not in ENCODERS:
        return "encoder %s" % bundle.encoder.kind
    for layer in bundle.layers:
        for w in (layer.w_in, layer.w_rec):
            if w.nnz > INT32_LIMIT:
                return "more than 2**31 weights in one matrix"
        for m in (layer.m_in, layer.m_rec):
            if m.size and int(np.max(m)) > INT32_LIMIT:
                return "a requantisation multiplier beyond int32"
    if bundle.encoder.kind == "encoder.direct":  # signed inputs: peak * sum|w| per target must fit int32
        w = bundle.layers[0].w_in
        per_target = np.bincount(w.indices.astype(np.int64), np.abs(w.values.astype(np.int64)), minlength=w.n_targets)
        if per_target.size and float(per_target.max()) * _qmax(bundle.encoder) > INT32_LIMIT:
            return "the direct input's accumulation could leave int32"
    return None


CONV_MAX_LAYERS = 128  # runtime/_conv_core.c's MAX_LAYERS


def conv_unsupported(bundle: Any) -> Optional[str]:
    """Why the compiled conv core cannot run the conv ``bundle`` (None: it can): the extension is
    absent, or a layer kind it lacks (every valid bundle's arithmetic fits it: the load check bounds
    each accumulation by int32)."""
    if CONV_LOAD_ERROR is not None:
        return CONV_LOAD_ERROR
    layers = getattr(bundle, "layers", None)
    if not layers:
        return "a conv bundle without layers"
    if len(layers) > CONV_MAX_LAYERS:
        return "more than %d conv layers" % CONV_MAX_LAYERS
    lacking = sorted({layer.kind for layer in layers} - set(COMPILED_CONV_KINDS))
    if lacking:
        return "the compiled conv core lacks layer kind %s" % ", ".join(lacking)
    return None


def choose(bundle: Any, core: Optional[str] = None) -> Tuple[str, str]:
    """(``compiled`` or ``numpy``, why); raises ``CoreUnavailable`` when ``compiled`` was required
    and cannot run."""
    want = requested(core)
    if want == "numpy":
        return "numpy", "requested"
    why = unsupported(bundle)
    if why is None:
        return "compiled", "requested" if want == "compiled" else "auto"
    if want == "compiled":
        raise CoreUnavailable("the compiled core cannot run this model: %s" % why)
    return "numpy", why


def _qmax(encoder: Any) -> int:
    return (1 << (encoder.bits - 1)) - 1


__all__ = ["CoreUnavailable", "choose", "conv_unsupported", "requested", "unsupported", "COMPILED_CONV_KINDS", "LOAD_ERROR", "CONV_LOAD_ERROR", "ENV", "CORES"]
