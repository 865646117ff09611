"""One sparse network, several tasks: train one LNP network per seed, fit it (and the dense network
it came from) to Mackey-Glass, Lorenz, sunspots, digits and MNIST-1D, and report each task for
both networks, two readouts, the int8 model on the event runtime, and simple non-spiking baselines.

    python benchmarks/lnp_tasks.py --seeds 0 1 2 3 4 --parts DIR      # one JSON part per seed
    python benchmarks/lnp_tasks.py --render DIR                       # -> docs/results/lnp_tasks.{md,json}

Readouts: ``ridge`` (the existing one: current traces; forecasts choose lambda on the last 150
training points) and ``reservoir`` (``offline/reservoir.py``: delayed trace taps, input gain and
lambda chosen on held-out training blocks). The int8 model is the ``reservoir`` one, quantized
(``offline/quantize.py``) and run on the numpy event runtime (a delayed readout has no compiled
core yet). Forecast scores: sMAPE (NeuroBench's) and NRMSE = RMSE / std of the whole series, both
averaged over the windows. Lorenz is forecast 55 steps (one Lyapunov time: largest exponent 0.906,
dt 0.02) instead of 750, where every model's NRMSE is about 1. The LNP network is pruned once per
seed (``LnpConfig`` defaults: keep 50% of neurons and 50% of recurrent synapses) and serves all
tasks; only its input and readout weights are fitted per task.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from spikeedge.offline import lnp as lnp_pkg
from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
from spikeedge.offline.pipeline import calibration_inputs, score
from spikeedge.offline.quantize import quantize_hrsnn
from spikeedge.offline.reservoir import train_reservoir_classify, train_reservoir_forecast
from spikeedge.offline.surgery import fit_io
from spikeedge.offline.train import FloatStepper, train_ridge_classify, train_ridge_forecast
from spikeedge.runtime.sessions import open_session
from spikeedge.tasks.metrics import smape
from spikeedge.tasks.protocols import forecast_windows
from spikeedge.tasks.registry import Windows, load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lnp_tasks_baselines import classify_baselines, forecast_model  # noqa: E402
from lnp_tasks_report import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = ("mackey-glass", "lorenz", "sunspots", "digits", "mnist1d")
LORENZ_HORIZON = 55


def load(name: str) -> Any:
    if name == "lorenz":
        return load_task("lorenz", windows=Windows(test=LORENZ_HORIZON))
    return load_task(name, seed=0)  # digits: one split for every seed (the networks vary)


def forecast_scores(preds: np.ndarray, task: Any) -> Dict[str, float]:
    scale = float(np.std(task.series))
    sm = [smape(np.ravel(w.test_y), np.ravel(p)) for w, p in zip(task.windows, preds)]
    nr = [float(np.sqrt(np.mean((np.ravel(w.test_y) - np.ravel(p)) ** 2)) / scale) if np.all(np.isfinite(p)) else float("inf")
          for w, p in zip(task.windows, preds)]
    return {"smape": float(np.mean(sm)), "nrmse": float(np.mean(nr))}


def evaluate(stepper: Any, task: Any) -> Dict[str, float]:
    if task.kind == "forecast":
        return forecast_scores(forecast_windows(stepper, task.windows), task)
    return {"accuracy": score(stepper, task)["accuracy"]}


def protocol(task: Any) -> Dict[str, Any]:
    """Washout, held-out block (the test horizon, at most 150 steps) and tap spacings of a
    forecast task: the sunspot windows hold 200 years, the others 750 steps."""
    horizon = min(150, len(task.windows[0].test_y))
    if task.name == "sunspots":
        return {"washout": 20, "block": max(horizon, 20), "spacings": (0, 1, 2)}
    return {"washout": 100, "block": horizon, "spacings": (0, 3, 6)}


def fit(net: HRSNN, task: Any, readout: str, seed: int):
    model = fit_io(copy.deepcopy(net), task.n_inputs, task.n_outputs)
    torch.manual_seed(seed)
    if task.kind == "forecast":
        p = protocol(task)
        if readout == "reservoir":
            rec = train_reservoir_forecast(model, task.windows, washout=p["washout"], block=p["block"], spacings=p["spacings"])
        elif readout == "reservoir, taps at the delay":  # spacing 6 = the equation's 17 / (197 / 75) = 6.5 samples
            rec = train_reservoir_forecast(model, task.windows, washout=p["washout"], block=p["block"], spacings=(6,))
        else:
            rec = train_ridge_forecast(model, task.windows, washout=p["washout"], val_steps=p["block"])
    else:
        fn = train_reservoir_classify if readout == "reservoir" else train_ridge_classify
        rec = fn(model, task.x_train, task.y_train, task.n_classes, seed=seed)
    return model, rec


def run_seed(seed: int, tasks: List[str], say) -> Dict[str, Any]:
    torch.manual_seed(seed)
    dense = HRSNN(HrsnnConfig(seed=seed))
    t0 = time.perf_counter()
    res = lnp_pkg.lnp_prune(copy.deepcopy(dense), lnp_pkg.LnpConfig(seed=seed))
    lnp_s = time.perf_counter() - t0
    nets = {"dense": dense, "LNP": res.model}
    out: Dict[str, Any] = {"seed": seed, "lnp": {"seconds": round(lnp_s, 1), "neurons": res.summary()["neurons"],
                                                 "synapses": res.summary()["synapses"]}, "rows": []}
    say("seed %d: LNP %.0f s -> %d neurons, %d synapses" % (seed, lnp_s, out["lnp"]["neurons"], out["lnp"]["synapses"]))
    for name in tasks:
        task = load(name)
        for net_name, net in nets.items():
            for readout in ("ridge", "reservoir") + (("reservoir, taps at the delay",) if name == "mackey-glass" else ()):
                t1 = time.perf_counter()
                model, rec = fit(net, task, readout, seed)
                row = {"task": name, "network": net_name, "readout": readout, "neurons": model.cfg.n_neurons,
                       "recurrent_synapses": int(model.n_synapses()["recurrent"]),
                       "choice": {k: rec[k] for k in ("lambda", "input_gain", "delays", "tau_trace") if k in rec},
                       "float": evaluate(FloatStepper(model), task)}
                if readout.startswith("reservoir"):
                    bundle = quantize_hrsnn(model, calibration_inputs(task), output=task.output)
                    batch = len(task.windows) if task.kind == "forecast" else 256
                    session = open_session(bundle, batch)
                    row["int8"] = evaluate(session, task)
                    row["int8_core"] = session.core
                row["seconds"] = round(time.perf_counter() - t1, 1)
                out["rows"].append(row)
                say("seed %d %s %s %s: %s" % (seed, name, net_name, readout, {k: v for k, v in row.items() if k in ("float", "int8", "choice")}))
        t1 = time.perf_counter()
        if task.kind == "forecast":
            for kind in ("mean", "ar", "esn"):
                p = protocol(task)
                preds, info = forecast_model(kind, task.windows, washout=p["washout"], block=p["block"], seed=seed)
                out["rows"].append({"task": name, "network": "baseline", "readout": kind, "float": forecast_scores(preds, task), "choice": info})
        else:
            for kind, acc in classify_baselines(task, seed=seed).items():
                out["rows"].append({"task": name, "network": "baseline", "readout": kind, "float": {"accuracy": acc}})
        say("seed %d %s baselines %.0f s" % (seed, name, time.perf_counter() - t1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--parts", type=Path, default=Path("lnp_tasks_parts"), help="folder of the per-seed JSON parts")
    ap.add_argument("--render", type=Path, help="merge the parts in this folder into the report")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "lnp_tasks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    def say(msg: str) -> None:
        print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)

    if args.render:
        parts = [json.loads(p.read_text()) for p in sorted(args.render.glob("seed-*.json"))]
        write_report(parts, args.out, {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                                       "machine": platform.machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        say("wrote %s.md and .json from %d seeds" % (args.out, len(parts)))
        return 0
    args.parts.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        part = run_seed(seed, args.tasks, say)
        tmp = args.parts / ("seed-%d.json.tmp" % seed)
        tmp.write_text(json.dumps(part, indent=1))
        tmp.replace(args.parts / ("seed-%d.json" % seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
