"""The deploy half of ``benchmarks/sca_eval.py``: the pruned models as int8 bundles, checked
bit-exact on the runtime against the integer reference, and timed (batch 1 and 32) beside the
same bundles exported to onnxruntime (int8 step graph) and TFLite.

Kept apart from ``benchmarks/conv_runtime.py`` (the per-layer cost of the runtime's conv
paths), which times one bundle at a time; here every form of every model is timed interleaved,
batch by batch in one process, so that a change of machine load hits all alike.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def bundle_of(model: Any, calib: np.ndarray) -> Any:
    """The int8 bundle of a ``ConvSNN`` (``quantize_folded(fold(model))``), through bytes."""
    from spikeedge.offline.convsnn import fold
    from spikeedge.offline.quantize_conv import quantize_folded
    from spikeedge.runtime import bundle as fmt

    return fmt.loads(fmt.dumps(quantize_folded(fold(model), calib)))


def runtime_pair(models: Dict[str, Any], data: Any, n: int = 30, rounds: int = 3, batch: int = 1, method: str = "auto") -> Dict[str, float]:
    """Median ms per image (T steps) of each model's int8 bundle on the numpy runtime (conv
    ``method`` auto, event or dense), in batches of ``batch`` validation images, ``n`` batches x
    ``rounds``, interleaved batch by batch."""
    from spikeedge.runtime.sessions import open_session

    calib = data.x_train[:500].numpy()
    sessions = {k: open_session(bundle_of(m, calib), batch, core="numpy", method=method) for k, m in models.items()}
    xs = data.x_test[: (n + 1) * batch].numpy().astype("float64")
    return _interleaved(sessions, xs, n, rounds, batch)


def _interleaved(sessions: Dict[str, Any], xs: np.ndarray, n: int, rounds: int, batch: int) -> Dict[str, float]:
    times: Dict[str, List[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(xs[:batch])  # warm-up
    n = min(n, len(xs) // batch - 1)
    for _ in range(rounds):
        for i in range(1, n + 1):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(xs[i * batch : (i + 1) * batch])
                times[k].append(1e3 * (time.perf_counter() - t0) / batch)
    return {k: statistics.median(v) for k, v in times.items()}


def bit_exact(bundle: Any, xs: np.ndarray) -> Dict[str, Any]:
    """The numpy runtime against the integer reference (``offline/intref_conv``): spikes and
    membranes of every layer at every step, and the logits."""
    from spikeedge.measure.verify import open_loop
    from spikeedge.offline.intref_conv import ConvIntegerReference
    from spikeedge.runtime.sessions import open_session

    rep = open_loop(open_session(bundle, 1, core="numpy"), ConvIntegerReference(bundle), xs, steps=bundle.time_steps)
    return {"images": len(xs), "min_spike_agreement": rep["min_spike_agreement"], "max_membrane_difference": rep["max_membrane_difference"],
            "bit_exact": rep["min_spike_agreement"] == 1.0 and rep["max_membrane_difference"] == 0}


def deploy_checks(exp: Any, rows: List[Dict[str, Any]], seed: int) -> Dict[str, Any]:
    """Seed ``seed``'s dense, SCA 25% (unshrunk and shrunk) and SCA 10% models: bundle size,
    bit-exactness, the bundle's test accuracy, and ms per image of every form at batch 1 and 32.
    Cached beside the runs (the test accuracy must be computed once)."""
    from spikeedge.offline.checkpoint import load_checkpoint
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.offline.export_tflite import export_tflite
    from spikeedge.runtime import bundle as fmt
    from spikeedge.runtime.backends import open_model
    from spikeedge.runtime.sessions import open_session

    path = exp.cache / ("deploy-seed%d.json" % seed)
    if path.is_file():
        return json.loads(path.read_text())
    pick = {"dense": ("dense", 1.0, "dense"), "sca25-unshrunk": ("sca", 0.25, "masked"), "sca25": ("sca", 0.25, "shrunk"),
            "sca10": ("sca", 0.1, "shrunk")}
    models = {}
    for name, (m, d, which) in pick.items():
        hit = [r for r in rows if r["method"] == m and abs(r["density"] - d) < 1e-9 and r["seed"] == seed]
        if hit:
            models[name] = load_checkpoint(exp.cache / hit[0]["checkpoints"][which], kind="convsnn")[0]
    calib = exp.dev.x_train[:500].numpy()
    xs_test = exp.test_images.numpy().astype(np.float64)
    xs_val = exp.dev.x_test.numpy().astype(np.float64)
    out: Dict[str, Any] = {"seed": seed, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files: Dict[str, Dict[str, Path]] = {}
        for name, model in models.items():
            b = bundle_of(model, calib)
            f = {"bundle": Path(tmp) / (name + ".seb"), "onnx-int8": Path(tmp) / (name + ".onnx"), "tflite": Path(tmp) / (name + ".tflite")}
            fmt.save(b, f["bundle"])
            export_onnx(b, f["onnx-int8"])
            export_tflite(b, f["tflite"])
            files[name] = f
            row = {"parameters": model.n_parameters(), "bytes": {k: p.stat().st_size for k, p in f.items()}, "check": bit_exact(b, xs_val[:16])}
            if name == "sca25":  # the deployed model's test accuracy (once)
                s = open_model(f["bundle"], batch=100)
                pred = np.concatenate([np.argmax(s.run(xs_test[i : i + 100]).outputs[:, -1], axis=-1) for i in range(0, len(xs_test), 100)])
                row["bundle_test_accuracy"] = float((pred == exp._y_test.numpy()).mean())
            out["models"][name] = row
            exp.log("deploy %s: %s" % (name, row["check"]))
        for batch, n in ((1, 20), (32, 3)):
            sessions = {"%s|%s" % (name, form): open_model(p, batch=batch, threads=1) for name, f in files.items() for form, p in f.items()}
            for name, f in files.items():  # the runtime's dense conv path, beside its automatic choice
                sessions["%s|bundle-dense" % name] = open_session(fmt.load(f["bundle"]), batch, core="numpy", method="dense")
            ms = _interleaved(sessions, xs_val, n, 2, batch)
            for key, v in ms.items():
                name, form = key.split("|")
                out["models"][name].setdefault("ms_per_image", {}).setdefault(form, {})["b%d" % batch] = v
            exp.log("deploy timing batch %d done" % batch)
    if len(models) == len(pick):  # a partial set is measured again next time
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(out))
        tmp_path.replace(path)
    return out


def deploy_markdown(dep: Dict[str, Any]) -> List[str]:
    L = ["## Deploy (seed %d): int8 bundles on the runtime, onnxruntime and TFLite" % dep["seed"], "",
         "Bit-exact: the numpy runtime's spikes and membranes at every layer and step against the integer reference "
         "(`offline/intref_conv`), 16 validation images. Times: ms per image (T steps), one thread, every model and form "
         "interleaved batch by batch in one process (median; batch 1: 20 batches x 2 rounds, batch 32: 3 x 2).", "",
         "`runtime`: the numpy runtime as `open_model` opens it (conv method auto); `runtime dense`: the same bundle with "
         "`method=\"dense\"` (im2col products).", "",
         "| model | parameters | bit-exact | bundle bytes | runtime b1 | runtime b32 | runtime dense b1 | b32 | onnxruntime int8 b1 | b32 | TFLite b1 | b32 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in dep["models"].items():
        ms = r.get("ms_per_image", {})
        cell = lambda form, b: "%.3f" % ms[form]["b%d" % b] if form in ms and "b%d" % b in ms[form] else "-"  # noqa: E731
        L.append("| %s | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, r["parameters"], "yes" if r["check"]["bit_exact"] else "NO (%s)" % r["check"], r["bytes"]["bundle"],
            cell("bundle", 1), cell("bundle", 32), cell("bundle-dense", 1), cell("bundle-dense", 32), cell("onnx-int8", 1), cell("onnx-int8", 32),
            cell("tflite", 1), cell("tflite", 32)))
    if "sca25" in dep["models"] and "bundle_test_accuracy" in dep["models"]["sca25"]:
        L += ["", "The SCA 25%% int8 bundle's test accuracy on the runtime: %.2f%%." % (100 * dep["models"]["sca25"]["bundle_test_accuracy"])]
    return L
