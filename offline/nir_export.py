"""Write a spikeedge model as a NIR graph (``spikeedge export --format nir``): the HRSNN and the
conv SNNs' inference form (``offline/folded.py``), in float, for the peers to read.

NIR neurons are continuous-time; spikeedge writes them for forward Euler at ``dt`` (recorded in
the graph's metadata, with the time steps of a conv model), the way snnTorch and Norse step
them: a decay ``d`` per step is ``tau = dt / (1 - d)`` and the input gains are 1
(``r = tau / dt``, CubaLIF ``w_in = tau_syn / dt``). The HRSNN's ``exp(-1/tau_steps)`` decays and
the conv nets' ``1 - 1/tau`` are written by value, so a peer stepping the file at ``dt`` computes
spikeedge's decays. What NIR cannot express is refused in one line (``ModelError``): the
HRSNN's subtract reset (NIR's neurons reset to ``v_reset``), max pooling (NIR has sum and average
pooling only), a ResNet's residual stream, rate and delta encoders. What it expresses
differently is returned as notes (a conv readout: NIR's output is each step's current,
spikeedge's logits its mean over the steps).

The HRSNN's readout ``y = W trace + b`` with ``trace = d * trace + spikes`` is written
``Linear(W) -> LI(d) -> Affine(I, b)``: the LI of ``W spikes`` is ``W trace``, and the bias
comes after it (an LI would integrate it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from ..errors import ModelError
from .folded import FoldedConv, FoldedFlatten, FoldedGlobalPool, FoldedLinear, FoldedNet, FoldedPool, FoldedStreamConv, FoldedStreamLif, FoldedSumPool

DEFAULT_DT = 1e-4  # snnTorch's importer steps every file at 1e-4 whatever it says; Norse's takes dt as an argument


def _tau(decay: np.ndarray, dt: float, what: str) -> np.ndarray:
    decay = np.asarray(decay, np.float64)
    if np.any(decay >= 1.0) or np.any(decay < 0):
        raise ModelError("%s: a decay of %g per step has no leaky NIR form (tau would be infinite)" % (what, float(np.max(decay))))
    return dt / (1.0 - decay)


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, np.float32)


def hrsnn_graph(model: Any, dt: float = DEFAULT_DT) -> Tuple[Any, List[str]]:
    """The NIR graph of an HRSNN (float weights), and the notes on differences."""
    import nir
    import torch

    cfg = model.cfg
    if cfg.reset != "zero":
        raise ModelError("reset %r: NIR's CubaLIF resets to v_reset; spikeedge's subtract reset cannot be written (an HRSNN with "
                         "reset 'zero' can)" % cfg.reset)
    if cfg.encoder != "direct":
        raise ModelError("encoder %r: NIR has no %s encoder; only direct (real-valued) inputs can be written" % (cfg.encoder, cfg.encoder))
    with torch.no_grad():
        p = model.lif_params()
        alpha, beta = p.alpha.double().numpy(), p.beta.double().numpy()
        w_in, w_rec = model.w_in.double().numpy(), model.effective_w_rec().double().numpy()
        bias, w_out, b_out = model.bias.double().numpy(), model.readout.weight.double().numpy(), model.readout.bias.double().numpy()
    n = cfg.n_neurons
    tau_syn, tau_mem = _tau(alpha, dt, "tau_syn"), _tau(beta, dt, "tau_mem")  # a decay of 0 is tau = dt
    d = np.full(cfg.n_outputs, model.trace_decay)
    tau_tr = _tau(d, dt, "the readout trace")
    nodes = {
        "input": nir.Input(input_type=np.array([cfg.n_inputs])),
        "w_in": nir.Affine(weight=_f32(w_in), bias=_f32(bias)),
        "lif": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(n),  # float64: the decays as computed
                           v_threshold=np.full(n, float(cfg.threshold)), v_reset=np.zeros(n), w_in=tau_syn / dt),
        "w_rec": nir.Linear(weight=_f32(w_rec)),
        "readout": nir.Linear(weight=_f32(w_out)),
        "trace": nir.LI(tau=tau_tr, r=tau_tr / dt, v_leak=np.zeros(cfg.n_outputs)),
        "bias": nir.Affine(weight=np.eye(cfg.n_outputs, dtype=np.float32), bias=_f32(b_out)),
        "output": nir.Output(output_type=np.array([cfg.n_outputs])),
    }
    edges = [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "readout"), ("readout", "trace"),
             ("trace", "bias"), ("bias", "output")]
    notes = ["recurrent spikes enter the next step (a peer must step the lif <-> w_rec loop with one step of delay)"]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "writer": "spikeedge", "model": "hrsnn"}), notes


def _neuron(decay: float, threshold: float, shape: Tuple[int, ...], dt: float, where: str) -> Any:
    import nir

    ones = np.ones(shape, np.float64)  # float64 parameters: the decays and thresholds as spikeedge holds them
    if decay >= 1.0:  # IF: v = v + dt r x, so r = 1 / dt
        return nir.IF(r=ones / dt, v_threshold=ones * threshold, v_reset=0 * ones)
    tau = float(_tau(np.array([decay]), dt, where)[0])
    return nir.LIF(tau=ones * tau, r=ones * (tau / dt), v_leak=0 * ones, v_threshold=ones * threshold, v_reset=0 * ones)


def folded_graph(net: FoldedNet, dt: float = DEFAULT_DT) -> Tuple[Any, List[str]]:
    """The NIR graph of a conv SNN's inference form, and the notes on differences."""
    import nir

    layers = list(net.layers)
    shape: Tuple[int, ...] = tuple(int(v) for v in net.input_shape)
    if layers and isinstance(layers[0], FoldedFlatten) and shape[1:] == (1, 1):  # a dense model: its input is a vector
        layers, shape = layers[1:], (shape[0],)
    nodes: Dict[str, Any] = {"input": nir.Input(input_type=np.array(shape))}
    order = ["input"]

    def add(name: str, node: Any) -> None:
        nodes[name] = node
        order.append(name)

    notes: List[str] = []
    for i, layer in enumerate(layers):
        where = "layer %d (%s)" % (i, type(layer).__name__)
        if isinstance(layer, (FoldedStreamConv, FoldedStreamLif, FoldedGlobalPool)):
            raise ModelError("%s: a ResNet's residual stream has no NIR form spikeedge writes yet" % where)
        if isinstance(layer, FoldedPool):
            raise ModelError("%s: NIR has no max pooling (only SumPool2d and AvgPool2d); a model with max pooling cannot be written" % where)
        if isinstance(layer, FoldedConv):
            w = _f32(layer.weight)
            shape = (w.shape[0], (shape[1] + 2 * layer.padding - w.shape[2]) // layer.stride + 1, (shape[2] + 2 * layer.padding - w.shape[3]) // layer.stride + 1)
            add("conv%d" % i, nir.Conv2d(input_shape=None, weight=w, stride=np.array([layer.stride] * 2), padding=np.array([layer.padding] * 2),
                                         dilation=np.array([1, 1]), groups=1, bias=_f32(layer.bias)))
            add("lif%d" % i, _neuron(layer.decay, layer.threshold, shape, dt, where))
        elif isinstance(layer, FoldedSumPool):
            cls = nir.AvgPool2d if layer.average else nir.SumPool2d
            add("pool%d" % i, cls(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride), padding=np.array([0, 0])))
            shape = (shape[0], (shape[1] - layer.kernel[0]) // layer.stride[0] + 1, (shape[2] - layer.kernel[1]) // layer.stride[1] + 1)
        elif isinstance(layer, FoldedFlatten):
            add("flatten%d" % i, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, FoldedLinear):
            w = _f32(layer.weight)
            add("fc%d" % i, nir.Affine(weight=w, bias=_f32(layer.bias)))
            shape = (w.shape[0],)
            if layer.spiking:
                add("lif%d" % i, _neuron(layer.decay, layer.threshold, shape, dt, where))
            else:
                notes.append("readout fc%d: NIR's output is its current at each step; spikeedge's logits are the mean over the %d steps"
                             % (i, net.time_steps))
        else:
            raise ModelError("%s: no NIR form" % where)
    add("output", nir.Output(output_type=np.array(shape)))
    edges = list(zip(order[:-1], order[1:]))
    meta = {"dt": dt, "writer": "spikeedge", "model": "conv", "time_steps": int(net.time_steps)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta), notes


def export_nir(model: Any, path: Path, dt: float = DEFAULT_DT) -> Dict[str, Any]:
    """Write ``model`` (an HRSNN, a ConvSNN (folded first) or a FoldedNet) to ``path`` as NIR;
    returns what was written, with the notes."""
    import nir

    from ..runtime.bundle import write_atomic
    from .hrsnn import HRSNN

    if not (math.isfinite(dt) and dt > 0):
        raise ModelError("--dt must be finite and > 0, got %r" % dt)
    if isinstance(model, HRSNN):
        graph, notes = hrsnn_graph(model, dt)
    else:
        if not isinstance(model, FoldedNet):
            from .convsnn import fold

            model = fold(model)
        graph, notes = folded_graph(model, dt)
    tmp = Path(str(path) + ".tmp")
    try:
        nir.write(str(tmp), graph)
        write_atomic(Path(path), tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return {"output": str(path), "format": "nir", "dt": dt, "nodes": list(graph.nodes), "differences": notes}
