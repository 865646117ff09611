"""One time step of a bundle as a graph for another interpreter (onnxruntime, TFLite): the
contract between the exporters (``offline/export_onnx.py``, ``offline/export_tflite.py``) and
the runtime backends (``runtime/backends.py``).

A step graph is a pure function ``(inputs of step t, state) -> (outputs, new state)``; the time
loop, the encoder (rate and delta encoders are stateful and random) and the bookkeeping
(spike counts, synaptic operations, timing) stay in the runtime, in numpy, written once for
every backend (``GraphSession``, in ``graph_session.py``; this module holds the card and the
counts). Every exported file carries a *card*: a small JSON object (ONNX: the metadata entry
``spikeedge``; TFLite: the model metadata entry ``spikeedge``) with what the loop needs and
the graph does not say: the encoder, the names and shapes of the state tensors, the layers
whose spikes are outputs, and per-source counts of non-zero weights for the synaptic
operations (the same definition as the event runtime: one operation per (non-zero input,
non-zero weight) pair).

Graph signature, by name (``B`` is the batch, free in every graph):

* recurrent (``model == "hrsnn"``): inputs ``x`` (B, channels) the encoded events as float32,
  and each state tensor ``<name>``; outputs ``y`` (B, n_out) the readout, ``<name>_out`` for
  each state tensor. The spikes of layer ``i`` are the state tensor ``s<i>`` (what the next
  step's recurrent accumulation reads).
* convolutional (``model == "conv"``): inputs ``x`` (B, C, H, W) the encoded image as float32
  and the membranes ``mem<i>``; outputs ``acc`` (B, n_out) the readout's accumulation of this
  step, ``mem<i>_out`` and the spikes ``s<i>`` of every spiking layer (layout in the card:
  ``nchw`` or ``nhwc``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from . import bundle as fmt

CARD_KEY = "spikeedge"
CARD_VERSION = 1


# ----------------------------------------------------------------------------- synaptic operations


def column_nnz(w: fmt.SparseMatrix) -> List[int]:
    """Non-zero weights per source (column) of a sparse matrix."""
    return np.diff(w.indptr).astype(np.int64).tolist()


def reach_masks(in_hw: Tuple[int, int], kernel: Tuple[int, int], stride: int, padding: int, out_hw: Tuple[int, int]) -> np.ndarray:
    """(kh*kw, H, W) bool: input position (y, x) reaches an output through kernel offset k."""
    kh, kw = kernel
    h, w = in_hw
    oh, ow = out_hw
    ys, xs = np.arange(h), np.arange(w)
    out = np.zeros((kh * kw, h, w), bool)
    for k in range(kh * kw):
        ky, kx = divmod(k, kw)
        ny, nx = ys + padding - ky, xs + padding - kx
        vy = (ny >= 0) & (ny % stride == 0) & (ny // stride < oh)
        vx = (nx >= 0) & (nx % stride == 0) & (nx // stride < ow)
        out[k] = vy[:, None] & vx[None, :]
    return out


def conv_synops(x: np.ndarray, nnz: np.ndarray, masks: np.ndarray) -> int:
    """Operations of a conv layer on inputs ``x`` (B, C, H, W): each non-zero input at channel
    c reaching an output through offset k costs ``nnz[c, k]`` (the non-zero weights it meets)."""
    reached = np.einsum("bchw,khw->ck", (x != 0).astype(np.float64), masks.astype(np.float64))
    return int(round(float((reached * nnz).sum())))


def dense_synops(x: np.ndarray, nnz: np.ndarray) -> int:
    """Operations of a linear map on inputs ``x`` (B, n): non-zero inputs times their fan-out."""
    return int(np.count_nonzero(x, axis=0) @ nnz)


# ----------------------------------------------------------------------------- the card


def card_for(bundle: fmt.AnyBundle, backend: str, layout: str = "nchw", state_dtype: str = "int64") -> Dict[str, Any]:
    """The card of ``bundle``'s step graph for ``backend`` ("onnx" or "tflite")."""
    card: Dict[str, Any] = {
        "card_version": CARD_VERSION,
        "backend": backend,
        "bundle_sha256": bundle.sha256,
        "encoder": fmt.encoder_to_json(bundle.encoder),
        "output": bundle.output,
        "n_outputs": bundle.n_outputs,
        "provenance": bundle.provenance,
    }
    if getattr(bundle, "model", None) == "conv":
        return dict(card, **_conv_card(bundle, layout, state_dtype))
    if bundle.readout.taps != (0,):
        raise ValueError("a readout with delayed taps %s has no step graph yet (run it on the numpy core)" % list(bundle.readout.taps))
    layers = []
    state = []
    for i, layer in enumerate(bundle.layers):
        layers.append({"name": layer.name, "n": layer.n, "nnz_in": column_nnz(layer.w_in), "nnz_rec": column_nnz(layer.w_rec)})
        state += [{"name": "s%d" % i, "shape": [layer.n], "dtype": "float32"},
                  {"name": "syn%d" % i, "shape": [layer.n], "dtype": state_dtype},
                  {"name": "mem%d" % i, "shape": [layer.n], "dtype": state_dtype}]
    state.append({"name": "trace", "shape": [bundle.readout.n_in], "dtype": state_dtype})
    return dict(card, model="hrsnn", n_inputs=bundle.encoder.n_inputs, layers=layers, state=state)


def _conv_card(bundle: fmt.ConvBundle, layout: str, state_dtype: str) -> Dict[str, Any]:
    shapes = bundle.shapes()
    layers, state = [], []
    k = 0
    for layer, shape_in, shape_out in zip(bundle.layers, shapes[:-1], shapes[1:]):
        row: Dict[str, Any] = {"name": layer.name, "kind": layer.kind, "shape_in": list(shape_in), "shape_out": list(shape_out)}
        if layer.kind in ("conv_lif", "conv_stream"):
            o, c, kh, kw = layer.weight.shape
            row.update(kernel=[kh, kw], stride=layer.stride, padding=layer.padding,
                       nnz=np.count_nonzero(layer.weight.transpose(1, 2, 3, 0).reshape(c, kh * kw, o), axis=2).tolist())
        elif layer.kind == "linear_lif":
            row.update(nnz=np.count_nonzero(layer.weight, axis=0).tolist())
        elif layer.kind == "maxpool":
            row.update(size=layer.size)
        if layer.kind in fmt.SPIKING_KINDS:
            row["spikes"] = "s%d" % k
            shape = list(shape_out)
            if layout == "nhwc" and len(shape) == 3:
                shape = [shape[1], shape[2], shape[0]]
            state.append({"name": "mem%d" % k, "shape": shape, "dtype": state_dtype})
            row["spike_shape"] = shape
            k += 1
        layers.append(row)
    ro = bundle.readout
    return {"model": "conv", "input_shape": list(bundle.input_shape), "time_steps": bundle.time_steps, "layout": layout,
            "layers": layers, "state": state,
            "readout": {"name": ro.name, "nnz": np.count_nonzero(ro.weight, axis=0).tolist(),
                        "acc_scale": ro.acc_scale.tolist(), "bias": ro.bias.tolist()}}


def check_card(card: Any, source: str) -> Dict[str, Any]:
    """A card read from a file, checked enough that the loop cannot misread it."""
    if not isinstance(card, dict) or card.get("card_version") != CARD_VERSION:
        found = card.get("card_version") if isinstance(card, dict) else None
        raise ValueError("%s: step-graph card version %r, this runtime reads %d" % (source, found, CARD_VERSION))
    for key in ("model", "encoder", "state", "layers", "n_outputs", "output"):
        if key not in card:
            raise ValueError("%s: the step-graph card has no %r" % (source, key))
    if card["model"] not in ("hrsnn", "conv"):
        raise ValueError("%s: unknown model %r in the step-graph card" % (source, card["model"]))
    return card
