"""NIR neuron nodes in spikeedge's terms (forward Euler at ``dt``), and the weights of weighted
nodes: what the two mappings (``nir_hrsnn.py``, ``nir_folded.py``) share. The conventions are
in ``offline/nir_import.py``'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import ModelError
from .nir_graph import Link

GAIN_EXACT = 1e-6  # a gain within this of 1 is 1: the float32 rounding of tau and r in the file


@dataclass
class Neuron:
    """A NIR neuron node in spikeedge's terms, per neuron (arrays of the node's shape)."""

    name: str
    alpha: np.ndarray  # synaptic decay per step (0: no synaptic current)
    beta: np.ndarray  # membrane decay per step
    gain: np.ndarray  # what the weighted input is multiplied by (dt r / tau ...)
    drive: np.ndarray  # constant input per step after the gain (v_leak's share)
    threshold: np.ndarray  # v_threshold (1 for the non-spiking LI and I)
    spiking: bool = True

    def normalised(self, uniform: bool) -> "tuple[np.ndarray, np.ndarray, float]":
        """(gain, drive, threshold): as they are when the threshold is ``uniform`` (one value for
        the whole layer), else divided by each neuron's threshold, which becomes 1 (exact in
        real numbers: each neuron's state scaled by a positive constant)."""
        thr = np.asarray(self.threshold, np.float64)
        if uniform and np.unique(thr).size == 1:
            return self.gain, self.drive, float(thr.reshape(-1)[0])
        return self.gain / thr, self.drive / thr, 1.0


def _arr(node: Any, name: str, default: float = 0.0) -> np.ndarray:
    v = getattr(node, name, None)
    return np.asarray(default if v is None else v, np.float64)


def _snap(gain: np.ndarray) -> np.ndarray:
    return np.where(np.abs(gain - 1.0) <= GAIN_EXACT, 1.0, gain)


def _decay(link: Link, tau: np.ndarray, dt: float, what: str, raw: Any = None) -> np.ndarray:
    if not np.all(np.isfinite(tau)) or np.any(tau <= 0):
        raise ModelError("node %r (%s): %s must be finite and > 0" % (link.name, link.type, what))
    if np.any(tau < dt):
        raise ModelError("node %r (%s): %s %.3g is shorter than dt %.3g: forward Euler would decay below zero (pass a smaller --dt)"
                         % (link.name, link.type, what, float(np.min(tau)), dt))
    decay = 1.0 - dt / tau
    if raw is None or np.asarray(raw).dtype != np.float64:  # a float32 tau: the decay to the file's precision (snnTorch's 0.8 stays 0.8f)
        decay = np.asarray(np.float32(decay), np.float64)
    return decay


def neuron(link: Link, dt: float) -> Neuron:
    """The Euler-stepped form of a neuron node; ``ModelError`` for what spikeedge cannot run."""
    node, t = link.node, link.type
    if t in ("LIF", "CubaLIF", "IF"):
        if np.any(_arr(node, "v_reset") != 0):
            raise ModelError("node %r (%s): v_reset is not 0; spikeedge's neurons reset to 0" % (link.name, t))
        thr = _arr(node, "v_threshold")
        if np.any(thr <= 0) or not np.all(np.isfinite(thr)):
            raise ModelError("node %r (%s): v_threshold must be finite and > 0" % (link.name, t))
    if t == "LIF":
        tau = _arr(node, "tau")
        beta = _decay(link, tau, dt, "tau", node.tau)
        return Neuron(link.name, np.zeros_like(beta), beta, _snap(dt * _arr(node, "r") / tau), dt / tau * _arr(node, "v_leak"), thr)
    if t == "IF":
        r = _arr(node, "r")
        return Neuron(link.name, np.zeros_like(r), np.ones_like(r), _snap(dt * r), np.zeros_like(r), thr)
    if t == "CubaLIF":
        ts, tm = _arr(node, "tau_syn"), _arr(node, "tau_mem")
        if np.any(_arr(node, "v_leak") != 0):
            raise ModelError("node %r (CubaLIF): v_leak is not 0; a constant drive on the membrane has no place in spikeedge's "
                             "current-based neuron (it would pass through the synapse)" % link.name)
        gain = _snap(dt / ts * _arr(node, "w_in", 1.0)) * _snap(dt / tm * _arr(node, "r"))
        return Neuron(link.name, _decay(link, ts, dt, "tau_syn", node.tau_syn), _decay(link, tm, dt, "tau_mem", node.tau_mem), gain, np.zeros_like(tm), thr)
    if t == "Threshold":
        thr = _arr(node, "threshold")
        if np.any(thr <= 0):
            raise ModelError("node %r (Threshold): the threshold must be > 0" % link.name)
        return Neuron(link.name, np.zeros_like(thr), np.zeros_like(thr), np.ones_like(thr), np.zeros_like(thr), thr)
    if t == "LI":
        tau = _arr(node, "tau")
        if np.any(_arr(node, "v_leak") != 0):
            raise ModelError("node %r (LI): v_leak is not 0" % link.name)
        beta = _decay(link, tau, dt, "tau", node.tau)
        return Neuron(link.name, np.zeros_like(beta), beta, _snap(dt * _arr(node, "r") / tau), np.zeros_like(beta), np.ones_like(beta), spiking=False)
    if t == "I":
        r = _arr(node, "r")
        return Neuron(link.name, np.zeros_like(r), np.ones_like(r), dt * r, np.zeros_like(r), np.ones_like(r), spiking=False)
    raise ModelError("node %r (%s): spikeedge has no layer for this node type" % (link.name, t))


def graph_dt(graph: Any, dt: Optional[float]) -> float:
    """``dt``: the caller's, else the file's metadata; refused when neither gives one."""
    meta = getattr(graph, "metadata", None) or {}
    if dt is None:
        found = meta.get("dt")
        if found is None:
            raise ModelError("the file does not say its time step: pass --dt (snnTorch writes its graphs for dt = 1e-4, Norse for 1e-3)")
        dt = float(np.asarray(found).reshape(-1)[0])
    if not (math.isfinite(dt) and dt > 0):
        raise ModelError("dt must be finite and > 0, got %r" % dt)
    return dt


def weights(link: Link) -> Tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of an Affine, Linear or Conv node in float64; a missing bias is zeros."""
    w = np.asarray(link.node.weight, np.float64)
    b = getattr(link.node, "bias", None)
    return w, np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64).reshape(-1)
