"""Fixed-point constants and helpers shared by the runtime and the offline integer reference.

Units are time steps everywhere (a decay of ``exp(-1/tau)`` per step, ``tau`` in steps).
The integer model (``docs/quantization.md``) keeps every neuron state in int32 with one common
scale per layer, chosen so that the firing threshold is the integer ``THRESHOLD`` exactly: the
threshold never moves when a model is quantized. Decays are Q16 multipliers; int32 synaptic
accumulations are brought to the state scale by a per-neuron Q16 multiplier.
"""

from __future__ import annotations

import numpy as np

THRESHOLD_BITS = 14
THRESHOLD = 1 << THRESHOLD_BITS  # the firing threshold in state units
DECAY_BITS = 16  # leaks are multipliers round(decay * 2**DECAY_BITS)
REQUANT_BITS = 16  # accumulations are rescaled by round(scale_ratio * 2**REQUANT_BITS)
TRACE_BITS = 12  # a spike adds 2**TRACE_BITS to its exponential trace
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def rshift_round(x: np.ndarray, bits: int) -> np.ndarray:
    """Arithmetic right shift by ``bits`` rounding half up: ``floor(x / 2**bits + 1/2)``.

    ``x`` must be int64; the result is int64. Written once here so that every path uses the
    same rounding (numpy's ``>>`` on signed integers is an arithmetic shift, like torch's).
    """
    return (x + (1 << (bits - 1))) >> bits


def saturate32(x: np.ndarray) -> np.ndarray:
    """Clip an int64 array to the int32 range (saturating arithmetic, never wrap-around)."""
    return np.clip(x, INT32_MIN, INT32_MAX)


def decay_to_q16(decay: np.ndarray) -> np.ndarray:
    """A per-step decay factor in [0, 1] as a Q16 integer multiplier (int32)."""
    d = np.asarray(decay, dtype=np.float64)
    return np.round(d * (1 << DECAY_BITS)).astype(np.int32)
