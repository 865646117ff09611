"""Post-training int8 quantization of a folded convolutional SNN into a ``ConvBundle``
(``docs/quantization.md``, section "Convolutional SNNs").

* Input: the image as a signed ``input_bits``-bit integer, ``round(x / s_x)``, with
  ``s_x = max|x_calib| / (2**(bits-1) - 1)`` (the direct encoder of the HRSNN, no headroom: an
  image never comes back as input).
* Weights: symmetric int8 per output channel (per output neuron for linear layers),
  ``q = round(w / s_w)``, ``s_w = max|w| / 127`` over the channel's kernel.
* State: one scale per spiking layer, ``sigma = threshold / 2**14``: the threshold is the
  integer ``THRESHOLD`` exactly. Bias ``round(b / sigma)``; decay ``round(decay * 2**16)``.
* Requantisation: ``m = round(s_w * s_in / sigma * 2**shift)`` per output channel, ``s_in`` =
  ``s_x`` for the layer that sees the image and 1 for spikes; ``shift`` per layer, the largest in
  [1, 62] that keeps every ``m`` below 2**31 (about 30 significant bits).
* Readout: the non-spiking last layer keeps ``acc_scale = s_w * s_in`` and its float bias; the
  logits are ``sum_t acc_t * acc_scale / T + bias``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from ..runtime import bundle as fmt
from ..runtime.fixedpoint import DECAY_BITS, THRESHOLD, decay_to_q16
from .folded import FoldedConv, FoldedFlatten, FoldedLinear, FoldedNet, FoldedPool
from .quantize import calibrate_input_scale, quantize_per_row

M_LIMIT = (1 << 31) - 1


def requant_shift(ratio: np.ndarray) -> int:
    """The largest shift in [1, 62] with ``round(max(ratio) * 2**shift) < 2**31``."""
    peak = float(np.max(ratio)) if np.size(ratio) else 0.0
    if peak <= 0:
        return 62
    shift = int(math.floor(math.log2(M_LIMIT / peak)))
    while shift > 1 and round(peak * 2.0**shift) > M_LIMIT:
        shift -= 1
    return max(1, min(62, shift))


def _spiking(name: str, weight: np.ndarray, bias: np.ndarray, decay: float, threshold: float, s_in: float) -> Dict[str, Any]:
    """The integer fields shared by conv and linear spiking layers."""
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError("%s: threshold must be finite and > 0, got %r" % (name, threshold))
    if not 0.0 <= decay <= 1.0:
        raise ValueError("%s: decay must be in [0, 1], got %r" % (name, decay))
    out = weight.shape[0]
    q, s_w = quantize_per_row(weight.reshape(out, -1))
    sigma = threshold / THRESHOLD
    ratio = s_w * s_in / sigma
    shift = requant_shift(ratio)
    m = np.where(q.any(axis=1), np.round(ratio * 2.0**shift), 0).astype(np.int64)
    if m.max(initial=0) > M_LIMIT:
        raise ValueError("%s: weights are too large for the threshold (requantisation overflows)" % name)
    b = np.clip(np.round(np.asarray(bias, np.float64) / sigma), -(2**31), 2**31 - 1).astype(np.int32)
    return dict(name=name, decay=int(decay_to_q16(decay)), shift=shift, weight=q.reshape(weight.shape), m=m, bias=b, w_scale=s_w)


def quantize_folded(
    net: FoldedNet,
    x_calib: Optional[np.ndarray] = None,
    input_bits: int = 16,
    provenance: Optional[Dict[str, Any]] = None,
    output: str = "last",
) -> fmt.ConvBundle:
    """Quantize a folded conv SNN into a bundle; ``x_calib``: images that set the input step
    (default: inputs in [-1, 1])."""
    if input_bits not in (8, 16):
        raise ValueError("input_bits must be 8 or 16")
    layers = net.layers
    if not layers or not isinstance(layers[-1], FoldedLinear) or layers[-1].spiking:
        raise ValueError("the last layer must be a non-spiking FoldedLinear (the readout)")
    s_x = calibrate_input_scale(np.asarray(x_calib if x_calib is not None else np.ones(1), np.float64), input_bits, headroom=1.0)
    s_in = s_x  # float value of one unit of the current layer's input
    records: List[Any] = []
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, FoldedConv):
            w = np.asarray(layer.weight, np.float64)
            f = _spiking("conv%d" % i, w, layer.bias, layer.decay, layer.threshold, s_in)
            records.append(fmt.ConvLifLayer(in_channels=w.shape[1], out_channels=w.shape[0], kernel_h=w.shape[2], kernel_w=w.shape[3],
                                            stride=int(layer.stride), padding=int(layer.padding), **f))
            s_in = 1.0
        elif isinstance(layer, FoldedPool):
            records.append(fmt.MaxPoolLayer("pool%d" % i, int(layer.size)))
        elif isinstance(layer, FoldedFlatten):
            records.append(fmt.FlattenLayer("flatten%d" % i))
        elif isinstance(layer, FoldedLinear):
            if not layer.spiking:
                raise ValueError("layer %d: only the last layer may be non-spiking" % i)
            w = np.asarray(layer.weight, np.float64)
            f = _spiking("fc%d" % i, w, layer.bias, layer.decay, layer.threshold, s_in)
            records.append(fmt.LinearLifLayer(n_in=w.shape[1], n_out=w.shape[0], **f))
            s_in = 1.0
        else:
            raise TypeError("layer %d: unknown folded layer %r" % (i, type(layer).__name__))
    last = layers[-1]
    q, s_w = quantize_per_row(np.asarray(last.weight, np.float64))
    readout = fmt.LinearReadout("readout", q.shape[1], q.shape[0], q, s_w * s_in, np.asarray(last.bias, np.float64).copy())
    record: Dict[str, Any] = {
        "model": "convsnn",
        "quantization": {
            "weights": "int8 symmetric per output channel",
            "threshold_int": THRESHOLD,
            "decay_bits": DECAY_BITS,
            "input_bits": input_bits,
            "input_scale": s_x,
            "state_scales": {r.name: float(lay.threshold) / THRESHOLD for r, lay in zip(records, layers) if r.kind in ("conv_lif", "linear_lif")},
        },
    }
    record.update(provenance or {})
    bundle = fmt.ConvBundle(
        encoder=fmt.DirectEncoder(int(np.prod(net.input_shape)), float(s_x), int(input_bits)),
        input_shape=tuple(int(v) for v in net.input_shape),
        time_steps=int(net.time_steps),
        layers=tuple(records),
        readout=readout,
        output=output,
        provenance=record,
    )
    try:
        bundle.check()
    except fmt._Invalid as exc:  # e.g. a fan-in too large for int32 with 16-bit inputs
        raise ValueError("cannot quantize: %s" % exc) from None
    return bundle
