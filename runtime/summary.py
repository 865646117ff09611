"""Static figures of a bundle, in NeuroBench's vocabulary (``spikeedge info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .bundle import SCHEMA_VERSION, Bundle


def describe(bundle: Bundle, path: Optional[Path] = None) -> Dict[str, Any]:
    """Layers, neurons, synapses (with and without the readout), connection sparsity,
    footprint (NeuroBench's dense count, zeros included) beside the real file size."""
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
        "schema_version": SCHEMA_VERSION,
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
    if path is not None:
        result["file"] = str(path)
        result["file_bytes"] = Path(path).stat().st_size
    return result
