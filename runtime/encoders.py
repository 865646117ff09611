"""Input encoders: turn a real-valued input frame into what the first layer receives.

Each encoder is a pure step function ``encode(x, state) -> (events, new_state)`` written once, in
numpy, and used by the runtime and by offline training alike, so both sides see identical events.
``events`` is int32 (batch, channels): 0/1 spikes for ``rate`` and ``delta``, signed fixed-point
values for ``direct`` (the input current, ``events * scale``).
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np


def encode_direct(x: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """Direct current: ``round(x / scale)`` clipped to a signed ``bits``-bit integer."""
    qmax = (1 << (bits - 1)) - 1
    q = np.round(np.asarray(x, dtype=np.float64) / scale)
    return np.clip(q, -qmax, qmax).astype(np.int32)


def encode_rate(x: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Rate (Bernoulli) code: a spike with probability ``clip(gain * x, 0, 1)`` per step.

    The generator is the explicit state; seeded, it makes the spike trains reproducible.
    """
    p = np.clip(gain * np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return (rng.random(p.shape) < p).astype(np.int32)


def encode_delta(x: np.ndarray, ref: np.ndarray, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Delta / level-crossing code with an up and a down channel per input.

    A channel spikes when the input has moved by at least ``threshold`` from the last
    reference level; the reference then moves by the whole number of levels crossed.
    Returns (events (batch, 2 * n_inputs) as [up..., down...], new reference).
    """
    x = np.asarray(x, dtype=np.float64)
    levels = np.trunc((x - ref) / threshold)
    events = np.concatenate([levels > 0, levels < 0], axis=-1).astype(np.int32)
    return events, ref + levels * threshold


class Encoder:
    """Stateful wrapper over one encoder kind described by a bundle's encoder record."""

    def __init__(self, spec: Any, batch: int) -> None:
        self.spec = spec
        self.kind = spec.kind.rsplit(".", 1)[-1]  # "encoder.direct" -> "direct"
        self.batch = batch
        self.reset()

    @property
    def n_channels(self) -> int:
        return self.spec.n_inputs * (2 if self.kind == "delta" else 1)

    def reset(self, first_frame: Any = None) -> None:
        """Back to the initial state; a delta encoder starts its reference at ``first_frame``."""
        if self.kind == "rate":
            self.rng = np.random.default_rng(self.spec.seed)
            shape = (self.batch, self.spec.n_inputs)
            self._u, self._p, self._spikes = np.empty(shape), np.empty(shape), np.empty(shape, bool)
        elif self.kind == "delta":
            shape = (self.batch, self.spec.n_inputs)
            self.ref = np.zeros(shape) if first_frame is None else np.array(first_frame, np.float64).reshape(shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The events of one frame, a new int32 array."""
        return np.asarray(self.encode_into(x), np.int32)

    def encode_into(self, x: np.ndarray) -> np.ndarray:
        """The events of one frame; a rate code returns the encoder's own bool buffer, which the
        next call overwrites (the runtime's allocation-free path)."""
        if self.kind == "direct":
            return encode_direct(x, self.spec.scale, self.spec.bits)
        if self.kind == "rate":
            return self._rate_in_place(x)
        events, self.ref = encode_delta(x, self.ref, self.spec.threshold)
        return events

    def _rate_in_place(self, x: np.ndarray) -> np.ndarray:
        """``encode_rate`` into preallocated buffers, as bool spikes: the same uniform draws
        (``Generator.random`` with ``out``), and no clipping, since ``u < p`` with ``u`` in [0, 1)
        already treats ``p > 1`` as 1 and ``p < 0`` as 0. Held to ``encode_rate`` by the tests."""
        np.multiply(np.asarray(x, np.float64).reshape(self._p.shape), self.spec.gain, out=self._p)
        self.rng.random(out=self._u)
        return np.less(self._u, self._p, out=self._spikes)
