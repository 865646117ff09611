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
* Residual stream (ResNet): one scale ``S`` per stage (from a ``set`` conv to the next), the
  largest |stream| of the calibration images over every step mapped to ``2**STREAM_BITS``
  (2**7 of headroom below the int32 saturation). A stream conv's output joins it as
  ``rs(acc * m, shift)`` with ``m = round(s_w * s_in / S * 2**shift)``; a stream neuron's
  BatchNorm ``scale * x + shift`` becomes ``rs(stream * m, shift) + bias`` with
  ``m = round(scale * S / sigma * 2**shift)`` (signed) and ``bias = round(shift / sigma)``. A
  global average pool sums spikes; its ``1 / (H * W)`` joins the readout's ``s_in``.
* Sum / average pooling (NIR's SumPool2d, AvgPool2d): integer window sums; an average's
  ``1 / (kh * kw)`` joins the next layer's ``s_in`` (exact: only the requantisation sees it).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from ..runtime import bundle as fmt
from ..runtime.fixedpoint import DECAY_BITS, THRESHOLD, decay_to_q16
from .folded import FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv, FoldedStreamLif, FoldedSumPool
from .quantize import calibrate_input_scale, quantize_per_row

M_LIMIT = (1 << 31) - 1
STREAM_BITS = 24


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


def _stream_scales(net: FoldedNet, x_calib: Optional[np.ndarray]) -> Dict[int, float]:
    """Per ``set`` stream conv (by layer index): the float value of one stream unit, from the
    largest |stream| over its stage on the calibration images (every step)."""
    sets = [i for i, layer in enumerate(net.layers) if isinstance(layer, FoldedStreamConv) and not layer.add]
    if not sets:
        return {}
    from .intref_conv import folded_forward

    x = np.asarray(x_calib if x_calib is not None else np.ones((1,) + tuple(net.input_shape)), np.float64)
    peaks: Dict[int, float] = {}
    folded_forward(net, x.reshape((-1,) + tuple(net.input_shape)), stream_peaks=peaks)
    scales: Dict[int, float] = {}
    for j, start in enumerate(sets):
        end = sets[j + 1] if j + 1 < len(sets) else len(net.layers)
        peak = max((v for i, v in peaks.items() if start <= i < end), default=0.0)
        scales[start] = (peak if peak > 0 else 1.0) / float(1 << STREAM_BITS)
    return scales


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
    stream_scales = _stream_scales(net, x_calib)
    s_stream = 1.0
    shape = tuple(net.input_shape)
    records: List[Any] = []
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, (FoldedConv, FoldedStreamConv)):
            k = np.asarray(layer.weight).shape
            shape = (k[0], (shape[1] + 2 * layer.padding - k[2]) // layer.stride + 1, (shape[2] + 2 * layer.padding - k[3]) // layer.stride + 1)
        elif isinstance(layer, FoldedPool):
            shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
        elif isinstance(layer, FoldedSumPool):
            shape = (shape[0], (shape[1] - layer.kernel[0]) // layer.stride[0] + 1, (shape[2] - layer.kernel[1]) // layer.stride[1] + 1)
        if isinstance(layer, FoldedStreamConv):
            w = np.asarray(layer.weight, np.float64)
            if not layer.add:
                s_stream = stream_scales[i]
            q, s_w = quantize_per_row(w.reshape(w.shape[0], -1))
            ratio = s_w * s_in / s_stream
            shift = requant_shift(ratio)
            m = np.where(q.any(axis=1), np.round(ratio * 2.0**shift), 0).astype(np.int64)
            records.append(fmt.ConvStreamLayer("stream%d" % i, w.shape[1], w.shape[0], w.shape[2], w.shape[3], int(layer.stride), int(layer.padding),
                                               "add" if layer.add else "set", shift, q.reshape(w.shape).astype(np.int8), m, s_w))
        elif isinstance(layer, FoldedStreamLif):
            if not (layer.threshold > 0 and math.isfinite(layer.threshold)) or not 0.0 <= layer.decay <= 1.0:
                raise ValueError("layer %d: threshold must be finite and > 0, decay in [0, 1]" % i)
            sigma = layer.threshold / THRESHOLD
            ratio = np.asarray(layer.scale, np.float64) * s_stream / sigma
            shift = requant_shift(np.abs(ratio))
            m = np.round(ratio * 2.0**shift).astype(np.int64)
            b = np.clip(np.round(np.asarray(layer.shift, np.float64) / sigma), -(2**31), 2**31 - 1).astype(np.int32)
            records.append(fmt.StreamLifLayer("slif%d" % i, int(m.size), int(decay_to_q16(layer.decay)), shift, m, b))
            s_in = 1.0
        elif isinstance(layer, FoldedGlobalPool):
            records.append(fmt.GlobalSumPoolLayer("gpool%d" % i))
            s_in = 1.0 / (shape[1] * shape[2])  # a count over H x W stands for the mean
            shape = (shape[0],)
        elif isinstance(layer, FoldedConv):
            w = np.asarray(layer.weight, np.float64)
            f = _spiking("conv%d" % i, w, layer.bias, layer.decay, layer.threshold, s_in)
            records.append(fmt.ConvLifLayer(in_channels=w.shape[1], out_channels=w.shape[0], kernel_h=w.shape[2], kernel_w=w.shape[3],
                                            stride=int(layer.stride), padding=int(layer.padding), **f))
            s_in = 1.0
        elif isinstance(layer, FoldedPool):
            records.append(fmt.MaxPoolLayer("pool%d" % i, int(layer.size)))
        elif isinstance(layer, FoldedSumPool):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            records.append(fmt.SumPoolLayer("sumpool%d" % i, int(kh), int(kw), int(sh), int(sw)))
            if layer.average:  # the integers are window sums; the mean's 1 / (kh * kw) joins the next layer's s_in
                s_in = s_in / (kh * kw)
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
            "state_scales": {r.name: float(lay.threshold) / THRESHOLD for r, lay in zip(records, layers) if r.kind in fmt.SPIKING_KINDS},
            "stream_scales": {records[i].name: stream_scales[i] for i in sorted(stream_scales)},
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
