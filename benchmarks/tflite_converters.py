#!/usr/bin/env python3
"""Why spikeedge writes its TFLite files itself: TensorFlow's converter on the same step.

The recurrent step of a trained bundle is written once as a ``tf.function`` (float32 weights
holding the bundle's int8 values, the same float32 neuron maths as ``offline/export_tflite``)
and converted by ``tf.lite.TFLiteConverter`` with dynamic-range quantization
(``Optimize.DEFAULT``), the converter's int8 mode that keeps the membrane in float. Measured
against spikeedge's own file of the same bundle: which weight tensors end up int8, file size,
open-loop spike agreement with the integer reference, and the size of what each needs
installed. Needs ``pip install tensorflow-cpu`` (not part of any extra). Writes
``docs/results/tflite_converters.md``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))

import numpy as np  # noqa: E402


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def tf_step_model(bundle: Any) -> bytes:
    import tensorflow as tf

    from spikeedge.runtime.fixedpoint import DECAY_BITS, REQUANT_BITS, THRESHOLD

    layer, ro = bundle.layers[0], bundle.readout
    n, n_ch = layer.n, layer.w_in.n_sources
    f = lambda a: tf.constant(np.asarray(a, np.float32))  # noqa: E731
    w_in, w_rec, w_out = f(layer.w_in.to_dense().T), f(layer.w_rec.to_dense().T), f(ro.w.T)
    q16, rq = 1.0 / (1 << DECAY_BITS), 1.0 / (1 << REQUANT_BITS)
    rs = lambda x, c: tf.floor(x * f(c) + 0.5)  # noqa: E731
    spec = [tf.TensorSpec([1, n_ch], tf.float32, "x")] + [tf.TensorSpec([1, n], tf.float32, k) for k in ("s", "syn", "mem")] + \
        [tf.TensorSpec([1, ro.n_in], tf.float32, "trace")]

    @tf.function(input_signature=spec)
    def step(x, s, syn, mem, trace):  # type: ignore[no-untyped-def]
        acc_in, acc_rec = tf.matmul(x, w_in), tf.matmul(s, w_rec)
        syn2 = rs(syn, layer.a_syn * q16) + rs(acc_in, layer.m_in * rq) + rs(acc_rec, layer.m_rec * rq) + f(layer.bias)
        v = rs(mem, layer.a_mem * q16) + syn2
        spk = tf.cast(v >= THRESHOLD, tf.float32)
        mem2 = v * (1 - spk) if layer.reset == "zero" else v - THRESHOLD * spk
        tr = rs(trace, ro.a_trace * q16) + spk * float(1 << ro.trace_bits)
        y = tf.matmul(tr, w_out) * f(ro.w_scale / float(1 << ro.trace_bits)) + f(ro.bias)
        return {"s_out": spk, "syn_out": syn2, "mem_out": mem2, "trace_out": tr, "y": y}

    module = tf.Module()
    module.step = step
    with tempfile.TemporaryDirectory() as tmp:  # a SavedModel keeps the named signature
        tf.saved_model.save(module, tmp, signatures={"serving_default": step.get_concrete_function()})
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        return conv.convert()


def weight_types(blob: bytes) -> Dict[str, str]:
    import ai_edge_litert.schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(blob, 0)
    names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    out = {}
    for t in m.subgraphs[0].tensors:
        if t.buffer and m.buffers[t.buffer].data is not None and len(t.shape) >= 2:
            out[t.name.decode() if isinstance(t.name, bytes) else t.name] = names[t.type] + str([int(v) for v in t.shape])
    return out


def open_loop_tf(blob: bytes, bundle: Any, xs: np.ndarray) -> float:
    """Open-loop spike agreement of the converted model with the event runtime (bit-exact
    with the integer reference): every step starts from the runtime's state."""
    from ai_edge_litert.interpreter import Interpreter

    from spikeedge.runtime.sessions import open_session

    interp = Interpreter(model_content=blob)
    run = interp.get_signature_runner()
    ses = open_session(bundle, 1, record_spikes=True)
    ses.start(1, xs[:1, 0])
    same = total = 0
    for t in range(xs.shape[1]):
        st = ses.get_state()
        events = ses.encoder(xs[:, t].reshape(1, -1)).astype(np.float32)
        out = run(x=events, s=st["s0"].astype(np.float32), syn=st["syn0"].astype(np.float32), mem=st["mem0"].astype(np.float32),
                  trace=st["trace"].astype(np.float32))
        ses.step(xs[:, t])
        ref = ses.spike_history[0][-1]
        same += int(((out["s_out"] != 0) == ref).sum())
        total += ref.size
    return same / total


def main() -> int:
    import tensorflow as tf

    from spikeedge.offline.export_tflite import export_tflite
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import calibration_inputs, train_hrsnn
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.backends import open_model
    from spikeedge.measure.verify import open_loop
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass", repeats=3)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=300, seed=0))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, calibration_inputs(task))))
    xs = np.asarray(task.windows[0].train_x, np.float64)[None, :500, None]
    t0 = time.time()
    tf_blob = tf_step_model(bundle)
    tf_seconds = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        t0 = time.time()
        export_tflite(bundle, path)
        own_seconds = time.time() - t0
        own_blob = path.read_bytes()
        from spikeedge.runtime.sessions import open_session

        own_agree = open_loop(open_model(path), open_session(bundle, 1), xs)["min_spike_agreement"]
    site = Path(tf.__file__).resolve().parent.parent
    import ai_edge_litert
    import flatbuffers

    rows = {
        "tensorflow TFLiteConverter (Optimize.DEFAULT)": {
            "bytes": len(tf_blob), "weights": weight_types(tf_blob), "open_loop_spike_agreement": open_loop_tf(tf_blob, bundle, xs),
            "convert_seconds": round(tf_seconds, 2), "installed_mb": round((du(site / "tensorflow") + du(site / "keras")) / 2**20)},
        "spikeedge export_tflite (schema object API)": {
            "bytes": len(own_blob), "weights": weight_types(own_blob), "open_loop_spike_agreement": own_agree,
            "convert_seconds": round(own_seconds, 2),
            "installed_mb": round((du(Path(ai_edge_litert.__file__).parent) + du(Path(flatbuffers.__file__).parent)) / 2**20)},
    }
    lines = ["# TFLite converters on the same step (HRSNN, 300 neurons, Mackey-Glass)", "",
             "Generated by `benchmarks/tflite_converters.py` (%s); tensorflow %s. Open-loop spike agreement against the event "
             "runtime (bit-exact with the integer reference) over 500 teacher-forced steps; `installed_mb`: what the "
             "converter needs on disk beyond numpy (tensorflow + keras, or ai-edge-litert + flatbuffers). litert-torch was "
             "not measured here; its documented install is about 2 GB and its quantizer only handles `F.linear` "
             "(`../shared/reference/export.md`)." % (time.strftime("%Y-%m-%d"), tf.__version__), "",
             "| converter | file bytes | weight tensors (rank >= 2) | open-loop spike agreement | seconds | installed MB |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append("| %s | %d | %s | %.5f | %s | %d |" % (name, r["bytes"], ", ".join("%s: %s" % kv for kv in sorted(r["weights"].items())),
                                                            r["open_loop_spike_agreement"], r["convert_seconds"], r["installed_mb"]))
    out = ROOT / "docs" / "results" / "tflite_converters.md"
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
