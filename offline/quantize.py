"""Post-training int8 quantization of an HRSNN into a bundle (``docs/quantization.md``).

* Weights: symmetric int8 per output channel (per target neuron, separately for the input and
  the recurrent matrix; per output for the readout): ``q = round(w / s)``, ``s = max|w| / 127``.
* State: one fixed-point scale per layer, ``sigma = threshold / 2**14``, so the threshold is the
  integer 16384 exactly and does not move.
* Accumulations: int32 sums of int8 weights times events are brought to state units by a Q16
  multiplier per neuron, ``m = round(s_w * s_x / sigma * 2**16)`` (``s_x`` = 1 for spikes, the
  input step for direct currents).
* Leaks: Q16 multipliers ``round(exp(-1/tau) * 2**16)``; bias ``round(b / sigma)``.
* Readout: traces in Q12 (a spike adds 4096); outputs ``(w_q @ trace_q) * s / 4096 + bias``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from ..runtime import bundle as fmt
from ..runtime.fixedpoint import DECAY_BITS, REQUANT_BITS, THRESHOLD, TRACE_BITS, decay_to_q16
from .hrsnn import HRSNN, HrsnnConfig


def quantize_per_row(w: np.ndarray, bits: int = 8):
    """Symmetric per-row quantization: returns (int8 weights, float64 scale per row).

    An all-zero row gets scale 1 (any positive value would do: its weights are all zero).
    """
    qmax = (1 << (bits - 1)) - 1
    w = np.asarray(w, np.float64)
    peak = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    scale = np.where(peak > 0, peak / qmax, 1.0)
    q = np.clip(np.round(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q, scale


def requant_multiplier(scale: np.ndarray, sigma: float) -> np.ndarray:
    """Q16 multiplier taking an accumulation in units ``scale`` to state units ``sigma``."""
    return np.round(np.asarray(scale, np.float64) / sigma * (1 << REQUANT_BITS)).astype(np.int64)


def encoder_record(cfg: HrsnnConfig, input_scale: float, input_bits: int):
    """The bundle's encoder record for a config (``input_scale`` only matters for direct)."""
    if cfg.encoder == "direct":
        return fmt.DirectEncoder(cfg.n_inputs, float(input_scale), int(input_bits))
    if cfg.encoder == "rate":
        return fmt.RateEncoder(cfg.n_inputs, float(cfg.encoder_gain), int(cfg.seed))
    if cfg.encoder == "delta":
        return fmt.DeltaEncoder(cfg.n_inputs, float(cfg.delta_threshold))
    raise ValueError("unknown encoder %r" % cfg.encoder)


def calibrate_input_scale(x_calib: np.ndarray, bits: int, headroom: float = 1.25) -> float:
    """Step of the direct-current input: the calibration peak with headroom over ``qmax``.

    Headroom matters for autoregressive use, where the model's own (possibly larger) outputs
    come back as inputs.
    """
    peak = float(np.max(np.abs(x_calib))) if np.size(x_calib) else 1.0
    return max(peak, 1e-12) * headroom / ((1 << (bits - 1)) - 1)


def quantize_hrsnn(
    model: HRSNN,
    x_calib: Optional[np.ndarray] = None,
    input_bits: int = 16,
    output: str = "sequence",
    provenance: Optional[Dict[str, Any]] = None,
) -> fmt.Bundle:
    """Quantize a float HRSNN into a bundle. ``x_calib``: raw inputs for the direct encoder."""
    cfg = model.cfg
    with torch.no_grad():
        w_in = model.w_in.double().numpy()
        w_rec = model.effective_w_rec().double().numpy()
        bias = model.bias.double().numpy()
        alpha = torch.exp(-1.0 / model.tau_syn.double()).numpy()
        beta = torch.exp(-1.0 / model.tau_mem.double()).numpy()
        w_out = model.readout.weight.double().numpy()
        b_out = model.readout.bias.double().numpy()
    sigma = cfg.threshold / THRESHOLD
    input_scale = 1.0
    if cfg.encoder == "direct":
        input_scale = calibrate_input_scale(x_calib if x_calib is not None else np.ones(1), input_bits)
    q_in, s_in = quantize_per_row(w_in)
    q_rec, s_rec = quantize_per_row(w_rec)
    q_out, s_out = quantize_per_row(w_out)
    layer = fmt.LifRecurrentLayer(
        name="hidden",
        n=cfg.n_neurons,
        reset=cfg.reset,
        w_in=fmt.SparseMatrix.from_dense(q_in),
        w_rec=fmt.SparseMatrix.from_dense(q_rec),
        a_syn=decay_to_q16(alpha),
        a_mem=decay_to_q16(beta),
        m_in=np.where(q_in.any(axis=1), requant_multiplier(s_in * input_scale, sigma), 0),
        m_rec=np.where(q_rec.any(axis=1), requant_multiplier(s_rec, sigma), 0),
        bias=np.round(bias / sigma).astype(np.int32),
        w_in_scale=s_in,
        w_rec_scale=s_rec,
    )
    n = cfg.n_neurons
    readout = fmt.TraceReadout(
        name="readout",
        n_in=n,
        n_out=cfg.n_outputs,
        trace_bits=TRACE_BITS,
        a_trace=decay_to_q16(np.full(n, model.trace_decay)),
        w=q_out,
        w_scale=s_out,
        bias=b_out.astype(np.float64),
        delays=None if cfg.readout_delays == (0,) else np.asarray(cfg.readout_delays, np.int32),
    )
    record = {
        "model": "hrsnn",
        "config": cfg.to_dict(),
        "quantization": {
            "weights": "int8 symmetric per output channel",
            "state_scale": sigma,
            "threshold_int": THRESHOLD,
            "decay_bits": DECAY_BITS,
            "requant_bits": REQUANT_BITS,
            "trace_bits": TRACE_BITS,
            "input_bits": input_bits if cfg.encoder == "direct" else 1,
        },
    }
    record.update(provenance or {})
    return fmt.Bundle(encoder=encoder_record(cfg, input_scale, input_bits), layers=(layer,), readout=readout, output=output, provenance=record)
