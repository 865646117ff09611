"""A NIR chain with one dense spiking layer (recurrent or not) as an HRSNN (``offline/hrsnn.py``).

The shape imported: ``Affine|Linear -> LIF|CubaLIF|IF|Threshold`` (optionally with a recurrent
``Affine|Linear`` loop on the neuron, as snnTorch writes ``RSynaptic`` / ``RLeaky``), then
optionally ``Affine|Linear`` and optionally ``LI`` as the readout (an ``I`` is refused: the
trace readout decays). The recurrent spikes
enter one step later (a loop needs a step; snnTorch's recurrent neurons do the same).

The HRSNN reads out exponential spike traces, ``y = W trace + b`` with ``trace = d * trace +
spikes``: an ``Affine -> LI`` readout is exactly that with ``d`` the LI's decay and its gain in
``W`` when the bias is 0; no readout, or an ``Affine`` alone, is ``d = 0`` (the spikes or their
weighted sum at each step).
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
import torch

from ..errors import ModelError
from .hrsnn import HRSNN, HrsnnConfig
from .nir_graph import Link
from .nir_neurons import neuron, weights

NO_TRACE_TAU = 1e-3  # exp(-1 / 1e-3) is 0.0 exactly in float32 and float64: the trace is the spikes
THRESHOLD_NOTE = "spikes where v >= threshold (NIR: v > threshold); they differ only where v equals the threshold exactly"


def _per_neuron(a: np.ndarray, n: int, what: str) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1)
    if a.size not in (1, n):
        raise ModelError("%s has %d values for %d neurons" % (what, a.size, n))
    return np.broadcast_to(a, (n,)).copy()


def _tau_steps(decay: np.ndarray) -> np.ndarray:
    """The HRSNN time constant (steps) whose ``exp(-1/tau)`` is ``decay``: 0 for a decay of 0,
    infinity for 1 (torch's exp gives back 0 and 1 exactly)."""
    with np.errstate(divide="ignore"):
        return np.where(decay >= 1.0, np.inf, -1.0 / np.log(decay))


def to_hrsnn(links: List[Link], dt: float, n_inputs: int) -> Tuple[HRSNN, List[str]]:
    """The HRSNN of a chain of the shape in the module docstring, and the notes on differences."""
    kinds = [ln.type for ln in links]
    if len(links) < 2 or kinds[0] not in ("Affine", "Linear") or kinds[1] not in ("LIF", "CubaLIF", "IF", "Threshold"):
        bad = links[0] if kinds[0] not in ("Affine", "Linear") else links[min(1, len(links) - 1)]
        raise ModelError("node %r (%s): a one-layer (HRSNN) import runs Affine|Linear -> LIF|CubaLIF|IF|Threshold; the graph has %s"
                         % (bad.name, bad.type, " -> ".join(kinds[:2])))
    tail = kinds[2:]
    weighted = ("Affine", "Linear")
    ok = len(tail) <= 3 and all(k in weighted for k in tail[:1]) and all(k in ("LI", "I") for k in tail[1:2]) and all(k in weighted for k in tail[2:])
    if not ok:
        raise ModelError("node %r (%s): after the spiking layer an HRSNN takes an Affine|Linear readout, optionally into LI and "
                         "one more Affine|Linear (what spikeedge writes)" % (links[2 + len(tail) - 1].name, tail[-1]))
    w_in, b_in = weights(links[0])
    nrn = neuron(links[1], dt)
    n = w_in.shape[0]
    if w_in.shape[1] != n_inputs:
        raise ModelError("node %r: %d inputs, the input node gives %d" % (links[0].name, w_in.shape[1], n_inputs))
    alpha, beta = _per_neuron(nrn.alpha, n, links[1].name), _per_neuron(nrn.beta, n, links[1].name)
    g, dr, threshold = nrn.normalised(uniform=True)
    gain, drive = _per_neuron(g, n, links[1].name), _per_neuron(dr, n, links[1].name)
    notes = [THRESHOLD_NOTE]
    w_rec, bias = np.zeros((n, n)), gain * b_in + drive
    if links[1].recurrent is not None:
        rec = Link(links[1].recurrent_name, links[1].recurrent)
        w, b = weights(rec)
        if w.shape != (n, n):
            raise ModelError("node %r: recurrent weights of shape %s for %d neurons" % (rec.name, w.shape, n))
        w_rec, bias = gain[:, None] * w, bias + gain * b
        notes.append("recurrent spikes (%s) enter the next step, as in snnTorch's recurrent neurons" % rec.name)
    w_out, b_out, trace_tau = np.eye(n), np.zeros(n), NO_TRACE_TAU
    if tail:
        w_out, b_out = weights(links[2])
        if w_out.shape[1] != n:
            raise ModelError("node %r: %d inputs, the spiking layer has %d neurons" % (links[2].name, w_out.shape[1], n))
    else:
        notes.append("the graph ends at the spiking layer: the readout is its spikes at each step (identity weights)")
    if len(tail) >= 2 and tail[1] == "I":
        raise ModelError("node %r (I): an HRSNN reads out decaying traces; an integrator's never decays and its int8 trace would "
                         "saturate (an LI can be imported; without a recurrent loop the graph is imported in the conv form, which takes it)" % links[3].name)
    if len(tail) >= 2:
        li = neuron(links[3], dt)
        d, g = np.unique(_per_neuron(li.beta, w_out.shape[0], links[3].name)), np.unique(_per_neuron(li.gain, w_out.shape[0], links[3].name))
        if d.size != 1 or g.size != 1:
            raise ModelError("node %r (%s): the readout's traces share one decay and gain; this node has %d decays and %d gains"
                             % (links[3].name, tail[1], d.size, g.size))
        d0, g0 = float(d[0]), float(g[0])
        w_out = w_out * g0
        if np.any(b_out != 0):
            b_out = b_out * g0 / (1.0 - d0)
            notes.append("readout bias of %r: NIR's %s approaches b*gain/(1-decay) with time constant tau; spikeedge adds that value from the first step"
                         % (links[2].name, tail[1]))
        trace_tau = float(_tau_steps(np.array([d0]))[0])
    if len(tail) == 3:  # an affine map after the LI: composes with the readout exactly (the LI is linear)
        a, c = weights(links[4])
        if a.shape[1] != w_out.shape[0]:
            raise ModelError("node %r: %d inputs, the readout before it has %d outputs" % (links[4].name, a.shape[1], w_out.shape[0]))
        w_out, b_out = a @ w_out, a @ b_out + c
    cfg = HrsnnConfig(n_inputs=n_inputs, n_neurons=n, n_outputs=int(w_out.shape[0]), encoder="direct", threshold=threshold, reset="zero",
                      tau_trace=trace_tau, seed=0)
    model = HRSNN(cfg)
    f32 = torch.float32
    with torch.no_grad():
        model.tau_syn.copy_(torch.tensor(_tau_steps(alpha), dtype=f32))
        model.tau_mem.copy_(torch.tensor(_tau_steps(beta), dtype=f32))
        model.mask.copy_(torch.tensor(w_rec != 0))
        model.w_in.copy_(torch.tensor(gain[:, None] * w_in, dtype=f32))
        model.w_rec.copy_(torch.tensor(w_rec, dtype=f32))
        model.bias.copy_(torch.tensor(bias, dtype=f32))
        model.readout.weight.copy_(torch.tensor(w_out, dtype=f32))
        model.readout.bias.copy_(torch.tensor(b_out, dtype=f32))
    return model, notes


__all__: List[Any] = ["to_hrsnn"]
