"""The figures of a bench run record that come from the model rather than the clock: the workload
from the runtime's counters, synapse counts and connection sparsity from the model card, the
footprint (a bundle's from ``summary``, a step graph's read from the file), the pruning density.
Apart from ``bench.py`` so that the timing and power protocol reads on its own.

Board side: numpy and the standard library only (no onnx or TFLite schema package), Python 3.8+.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..runtime.bundle import file_sha256

FORMAT = {"event": "bundle", "onnx": "onnx", "tflite": "tflite"}


# ----------------------------------------------------------------------------- workload and the file


def _neurons(session: Any) -> Dict[str, int]:
    found = getattr(session, "neurons", None)
    if isinstance(found, dict):
        return {k: int(v) for k, v in found.items()}
    return {ls.layer.name: int(ls.layer.n) for ls in session.layers}


def workload_figures(session: Any, counts: List[Tuple[Any, ...]], dense_per_step: float) -> Dict[str, Any]:
    """NeuroBench's workload metrics from the runtime's counters, averaged per sample, under
    NeuroBench's names (``ActivationSparsity``; ``SynapticOperations``: ``Effective_MACs``,
    ``Effective_ACs``, ``Dense``) and, for older readers, the earlier ones
    (``activation_sparsity``, ``synops_per_inference``: ``dense``, ``effective``). ``counts``: per
    sample (spike counts, synaptic operations, steps[, operations per layer])."""
    neurons = _neurons(session)
    steps = sum(c[2] for c in counts)
    spikes = {name: sum(c[0].get(name, 0) for c in counts) for name in neurons}
    slots = sum(neurons.values()) * steps
    sparsity = 1.0 - sum(spikes.values()) / slots if slots else None
    dense = dense_per_step * steps / len(counts)
    effective = sum(c[1] for c in counts) / len(counts)
    macs = mac_ops(session, counts)
    synaptic = {"Effective_MACs": None if macs is None else macs, "Effective_ACs": None if macs is None else effective - macs,
                "Dense": dense, "Effective": effective}
    return {"ActivationSparsity": sparsity, "SynapticOperations": synaptic,
            "activation_sparsity": sparsity, "synops_per_inference": {"dense": dense, "effective": effective},
            "spike_rate": {name: spikes[name] / (neurons[name] * steps) if steps else 0.0 for name in neurons}}


SPIKING_KINDS = ("conv_lif", "linear_lif", "stream_lif")
ACCUMULATING_KINDS = ("conv_lif", "linear_lif", "conv_stream")


def mac_ops(session: Any, counts: List[Tuple[Any, ...]]) -> Optional[float]:
    """Per sample, the operations whose input is not spikes (NeuroBench's MACs; the rest are ACs).

    A conv model: the layers that read the image (every accumulating layer up to and including
    the first spiking one; the readout too when no layer spikes), from the runtime's per-layer
    counts. A recurrent model with a rate or delta encoder reads spikes only: 0. A recurrent
    model with the direct encoder reads real values in its input synapses, which the runtime
    counts together with the recurrent ones: None (not split; ``offline/workload.py`` splits them
    on the float model)."""
    card = model_card(session)
    if card["model"] == "hrsnn":
        enc = card.get("encoder")
        kind = enc.get("kind") if isinstance(enc, dict) else getattr(getattr(getattr(session, "bundle", None), "encoder", None), "kind", "")
        return 0.0 if str(kind).rsplit(".", 1)[-1] in ("rate", "delta") else None
    per_layer = [c[3] for c in counts if len(c) > 3 and c[3]]
    if len(per_layer) != len(counts):
        return None
    names = []
    for row in card["layers"]:
        if row["kind"] in ACCUMULATING_KINDS:
            names.append(row["name"])
        if row["kind"] in SPIKING_KINDS:
            break
    else:
        names.append(card["readout"].get("name", ""))
    return sum(sum(c.get(name, 0) for name in names) for c in per_layer) / len(counts)


def model_card(session: Any) -> Dict[str, Any]:
    card = getattr(session, "card", None)
    if card is not None:
        return card
    from ..runtime.stepgraph import card_for

    return card_for(session.bundle, "event")


def input_width(card: Dict[str, Any]) -> Optional[int]:
    """Input values per time step the model takes: an HRSNN's encoder inputs, a conv model's
    image size (channels x height x width); None when the card does not say."""
    if card.get("n_inputs") is not None:
        return int(card["n_inputs"])
    if card.get("input_shape"):
        return int(np.prod(card["input_shape"]))
    return None


def dense_ops_per_step(session: Any) -> float:
    """Every weight times every activation, per time step, over the layers whose operations the
    runtime counts: a recurrent model's input and recurrent synapses (its readout of leaky
    traces is counted in neither figure); a conv model's layers and readout. NeuroBench's
    ``Dense``: a conv's padding positions are no operations (``summary.conv_dense_macs``)."""
    from .summary import conv_dense_macs

    card = model_card(session)
    if card["model"] == "hrsnn":
        return float(sum(len(l["nnz_in"]) * l["n"] + l["n"] * l["n"] for l in card["layers"]))
    ops = 0
    for row in card["layers"]:
        if row["kind"] in ("conv_lif", "conv_stream"):
            out = row["shape_out"]
            ops += conv_dense_macs(row["shape_in"], out, row["kernel"], row["stride"], row["padding"], out[0])
        elif row["kind"] == "linear_lif":
            ops += len(row["nnz"]) * row["shape_out"][0]
    return float(ops + len(card["readout"]["nnz"]) * int(card["n_outputs"]))


def _synapses(card: Dict[str, Any]) -> Tuple[int, int]:
    """(non-zero weights, all weight positions) of the spiking layers, readout excluded."""
    if card["model"] == "hrsnn":
        nz = sum(sum(l["nnz_in"]) + sum(l["nnz_rec"]) for l in card["layers"])
        return nz, sum(len(l["nnz_in"]) * l["n"] + l["n"] * l["n"] for l in card["layers"])
    nz = dense = 0
    for row in card["layers"]:
        if row["kind"] in ("conv_lif", "conv_stream"):
            nz += int(np.sum(row["nnz"]))
            dense += row["shape_in"][0] * row["kernel"][0] * row["kernel"][1] * row["shape_out"][0]
        elif row["kind"] == "linear_lif":
            nz += int(np.sum(row["nnz"]))
            dense += len(row["nnz"]) * row["shape_out"][0]
    return nz, dense


def model_record(path: Path, session: Any) -> Dict[str, Any]:
    from ..runtime.backends import backend_of

    kind = backend_of(path)
    card = model_card(session)
    nz, dense = _synapses(card)
    if kind == "event":
        from .summary import describe

        footprint: Optional[int] = int(describe(session.bundle)["footprint_bytes_dense"])
    else:
        footprint = graph_footprint(path, kind)
    prov = card.get("provenance") or {}
    pruning = prov.get("pruning") if isinstance(prov.get("pruning"), dict) else {}
    return {"path": str(path), "name": path.name, "sha256": file_sha256(path), "format": FORMAT[kind], "file_bytes": path.stat().st_size,
            "footprint_bytes": footprint, "connection_sparsity": 1.0 - nz / dense if dense else 0.0,
            "neurons": sum(_neurons(session).values()), "synapses": nz,
            "pruning": {"method": pruning.get("method"), "density": kept_density(pruning)}}


def kept_density(pruning: Dict[str, Any]) -> Optional[float]:
    """The kept fraction a pruning record states: ``density`` (magnitude, random), LNP's
    ``kept_synapses``, SCA's achieved ``channels.density``; 1.0 for ``method: none``."""
    channels = pruning.get("channels") if isinstance(pruning.get("channels"), dict) else {}
    for value in (pruning.get("density"), pruning.get("kept_synapses"), channels.get("density")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 1.0 if pruning.get("method") == "none" else None


# ----------------------------------------------------------------------------- footprint of step graphs

# ONNX TensorProto.DataType -> bytes per element
_ONNX_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def graph_footprint(path: Path, kind: str) -> Optional[int]:
    """NeuroBench's footprint of a step graph: the constant tensors it stores (weights, scales,
    constants), elements x element size. Read with the standard library (no onnx or schema
    package on a board); None when the file cannot be walked."""
    try:
        blob = path.read_bytes()
        return _onnx_initializer_bytes(blob) if kind == "onnx" else _tflite_constant_bytes(blob)
    except (ValueError, IndexError, KeyError):
        return None


def _varint(b: bytes, i: int) -> Tuple[int, int]:
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return x, i


def _fields(b: bytes, i: int, end: int) -> Any:
    """(field number, wire type, value) of a protobuf message; length-delimited values as (start, end)."""
    while i < end:
        key, i = _varint(b, i)
        wire = key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield key >> 3, wire, v
        elif wire == 2:
            n, i = _varint(b, i)
            yield key >> 3, wire, (i, i + n)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)


def _onnx_initializer_bytes(b: bytes) -> int:
    """ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto dims (1), data_type (2)."""
    total = 0
    for f, wire, v in _fields(b, 0, len(b)):
        if f != 7 or wire != 2:
            continue
        for g, gw, gv in _fields(b, v[0], v[1]):
            if g != 5 or gw != 2:
                continue
            numel, dtype = 1, 0
            for t, tw, tv in _fields(b, gv[0], gv[1]):
                if t == 1 and tw == 0:
                    numel *= tv
                elif t == 1 and tw == 2:  # packed dims
                    i = tv[0]
                    while i < tv[1]:
                        d, i = _varint(b, i)
                        numel *= d
                elif t == 2 and tw == 0:
                    dtype = tv
            total += numel * _ONNX_SIZES[dtype]
    return total


def _tflite_constant_bytes(blob: bytes) -> int:
    """Bytes of every non-empty buffer of a TFLite file except the metadata entries'."""
    import struct

    from ..runtime.tflite_meta import BUF_DATA, BUF_SIZE, META_BUFFER, MODEL_BUFFERS, MODEL_METADATA, _Table, _vector

    if blob[4:8] != b"TFL3":
        raise ValueError("no TFL3 identifier")
    model = _Table(blob, struct.unpack_from("<I", blob, 0)[0])
    skip = set()
    meta_vec = model.ref(MODEL_METADATA)
    if meta_vec is not None:
        for i in _vector(blob, meta_vec):
            at = meta_vec + 4 + 4 * i
            skip.add(_Table(blob, at + struct.unpack_from("<I", blob, at)[0]).u32(META_BUFFER))
    buf_vec = model.ref(MODEL_BUFFERS)
    total = 0
    for i in _vector(blob, buf_vec) if buf_vec is not None else ():
        if i in skip:
            continue
        at = buf_vec + 4 + 4 * i
        buf = _Table(blob, at + struct.unpack_from("<I", blob, at)[0])
        data_at = buf.ref(BUF_DATA)
        total += struct.unpack_from("<I", blob, data_at)[0] if data_at is not None else buf.u64(BUF_SIZE)
    return total
