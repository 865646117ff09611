"""Pruning baselines that LNP is compared with at equal neuron and synapse counts: random,
magnitude and activity-based pruning (AP). ``../shared/methods/lnp.md`` asks for them.

All three work in the same two stages, so that only the criterion differs between them:

1. keep ``n_neurons`` neurons, chosen by the criterion; their input weights, biases, time
   constants and the recurrent synapses among themselves come along (the network becomes
   physically smaller, ``surgery.HrsnnArrays.subset``);
2. remove recurrent synapses among the kept neurons until ``n_synapses`` remain.

The weights that remain are the original entries, unchanged: no rescaling (LNP's noise pruning
rescales kept weights by ``1/p``; a baseline that did so would no longer be the classic method).
Each function returns ``(model, record)``: a new HRSNN built by ``surgery.build_hrsnn`` with a
zeroed readout, to be trained afterwards (``pipeline.train_model``), and a JSON-able record of
what was done. If stage 1 leaves fewer than ``n_synapses`` synapses among the kept neurons, all
of them are kept and ``record["synapse_shortfall"]`` says how many are missing: a comparison
"at equal synapse counts" is then not one, and whoever reports it must be able to see that.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from .hrsnn import HRSNN
from .surgery import HrsnnArrays, arrays_of, build_hrsnn
from .train import encode_sequences


def magnitude_scores(w_rec: np.ndarray) -> np.ndarray:
    """Each neuron's total recurrent |weight|: incoming (its row) plus outgoing (its column)."""
    a = np.abs(w_rec)
    return a.sum(axis=1) + a.sum(axis=0)


@torch.no_grad()
def spike_counts(model: HRSNN, inputs: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Spikes of each neuron of the float model driven by real inputs ``inputs`` (batch, steps,
    n_inputs), summed over the batch and the steps; the batch is run ``chunk`` sequences at a
    time so that the recorded spikes stay small."""
    inputs = np.asarray(inputs, np.float64)
    counts = np.zeros(model.cfg.n_neurons)
    for i in range(0, len(inputs), chunk):
        _, _, spikes, _ = model(encode_sequences(model, inputs[i : i + chunk]), record_spikes=True)
        counts += spikes.double().sum(dim=(0, 1)).numpy()
    return counts


def _check_counts(arrays: HrsnnArrays, n_neurons: int, n_synapses: int) -> None:
    if not 1 <= n_neurons <= arrays.n:
        raise ValueError("n_neurons must be in [1, %d], got %d" % (arrays.n, n_neurons))
    if n_synapses < 0:
        raise ValueError("n_synapses must be >= 0, got %d" % n_synapses)


def _keep_synapses(w_rec: np.ndarray, n_synapses: int, order: str, rng=None) -> np.ndarray:
    """``w_rec`` with only ``n_synapses`` of its non-zero entries left (all when it has fewer):
    the largest by |w| (``order="magnitude"``, ties by position) or a uniform random subset."""
    flat = w_rec.ravel()
    nz = np.flatnonzero(flat)
    if n_synapses >= nz.size:
        return w_rec.copy()
    if order == "magnitude":
        keep = nz[np.argsort(-np.abs(flat[nz]), kind="stable")[:n_synapses]]
    else:
        keep = rng.choice(nz, size=n_synapses, replace=False)
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(w_rec.shape)


def _finish(model: HRSNN, arrays: HrsnnArrays, keep: np.ndarray, n_neurons: int, n_synapses: int, order: str,
            method: str, rng=None, extra: Optional[Dict[str, Any]] = None):
    keep = np.sort(keep)
    sub = arrays.subset(keep)
    available = sub.n_synapses
    sub.w_rec = _keep_synapses(sub.w_rec, n_synapses, order, rng)
    pruned = build_hrsnn(model.cfg, sub)
    record = {
        "method": method,
        "start": {"neurons": arrays.n, "synapses": arrays.n_synapses},
        "requested": {"neurons": int(n_neurons), "synapses": int(n_synapses)},
        "neurons": sub.n,
        "synapses": sub.n_synapses,
        "synapses_after_neuron_removal": available,
        "synapse_shortfall": max(0, int(n_synapses) - available),
        "kept_neurons": [int(i) for i in keep],
    }
    record.update(extra or {})
    return pruned, record


def prune_random(model: HRSNN, n_neurons: int, n_synapses: int, seed: int = 0):
    """Random pruning: ``n_neurons`` neurons kept uniformly at random, then recurrent synapses
    removed uniformly at random down to ``n_synapses``. The floor any criterion should beat.
    Reproducible: the same ``seed`` gives the same network."""
    arrays = arrays_of(model)
    _check_counts(arrays, n_neurons, n_synapses)
    rng = np.random.default_rng(seed)
    keep = rng.choice(arrays.n, size=n_neurons, replace=False)
    return _finish(model, arrays, keep, n_neurons, n_synapses, "random", "random", rng, {"seed": int(seed)})


def prune_magnitude(model: HRSNN, n_neurons: int, n_synapses: int):
    """Magnitude pruning (data-free, like LNP): keep the neurons with the largest total recurrent
    |weight| (incoming + outgoing, ``magnitude_scores``; ties by index), then remove the
    smallest-|w| synapses among them down to ``n_synapses``. Small weights change the dynamics
    least, which is the classic reason for this criterion."""
    arrays = arrays_of(model)
    _check_counts(arrays, n_neurons, n_synapses)
    keep = np.argsort(-magnitude_scores(arrays.w_rec), kind="stable")[:n_neurons]
    return _finish(model, arrays, keep, n_neurons, n_synapses, "magnitude", "magnitude")


def prune_activity(trained_model: HRSNN, inputs: np.ndarray, n_neurons: int, n_synapses: int, chunk: int = 128):
    """Activity-based pruning (AP) of a dense HRSNN already trained on a task, the method LNP's
    paper compares with: count each neuron's spikes on the task's training inputs ``inputs``
    (batch, steps, n_inputs; ``spike_counts``), keep the ``n_neurons`` most active (ties, e.g.
    among silent neurons, by ``magnitude_scores``, then by index), then remove the smallest-|w|
    synapses among them down to ``n_synapses``. Needs task data and a trained model, which LNP
    does not. The trained readout is dropped: retrain the pruned network's readout."""
    arrays = arrays_of(trained_model)
    _check_counts(arrays, n_neurons, n_synapses)
    counts = spike_counts(trained_model, inputs, chunk)
    keep = np.lexsort((-magnitude_scores(arrays.w_rec), -counts))[:n_neurons]  # last key first
    extra = {"spikes_kept": float(counts[keep].sum()), "spikes_total": float(counts.sum()),
             "silent_neurons": int((counts == 0).sum()), "silent_neurons_kept": int((counts[keep] == 0).sum())}
    return _finish(trained_model, arrays, keep, n_neurons, n_synapses, "magnitude", "activity", extra=extra)
