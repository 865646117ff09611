"""The offline jobs the commands run: train an HRSNN on a task, export it, and the demo.

Each function returns plain JSON-able records; the CLI only formats them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from .. import __version__
from ..runtime import bundle as fmt
from ..errors import ModelError
from ..runtime.sessions import open_session
from ..tasks.protocols import classify, forecast_smape
from ..tasks.registry import load_task
from .checkpoint import save_checkpoint
from .hrsnn import HRSNN, HrsnnConfig
from .quantize import quantize_hrsnn
from .surgery import fit_io
from .train import FloatStepper, train_bptt, train_ridge_classify, train_ridge_forecast

Stage = Callable[[str], None]


def score(stepper: Any, task: Any) -> Dict[str, Any]:
    """The task metric of any steppable model form (sMAPE for forecasts, accuracy otherwise)."""
    if task.kind == "forecast":
        return forecast_smape(stepper, task.windows)
    return classify(stepper, task.x_test, task.y_test)


def train_hrsnn(task: Any, cfg: HrsnnConfig, readout: str = "ridge", epochs: int = 30, lr: float = 2e-3, progress=None):
    """Build an HRSNN sized for ``task`` and train it; returns (model, record)."""
    cfg.n_inputs, cfg.n_outputs = task.n_inputs, task.n_outputs
    return train_model(HRSNN(cfg), task, readout, epochs, lr, progress)


def train_model(model: HRSNN, task: Any, readout: str = "ridge", epochs: int = 30, lr: float = 2e-3, progress=None):
    """Train an existing HRSNN (e.g. a pruned one) on ``task``; its input and readout sizes are
    fitted to the task first (``surgery.fit_io``). Returns (model, record)."""
    cfg = model.cfg
    torch.manual_seed(cfg.seed)
    if (cfg.n_inputs, cfg.n_outputs) != (task.n_inputs, task.n_outputs):
        model = fit_io(model, task.n_inputs, task.n_outputs)
    if readout == "bptt":
        record = train_bptt(model, task, epochs=epochs, lr=lr, seed=cfg.seed, progress=progress)
    elif readout == "reservoir":
        from .reservoir import train_reservoir_classify, train_reservoir_forecast

        if task.kind == "forecast":
            record = train_reservoir_forecast(model, task.windows)
        else:
            record = train_reservoir_classify(model, task.x_train, task.y_train, task.n_classes, seed=cfg.seed)
    elif task.kind == "forecast":
        record = train_ridge_forecast(model, task.windows)
    else:
        record = train_ridge_classify(model, task.x_train, task.y_train, task.n_classes, seed=cfg.seed)
    return model, {"task": task.name, "training": record, "synapses": model.n_synapses(), **data_record(task)}


def data_record(task: Any) -> Dict[str, Any]:
    """What a checkpoint keeps of the data it was trained on, so that it exports alone: the
    source (task, file and sha256, layout, windows), the output mode and the calibration
    statistics the quantizer needs (the peak |input| of the training data)."""
    peak = float(np.max(np.abs(calibration_inputs(task)))) if np.size(calibration_inputs(task)) else 1.0
    return {"data": dict(getattr(task, "source", None) or {"task": task.name}), "output": task.output,
            "calibration": {"input_peak_abs": peak, "from": "training inputs"}}


def calibration_inputs(task: Any) -> np.ndarray:
    """Inputs that set the direct encoder's range: the training data only."""
    if task.kind == "forecast":
        return np.asarray(task.windows[0].train_x)
    return np.asarray(task.x_train)


def is_trained(record: Dict[str, Any]) -> bool:
    """Whether a checkpoint's readout was trained (``prune lnp`` writes untrained ones)."""
    return bool(record.get("training"))


def without_timings(value: Any) -> Any:
    """``value`` without its wall-clock entries (keys ending in ``seconds``), at every depth.

    A bundle's provenance holds only what the same inputs and seed reproduce, so the same
    training gives a byte-identical bundle (one content digest); timings stay in the checkpoint
    record and the reports."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not str(k).endswith("seconds")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def export_bundle(model: HRSNN, record: Dict[str, Any], task: Optional[Any], path: Path, input_bits: int = 16) -> fmt.Bundle:
    """Quantize and write ``path`` atomically; returns the bundle as written (with sha256).
    ``task`` None: the calibration statistics and output mode the checkpoint's record keeps
    (``data_record``). Same model and record (timings aside) -> the same bytes."""
    if task is None:
        if "calibration" not in record:
            raise ModelError("the checkpoint does not record its training data (written before spikeedge kept it): give --data")
        x_calib = np.array([record["calibration"]["input_peak_abs"]])
        name, output = record.get("task"), record.get("output", "sequence")
    else:
        x_calib, name, output = calibration_inputs(task), task.name, task.output
    prov = without_timings({"task": name, "training": record.get("training"), "pruning": record.get("pruning"), "spikeedge": __version__})
    if record.get("data"):
        prov["data"] = {k: v for k, v in record["data"].items() if k != "path"}  # the file's name and digest, not where it lay
    bundle = quantize_hrsnn(model, x_calib, input_bits=input_bits, output=output, provenance=prov)
    fmt.save(bundle, path)
    return fmt.load(path)


def export_conv_bundle(model: Any, record: Dict[str, Any], path: Path, data: Optional[str] = None, input_bits: int = 16) -> fmt.Bundle:
    """Fold BatchNorm, quantize a (VGG-style) conv SNN checkpoint to int8 with 500 training
    images of its task as calibration, write ``path`` atomically; returns the bundle as written."""
    from .convsnn import fold
    from .convtrain import load_images
    from .quantize_conv import quantize_folded

    images = load_images(record.get("task", "mnist"), data)
    prov = without_timings({"task": images.name, "training": record.get("training"), "pruning": record.get("pruning"),
                            "parent": record.get("parent"), "spikeedge": __version__})
    bundle = quantize_folded(fold(model), images.x_train[:500].numpy(), input_bits=input_bits, provenance=prov)
    fmt.save(bundle, path)
    return fmt.load(path)


def export_folded_bundle(net: Any, record: Dict[str, Any], path: Path, input_bits: int = 16) -> fmt.Bundle:
    """Quantize an imported (folded) conv SNN, calibrated on the input peak its record keeps
    (``spikeedge import --input-peak``), write ``path`` atomically; returns the bundle as written."""
    from .quantize_conv import quantize_folded

    peak = float(record.get("calibration", {}).get("input_peak_abs", 1.0))
    prov = without_timings({"task": record.get("task"), "training": record.get("training"), "spikeedge": __version__})
    try:
        bundle = quantize_folded(net, np.array([peak]), input_bits=input_bits, provenance=prov, output=record.get("output", "last"))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    fmt.save(bundle, path)
    return fmt.load(path)


def time_steps(bundle: fmt.Bundle, xs: np.ndarray, repeats: int = 3) -> Dict[str, float]:
    """Batch-1 runtime cost on real inputs ``xs`` (steps, n_inputs): best-of-``repeats`` ms per
    step, and synaptic operations and spikes per step."""
    session = open_session(bundle, 1)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = session.run(xs[None])
        best = min(best, time.perf_counter() - t0)
    summary = result.summary()
    return {
        "ms_per_step": 1e3 * best / len(xs),
        "synops_per_step": summary["synops_per_step"],
        "spike_rate": summary["spike_rate"],
    }


def demo(out: Path, quick: bool = False, seed: int = 0, stage: Optional[Stage] = None) -> Dict[str, Any]:
    """The main job end to end on Mackey-Glass tau = 17 (NeuroBench protocol, 30 windows).

    Build a random HRSNN, prune it with LNP before any training (half the neurons, half the
    recurrent synapses), train the readout of the pruned network (and, for comparison, of the
    dense one), score both, export the pruned int8 bundle, score it on the event-driven runtime,
    time it. Leaves ``hrsnn.ckpt.npz`` (pruned, trained), ``model.seb``, ``report.json``/``.md``.
    """
    from .lnp import LnpConfig, lnp_prune

    say = stage or (lambda _msg: None)
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    say("generating Mackey-Glass tau=17 and its 30 windows")
    task = load_task("mackey-glass")
    cfg = HrsnnConfig(n_neurons=100 if quick else 500, seed=seed, n_inputs=task.n_inputs, n_outputs=task.n_outputs)
    dense_model = HRSNN(cfg)
    say("LNP-pruning a random HRSNN of %d neurons (no task data)" % cfg.n_neurons)
    lnp = lnp_prune(dense_model, LnpConfig(target_neurons=0.5, target_synapses=0.5, seed=seed))
    say("training the readouts of the pruned and the dense network (ridge)")
    model, record = train_model(lnp.model, task)
    lnp_summary = lnp.summary()
    record["pruning"] = {"method": "lnp", **{k: v for k, v in lnp_summary.items() if k != "config"}}
    save_checkpoint(model, out / "hrsnn.ckpt.npz", record)
    dense_trained, _ = train_model(dense_model, task)
    say("scoring the float models (30 autoregressive windows)")
    float_metric = score(FloatStepper(model), task)
    dense_metric = score(FloatStepper(dense_trained), task)
    say("exporting the int8 bundle")
    bundle = export_bundle(model, record, task, out / "model.seb")
    say("scoring the int8 bundle on the event-driven runtime")
    int8_metric = score(open_session(bundle), task)
    timing = time_steps(bundle, np.asarray(task.windows[0].train_x)[:, None])
    layer = bundle.layers[0]  # counts of what runs: int8 rounds the smallest weights to zero
    syn = {"recurrent": layer.w_rec.nnz, "input": layer.w_in.nnz, "readout": int(np.count_nonzero(bundle.readout.w))}
    summary = {
        "task": "mackey-glass tau=17 (regenerated; NeuroBench protocol: 30 windows, 750 teacher-forced + 750 autoregressive)",
        "neurons": model.cfg.n_neurons,
        "dense_neurons": cfg.n_neurons,
        "synapses": {"recurrent": syn["recurrent"], "input": syn["input"], "readout": syn["readout"],
                     "total_without_readout": syn["recurrent"] + syn["input"], "total_with_readout": sum(syn.values())},
        "dense_recurrent_synapses": lnp.start["synapses"],
        "pruning": "lnp",
        "lnp": {k: lnp_summary[k] for k in ("synapses", "iterations", "stopped", "lyapunov_max", "spectral_radius", "seconds", "phase_seconds")},
        "dense_float_smape": dense_metric["smape"],
        "float_smape": float_metric["smape"],
        "int8_smape": int8_metric["smape"],
        "int8_vs_float_relative": (int8_metric["smape"] - float_metric["smape"]) / float_metric["smape"],
        "baselines_smape": {"neurobench_esn": 14.79, "neurobench_lstm": 13.37},
        "runtime_ms_per_step": timing["ms_per_step"],
        "synops_per_step": timing["synops_per_step"],
        "spike_rate": timing["spike_rate"]["hidden"],
        "bundle_bytes": (out / "model.seb").stat().st_size,
        "bundle_sha256": bundle.sha256,
        "ridge_lambda": record["training"]["lambda"],
        "seed": seed,
        "quick": quick,
        "seconds": round(time.time() - t_start, 2),
        "files": {"checkpoint": str(out / "hrsnn.ckpt.npz"), "bundle": str(out / "model.seb"), "report": str(out / "report.md")},
    }
    fmt.write_atomic(out / "report.json", json.dumps(summary, indent=2).encode("utf-8"))
    fmt.write_atomic(out / "report.md", demo_report_markdown(summary).encode("utf-8"))
    return summary


def demo_report_markdown(s: Dict[str, Any]) -> str:
    """A short human-readable report of a demo run."""
    rows = [
        ("neurons (dense -> LNP)", "%d -> %d" % (s["dense_neurons"], s["neurons"])),
        ("recurrent synapses (dense -> LNP, float)", "%d -> %d" % (s["dense_recurrent_synapses"], s["lnp"].get("synapses", s["synapses"]["recurrent"]))),
        ("int8 synapses (input + recurrent / + readout)", "%d / %d" % (s["synapses"]["total_without_readout"], s["synapses"]["total_with_readout"])),
        ("LNP", "%d iterations (%s), %.1f s, largest Lyapunov exponent %.3f / step" % (s["lnp"]["iterations"], s["lnp"]["stopped"], s["lnp"]["seconds"], s["lnp"]["lyapunov_max"])),
        ("float sMAPE: dense / LNP-pruned", "%.2f / %.2f" % (s["dense_float_smape"], s["float_smape"])),
        ("int8 sMAPE (event-driven runtime)", "%.2f (%+.1f%% vs float)" % (s["int8_smape"], 100 * s["int8_vs_float_relative"])),
        ("NeuroBench ESN / LSTM sMAPE", "14.79 / 13.37"),
        ("runtime ms per step (batch 1)", "%.3f" % s["runtime_ms_per_step"]),
        ("synaptic operations per step", "%.0f" % s["synops_per_step"]),
        ("spike rate", "%.3f" % s["spike_rate"]),
        ("bundle", "%d bytes, sha256 %s" % (s["bundle_bytes"], s["bundle_sha256"][:16])),
    ]
    lines = ["# spikeedge demo report", "", s["task"], "", "| | |", "|---|---|"]
    lines += ["| %s | %s |" % r for r in rows]
    return "\n".join(lines) + "\n"
