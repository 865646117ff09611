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

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ModelError
from .nir_graph import Link, chain, input_shape, read_graph
from .nir_neurons import graph_dt, weights


@dataclass
class Imported:
    """What ``import_nir`` made: ``kind`` "hrsnn" (``model`` an HRSNN) or "folded" (a FoldedNet),
    the record for its checkpoint, and one line per difference from the file."""

    kind: str
    model: Any
    record: Dict[str, Any]
    notes: List[str] = field(default_factory=list)


def import_nir(path: Any, dt: Optional[float] = None, time_steps: Optional[int] = None, input_peak: float = 1.0) -> Imported:
    """Read ``path`` and map it (see the module docstring). ``time_steps``: a conv import's T
    (NIR has none: default the file's metadata, which spikeedge writes, else 10);
    ``input_peak``: the largest |input| the int8 export calibrates for."""
    graph = read_graph(path)
    step = graph_dt(graph, dt)
    if time_steps is None:
        time_steps = int(np.asarray((getattr(graph, "metadata", None) or {}).get("time_steps", 10)).reshape(-1)[0])
    links = _fold_scales(chain(graph))
    if not links:
        raise ModelError("the graph has no node between its input and its output")
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
    recurrent = any(ln.recurrent is not None for ln in links)
    integrator_readout = links[-1].type == "I" and not recurrent  # the conv form reads out an integral; the HRSNN's traces decay
    if dense_only and len(spiking) == 1 and len(shape) == 1 and weighted and weighted[0] is links[0] and not integrator_readout:
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
            if s.size not in (1, w.shape[1]):
                raise ModelError("node %r (Scale): %d factors for %d inputs of %r" % (pending.name, s.size, w.shape[1], ln.name))
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
