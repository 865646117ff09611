"""The layer-by-layer loop of a conv session's ``run`` (all time steps of one layer, then the next),
apart from ``conv_session.py`` to keep that file to the state and the step-by-step loop; it
advances a ``ConvSession``'s state and counters exactly as ``ConvSession.step`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bundle import LinearReadout
from .conv_ops import ROUTING_KINDS, _accumulate, _route


def run_layer_major(session: Any, events: np.ndarray, n: int) -> np.ndarray:
    """All ``n`` steps of a run, layer by layer: layer ``l`` at step ``t`` needs only layer
    ``l - 1`` at step ``t`` and its own state, so each layer's accumulation is computed for
    every step in one call (the steps as a batch: one im2col and one product instead of
    ``n``), then its neurons advance step by step. The same integers as ``step``, in the
    same order; per-layer call overhead is paid once per run instead of once per step.
    Returns the outputs (batch, n, n_out); ``session``: the ``ConvSession`` whose state advances."""
    clock, b = session.clock, session.batch
    if clock is not None:
        clock.start()
    xs = events  # this layer's input: the image (batch, ...) until the first spiking layer, then
    static = True  # the spikes of every step, (n * batch, ...) step-major
    k = 0
    stream: Any = None  # the residual stream: static (batch, ...) or per step (n * batch, ...)
    stream_static = True
    for i, (layer, op) in enumerate(zip(session.bundle.layers, session.ops)):
        if layer.kind in ROUTING_KINDS:
            xs = _route(layer, xs)
            if clock is not None and layer.kind in ("maxpool", "sum_pool"):
                clock.lap("accumulate")
            continue
        if layer.kind == "stream_lif":
            acc, synops = xs, 0  # the stream (no synapses: the BatchNorm is per channel)
        else:
            acc, synops = _accumulate(op, xs, session.method)
            if static:  # the image: the same input every step, accumulated once
                synops *= n
        if layer.kind == "conv_stream":
            if layer.mode == "set":
                stream = session._stream(i, acc, None)
            elif stream_static == static:
                stream = session._stream(i, acc, stream)
            else:  # a run's static stream (the stem's) plus every step's block output
                steps = acc.reshape((n, b) + acc.shape[1:])
                stream = session._stream(i, steps, stream[None]).reshape((n * b,) + acc.shape[1:])
            stream_static = static
            xs = stream
            session.synops += synops
            session.layer_synops[layer.name] += synops
            if clock is not None:
                clock.lap("accumulate")
            continue
        if static:
            accs: Any = [acc] * n
        else:
            kernel = session._kernels.get(layer.name)
            if kernel is not None and kernel.exact:  # requantise every step's accumulation in one call
                currents = kernel.current(acc).reshape((n, b) + acc.shape[1:])
                mem = session.mem[layer.name]
                accs = None
            else:
                accs = acc.reshape((n, b) + acc.shape[1:])
        if layer.kind != "stream_lif":
            session.synops += synops
            session.layer_synops[layer.name] += synops
        if clock is not None:
            clock.lap("accumulate")
        out = np.empty((n, b) + tuple(acc.shape[1:]), bool)
        for t in range(n):
            out[t] = session._neuron(i, k, layer, accs[t], True) if accs is not None else kernel.step_current(currents[t], mem)
            if session.record_spikes:
                session.spike_history[k].append(out[t].copy())
        session.spike_counts[layer.name] += int(np.count_nonzero(out))
        k += 1
        xs, static = out.reshape((n * b,) + out.shape[2:]).view(np.uint8), False
        if clock is not None:
            clock.lap("neuron")
    if static:  # no spiking layer: the readout sees the image itself every step
        acc, synops = _accumulate(session.readout_op, xs.reshape(b, -1), session.method)
        accs, synops = np.broadcast_to(acc, (n,) + acc.shape), synops * n
    else:
        acc, synops = _accumulate(session.readout_op, xs.reshape(n * b, -1), session.method)
        accs = acc.reshape(n, b, -1)
    session.synops += synops
    session.layer_synops[session.bundle.readout.name] += synops
    ro: LinearReadout = session.bundle.readout
    totals = session.total[None] + np.cumsum(accs, axis=0)  # int64: the running sums after each step
    outputs = np.empty((b, n, session.bundle.n_outputs))
    for t in range(n):  # readout_values' arithmetic, step by step
        outputs[:, t] = totals[t].astype(np.float64) * ro.acc_scale / max(1, session.steps + t + 1) + ro.bias
    session.total = totals[-1].copy()
    session.steps += n
    if clock is not None:
        clock.lap("readout")
    return outputs
