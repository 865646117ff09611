"""Static figures of a bundle, in NeuroBench's vocabulary (``spikeedge info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..runtime.bundle import AnyBundle, ConvBundle, schema_version_of


def valid_taps(size: int, kernel: int, stride: int, padding: int, out: int) -> int:
    """Over the ``out`` output positions of one axis, the kernel taps that land inside the input,
    summed: NeuroBench's dense count leaves the padding positions out (they are no operations)."""
    o = np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :]
    return int(((o >= 0) & (o < size)).sum())


def conv_dense_macs(in_shape: Any, out_shape: Any, kernel: Any, stride: int, padding: int, out_channels: int) -> int:
    """Dense operations of one conv layer per time step (NeuroBench's ``Dense``): every weight
    times every input position it meets, padding left out. ``in_shape`` (C, H, W)."""
    c, h, w = (int(v) for v in in_shape)
    oh, ow = int(out_shape[-2]), int(out_shape[-1])
    return valid_taps(h, int(kernel[0]), stride, padding, oh) * valid_taps(w, int(kernel[1]), stride, padding, ow) * c * int(out_channels)


def describe(bundle: AnyBundle, path: Optional[Path] = None) -> Dict[str, Any]:
    """Layers, neurons, synapses (with and without the readout), connection sparsity,
    footprint (NeuroBench's dense count, zeros included) beside the real file size."""
    if isinstance(bundle, ConvBundle):
        return _with_file(describe_conv(bundle), path)
    layers = []
    dense_weights = nonzero = 0
    footprint = 0
    for layer in bundle.layers:
        n_in = layer.w_in.n_targets * layer.w_in.n_sources
        n_rec = layer.n * layer.n
        dense_weights += n_in + n_rec
        nonzero += layer.w_in.nnz + layer.w_rec.nnz
        per_neuron = sum(getattr(layer, k).nbytes for k in ("a_syn", "a_mem", "m_in", "m_rec", "bias"))
        footprint += n_in + n_rec + per_neuron
        layers.append({"name": layer.name, "kind": layer.kind, "neurons": layer.n, "reset": layer.reset,
                       "input_synapses": layer.w_in.nnz, "recurrent_synapses": layer.w_rec.nnz})
    ro = bundle.readout
    readout_nnz = int(np.count_nonzero(ro.w))
    footprint += ro.w.size + ro.w_scale.nbytes + ro.bias.nbytes + ro.a_trace.nbytes
    without = nonzero
    result = {
        "schema_version": schema_version_of(bundle),
        "sha256": bundle.sha256,
        "encoder": bundle.encoder.kind.split(".", 1)[1],
        "inputs": bundle.n_inputs,
        "outputs": bundle.n_outputs,
        "output_mode": bundle.output,
        "layers": layers,
        "neurons": sum(layer.n for layer in bundle.layers),
        "synapses": {"without_readout": without, "with_readout": without + readout_nnz, "readout": readout_nnz},
        "connection_sparsity": {
            "without_readout": 1.0 - without / max(1, dense_weights),
            "with_readout": 1.0 - (without + readout_nnz) / max(1, dense_weights + ro.w.size),
        },
        "footprint_bytes_dense": int(footprint),
        "provenance": bundle.provenance,
    }
    params = sum(layer.w_in.n_targets * layer.w_in.n_sources + layer.n * layer.n + layer.bias.size for layer in bundle.layers)
    params += ro.w.size + ro.bias.size
    per_step = dense_weights + ro.w.size
    result["neurobench"] = neurobench_static(params, footprint, result["connection_sparsity"]["with_readout"], per_step)
    return _with_file(result, path)


NEUROBENCH_NOTE = ("NeuroBench's static metrics and dense operations per time step (readout included, as NeuroBench "
                   "counts it; spikeedge bench's Dense leaves a recurrent model's readout of traces out, as its "
                   "effective count does); Footprint counts every weight dense, as stored (int8 here)")


def neurobench_static(params: int, footprint: int, sparsity: float, dense_per_step: int) -> Dict[str, Any]:
    """``spikeedge info``'s figures under NeuroBench's names."""
    return {"ParameterCount": int(params), "Footprint": int(footprint), "ConnectionSparsity": float(sparsity),
            "Dense_per_step": int(dense_per_step), "note": NEUROBENCH_NOTE}


def _with_file(result: Dict[str, Any], path: Optional[Path]) -> Dict[str, Any]:
    if path is not None:
        result["file"] = str(path)
        result["file_bytes"] = Path(path).stat().st_size
    return result


def describe_conv(bundle: ConvBundle) -> Dict[str, Any]:
    """A conv bundle: per layer its output shape, neurons, stored weights (synapses), parameters
    (weights and biases) and dense MACs per time step; totals, per inference = ``time_steps``
    steps. Synapses count non-zero int8 weights; MACs (NeuroBench's ``Dense``) count every weight
    times every input position it meets, zeros included, a conv's padding positions left out."""
    shapes = bundle.shapes()
    layers = []
    totals = {"neurons": 0, "synapses": 0, "parameters": 0, "macs": 0, "footprint": 0, "dense_weights": 0}
    for layer, shape_in, shape in zip(bundle.layers, shapes, shapes[1:]):
        row: Dict[str, Any] = {"name": layer.name, "kind": layer.kind, "output_shape": list(shape)}
        if layer.kind == "stream_lif":  # neurons on the residual stream: a scale and a bias per channel
            neurons = int(np.prod(shape))
            row.update(neurons=neurons, synapses=0, parameters=int(layer.m.size + layer.bias.size), macs=0, decay_q16=layer.decay)
            totals["neurons"] += neurons
            totals["parameters"] += row["parameters"]
            totals["footprint"] += layer.m.nbytes + layer.bias.nbytes
        elif layer.kind in ("conv_lif", "linear_lif", "conv_stream"):
            w = layer.weight
            neurons = int(np.prod(shape)) if layer.kind != "conv_stream" else 0
            if layer.kind == "linear_lif":
                macs = int(w.size)
            else:
                macs = conv_dense_macs(shape_in, shape, (layer.kernel_h, layer.kernel_w), layer.stride, layer.padding, layer.out_channels)
            row.update(neurons=neurons, synapses=int(np.count_nonzero(w)), parameters=int(w.size + (layer.bias.size if layer.kind != "conv_stream" else 0)),
                       macs=macs)
            if layer.kind != "conv_stream":
                row["decay_q16"] = layer.decay
            else:
                row["mode"] = layer.mode
            if layer.kind != "linear_lif":
                row.update(channels=[layer.in_channels, layer.out_channels], kernel=[layer.kernel_h, layer.kernel_w],
                           stride=layer.stride, padding=layer.padding)
            totals["neurons"] += neurons
            totals["synapses"] += row["synapses"]
            totals["parameters"] += row["parameters"]
            totals["macs"] += row["macs"]
            totals["dense_weights"] += w.size
            totals["footprint"] += w.size + sum(getattr(layer, k).nbytes for k in ("m", "bias", "w_scale") if hasattr(layer, k))
        elif layer.kind == "maxpool":
            row["size"] = layer.size
        elif layer.kind == "sum_pool":
            row.update(kernel=[layer.kernel_h, layer.kernel_w], stride=[layer.stride_h, layer.stride_w])
        layers.append(row)
    ro = bundle.readout
    readout_nnz = int(np.count_nonzero(ro.weight))
    footprint = totals["footprint"] + ro.weight.size + ro.acc_scale.nbytes + ro.bias.nbytes
    macs = totals["macs"] + ro.weight.size
    without = totals["synapses"]
    return {
        "schema_version": schema_version_of(bundle),
        "sha256": bundle.sha256,
        "model": bundle.model,
        "encoder": "direct",
        "input_bits": bundle.encoder.bits,
        "input_shape": list(bundle.input_shape),
        "time_steps": bundle.time_steps,
        "inputs": bundle.n_inputs,
        "outputs": bundle.n_outputs,
        "output_mode": bundle.output,
        "layers": layers,
        "readout": {"name": ro.name, "inputs": ro.n_in, "outputs": ro.n_out, "synapses": readout_nnz},
        "neurons": totals["neurons"],
        "synapses": {"without_readout": without, "with_readout": without + readout_nnz, "readout": readout_nnz},
        "parameters": totals["parameters"] + ro.weight.size + ro.bias.size,
        "macs_per_step": macs,
        "macs_per_inference": macs * bundle.time_steps,
        "connection_sparsity": {
            "without_readout": 1.0 - without / max(1, totals["dense_weights"]),
            "with_readout": 1.0 - (without + readout_nnz) / max(1, totals["dense_weights"] + ro.weight.size),
        },
        "footprint_bytes_dense": int(footprint),
        "neurobench": neurobench_static(totals["parameters"] + ro.weight.size + ro.bias.size, footprint,
                                        1.0 - (without + readout_nnz) / max(1, totals["dense_weights"] + ro.weight.size), macs),
        "provenance": bundle.provenance,
    }
