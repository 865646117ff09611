"""Import a NIR graph as a spikeedge model: one recurrent or feed-forward spiking layer as an
HRSNN (``offline/hrsnn.py``), anything with convolutions, pooling or several spiking layers as
the inference form of a conv SNN (``offline/folded.py``). ``docs/interop.md`` has the table.

NIR's neurons are written in continuous time; a file says nothing of how to step them, and
snnTorch and Norse (the peers that write most files) both step them by forward Euler with the
synaptic current updated first. spikeedge does the same, with ``dt`` from the file's metadata
or the caller::

    CubaLIF:  syn = (1 - dt/tau_syn) syn + (dt/tau_syn) w_in x
              v   = (1 - dt/tau_mem) v   + (dt/tau_mem) (v_leak + r syn)
    LIF:      v   = (1 - dt/tau) v + (dt/tau) (v_leak + r x)        IF: v = v + dt r x
    spike where v >= v_threshold (NIR: v > v_threshold), then v = v_reset (which must be 0)

A neuron's input gain (``dt r / tau`` ...) is folded into the weights and bias that feed it; a
threshold that differs between the neurons of a layer too (then the threshold is 1: exact in
real numbers, each neuron's state scaled by a positive constant). Decays map to spikeedge's conventions by
value: the HRSNN's ``exp(-1/tau_steps)`` gets ``tau_steps = -1 / ln(1 - dt/tau)``, a conv
layer's ``decay`` is ``1 - dt/tau`` itself. What has no exact form is refused in one line
naming the node and why (``ModelError``); what is mapped with a difference says so in
``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from .nir_graph import Link, chain, input_shape, read_graph

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


@dataclass
class Imported:
    """What ``import_nir`` made: ``kind`` "hrsnn" (``model`` an HRSNN) or "folded" (a FoldedNet),
    the record for its checkpoint, and one line per difference from the file."""

    kind: str
    model: Any
    record: Dict[str, Any]
    notes: List[str] = field(default_factory=list)


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


def import_nir(path: Any, dt: Optional[float] = None, time_steps: Optional[int] = None, input_peak: float = 1.0) -> Imported:
    """Read ``path`` and map it (see the module docstring). ``time_steps``: a conv import's T
    (NIR has none: default the file's metadata, which spikeedge writes, else 10);
    ``input_peak``: the largest |input| the int8 export calibrates for."""
    graph = read_graph(path)
    step = graph_dt(graph, dt)
    if time_steps is None:
        time_steps = int(np.asarray((getattr(graph, "metadata", None) or {}).get("time_steps", 10)).reshape(-1)[0])
    links = _fold_scales(chain(graph))
    shape = input_shape(graph)
    record: Dict[str, Any] = {
        "task": None, "output": "sequence",
        "training": {"imported": "nir", "file": str(getattr(path, "name", path)), "dt": step, "nodes": [ln.name for ln in links]},
        "calibration": {"input_peak_abs": float(input_peak), "from": "--input-peak"},
    }
    weighted = [ln for ln in links if ln.type in ("Affine", "Linear", "Conv1d", "Conv2d")]
    notes: List[str] = []
    if weighted and len(shape) >= 2 and shape[0] == 1:  # Norse writes the sample's batch dimension into the input type
        w0 = np.asarray(weighted[0].node.weight)
        if (weighted[0].type in ("Affine", "Linear") and len(shape) == 2 and w0.shape[1] == shape[1]) or \
                (weighted[0].type == "Conv2d" and len(shape) == 4) or (weighted[0].type == "Conv1d" and len(shape) == 3):
            notes.append("input shape %s: its leading 1 taken as a batch dimension (Norse writes the sample's)" % list(shape))
            shape = shape[1:]
    spiking = [ln for ln in links if ln.type in ("LIF", "CubaLIF", "IF", "Threshold")]
    dense_only = all(ln.type in ("Affine", "Linear", "LIF", "CubaLIF", "IF", "LI", "I", "Threshold") for ln in links)
    if dense_only and len(spiking) == 1 and len(shape) == 1 and weighted and weighted[0] is links[0]:
        from .nir_hrsnn import to_hrsnn

        model, more = to_hrsnn(links, step, int(shape[0]))
        return Imported("hrsnn", model, record, notes + more)
    if any(ln.recurrent is not None for ln in links):
        bad = next(ln for ln in links if ln.recurrent is not None)
        raise ModelError("node %r: a recurrent loop is imported only as the single spiking layer of an HRSNN (dense input "
                         "weights, no convolution or pooling, one spiking layer)" % bad.name)
    from .nir_folded import to_folded

    net, more = to_folded(links, step, shape, time_steps)
    record["output"] = "last"
    return Imported("folded", net, record, notes + more)


def _fold_scales(links: List[Link]) -> List[Link]:
    """Each ``Scale`` node folded into the weighted node before it (per output) or, when there is
    none, the dense one after it (per input): exact, a product of the same real numbers."""
    out: List[Link] = []
    pending: Optional[Link] = None
    for ln in links:
        if ln.type == "Scale":
            s = np.asarray(ln.node.scale, np.float64).reshape(-1)
            if out and out[-1].type in ("Affine", "Linear", "Conv1d", "Conv2d") and out[-1].recurrent is None:
                prev = out[-1]
                w, b = weights(prev)
                if s.size not in (1, w.shape[0]):
                    raise ModelError("node %r (Scale): %d factors for %d outputs of %r" % (ln.name, s.size, w.shape[0], prev.name))
                shape = (-1,) + (1,) * (w.ndim - 1)
                out[-1] = Link(prev.name, _Weighted(prev.type, w * s.reshape(shape), b * s, prev.node))
                continue
            if pending is not None:
                raise ModelError("node %r (Scale): two scales with no weights between them" % ln.name)
            pending = ln
            continue
        if pending is not None:
            if ln.type not in ("Affine", "Linear"):
                raise ModelError("node %r (Scale): a scale is folded into the weights next to it; %r (%s) has none" % (pending.name, ln.name, ln.type))
            w, b = weights(ln)
            s = np.asarray(pending.node.scale, np.float64).reshape(-1)
            ln = Link(ln.name, _Weighted(ln.type, w * s.reshape(1, -1), b, ln.node), ln.recurrent, ln.recurrent_name)
            pending = None
        out.append(ln)
    if pending is not None:
        raise ModelError("node %r (Scale): nothing after it to fold it into" % pending.name)
    return out


class _Weighted:
    """A weighted node with its weights replaced (a scale folded in); the rest of the node as is."""

    def __init__(self, type_name: str, weight: np.ndarray, bias: np.ndarray, node: Any) -> None:
        self.weight, self.bias, self._node, self.nir_type = weight, bias, node, type_name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)
