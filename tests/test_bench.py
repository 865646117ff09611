"""``spikeedge bench`` (``runtime/bench.py``, ``runtime/environment.py``, ``cli/bench.py``): real
runs of small models on every backend, the numbers checked against independent computations
(numpy statistics, the eval protocol, the bundle's own description, the exporters' files), a
real slow-down tripping the 5% rule, power from a board's sensor tree whose current rises
while the model runs, Ctrl-C leaving the results store untouched, and the environment record
read from fixture trees."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json

from spikeedge.runtime import backends
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bench import MAX_TRACE, bench_model, power_trace, repeatability
from spikeedge.runtime.environment import environment, thermal
from spikeedge.runtime.power_meters import EstimateMeter, Reading, open_meter

HERE = Path(__file__).resolve().parent
BOARDS = HERE / "fixtures" / "boards"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"

# The record of the shared contract: every key, at every level that has fixed keys.
KEYS = {
    "": {"schema", "run_id", "created", "label", "model", "task", "backend", "threads", "board", "protocol", "latency",
         "repeatability", "power", "workload", "environment"},
    "model": {"path", "name", "sha256", "format", "file_bytes", "footprint_bytes", "connection_sparsity", "neurons", "synapses", "pruning"},
    "task": {"name", "metric", "value", "higher_is_better", "samples"},
    "protocol": {"batch", "warmup", "trials", "samples_per_trial", "steps_per_sample"},
    "latency": {"mean_ms", "sem_ms", "p50_ms", "p99_ms", "throughput_per_s", "trial_means_ms", "samples_ms", "preprocess_ms"},
    "repeatability": {"ok", "max_deviation", "warning"},
    "power": {"label", "meter", "rails", "sampling_rate_hz", "idle_w", "active_w", "dynamic_w", "energy_per_inference_j", "trace"},
    "workload": {"activation_sparsity", "synops_per_inference", "spike_rate"},
    "environment": {"hostname", "kernel", "machine", "cpu_model", "governor", "temperature_c", "throttled", "python", "packages",
                    "spikeedge", "spikeedge_build"},
}


def check_keys(record: Dict[str, Any]) -> None:
    for part, keys in KEYS.items():
        node = record if not part else record[part]
        if node is None:
            continue
        missing = keys - set(node)
        assert not missing, "%s lacks %s" % (part or "record", sorted(missing))


# ----------------------------------------------------------------------------- models


def mackey_glass_files(folder: Path) -> Dict[str, Path]:
    """A small recurrent SNN trained on Mackey-Glass (one input, one output: it can forecast
    autoregressively), as a bundle, an ONNX and a TFLite file in ``folder``."""
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.offline.export_tflite import export_tflite
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import calibration_inputs, train_hrsnn
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass", repeats=3)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=40, seed=0))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, calibration_inputs(task), output=task.output)))
    fmt.save(bundle, folder / "m.seb")
    export_onnx(bundle, folder / "m.onnx")
    export_tflite(bundle, folder / "m.tflite")
    return {"event": folder / "m.seb", "onnx": folder / "m.onnx", "tflite": folder / "m.tflite"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: Any) -> Dict[str, Path]:
    return mackey_glass_files(tmp_path_factory.mktemp("bench-models"))


@pytest.fixture(scope="module")
def conv(tmp_path_factory: Any) -> Dict[str, Path]:
    """An untrained small conv SNN for digits (its accuracy is near chance; what matters is
    that every count follows the file)."""
    from spikeedge.offline.convsnn import ConvSNN, fold
    from spikeedge.offline.convtrain import config_for, load_images
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.offline.quantize_conv import quantize_folded

    data = load_images("digits")
    net = ConvSNN(config_for(data, width=0.25, seed=0))
    net.eval()
    bundle = fmt.loads(fmt.dumps(quantize_folded(fold(net), data.x_train[:100].numpy())))
    folder = tmp_path_factory.mktemp("bench-conv")
    fmt.save(bundle, folder / "c.seb")
    export_onnx(bundle, folder / "c.onnx")
    return {"event": folder / "c.seb", "onnx": folder / "c.onnx"}


class Wrapped:
    """A real session, with something done at chosen ``start()`` calls (one per inference):
    ``hooks[k]()`` runs inside the k-th inference (counted from 1, warm-up included)."""

    def __init__(self, session: Any, hooks: Dict[int, Any]) -> None:
        self.__dict__["_s"] = session
        self.__dict__["_hooks"] = hooks
        self.__dict__["starts"] = 0

    def start(self, *a: Any, **kw: Any) -> None:
        self.__dict__["starts"] += 1
        self._s.start(*a, **kw)
        hook = self._hooks.get(self.starts)
        if hook is not None:
            hook()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._s, name, value)


def wrap_sessions(monkeypatch: Any, hooks: Dict[int, Any]) -> None:
    real = backends.open_model
    monkeypatch.setattr(backends, "open_model", lambda *a, **kw: Wrapped(real(*a, **kw), hooks))


# ----------------------------------------------------------------------------- the record and its statistics


def test_record_follows_the_contract_and_its_numbers_recompute(files: Dict[str, Path]) -> None:
    from spikeedge.results.store import validate
    from spikeedge.tasks.protocols import forecast_smape
    from spikeedge.tasks.registry import load_task

    r = bench_model(files["event"], "mackey-glass", trials=3, warmup=1, samples=3, meter=EstimateMeter(), label="t1")
    check_keys(r)
    validate(json.loads(json.dumps(r, allow_nan=False)))  # what the store accepts, as JSON
    assert r["schema"] == "spikeedge.bench/1" and r["label"] == "t1" and r["backend"] == "event" and r["model"]["format"] == "bundle"
    assert r["protocol"] == {"batch": 1, "warmup": 1, "trials": 3, "samples_per_trial": 3, "steps_per_sample": 1500}

    lat = r["latency"]
    ms = np.array(lat["samples_ms"])
    assert ms.shape == (9,) and np.all(ms > 0)
    assert lat["mean_ms"] == pytest.approx(ms.mean(), rel=1e-12)
    assert lat["sem_ms"] == pytest.approx(ms.std(ddof=1) / math.sqrt(9), rel=1e-9)
    assert lat["p50_ms"] == pytest.approx(np.median(ms), rel=1e-12)
    assert lat["p99_ms"] == pytest.approx(np.percentile(ms, 99), rel=1e-12)
    assert lat["trial_means_ms"] == pytest.approx(list(ms.reshape(3, 3).mean(axis=1)), rel=1e-12)
    assert lat["throughput_per_s"] == pytest.approx(1000 / ms.mean(), rel=1e-12)
    assert 0 < lat["preprocess_ms"] < lat["mean_ms"]
    dev = max(abs(m - ms.mean()) / ms.mean() for m in lat["trial_means_ms"])
    assert r["repeatability"]["max_deviation"] == pytest.approx(dev) and r["repeatability"]["ok"] == (dev <= 0.05)

    # the task metric is what `spikeedge eval` computes on the same windows
    windows = load_task("mackey-glass", repeats=3).windows
    assert r["task"]["value"] == pytest.approx(forecast_smape(backends.open_model(files["event"]), windows)["smape"], rel=1e-12)
    assert r["task"]["metric"] == "smape" and not r["task"]["higher_is_better"] and r["task"]["samples"] == 3

    # static figures: the bundle's own description; dense operations: every weight, every step
    from spikeedge.runtime.summary import describe

    bundle = fmt.load(files["event"])
    d = describe(bundle, files["event"])
    m = r["model"]
    assert m["footprint_bytes"] == d["footprint_bytes_dense"] and m["file_bytes"] == d["file_bytes"]
    assert m["synapses"] == d["synapses"]["without_readout"] and m["neurons"] == d["neurons"] == 40
    assert m["connection_sparsity"] == pytest.approx(d["connection_sparsity"]["without_readout"])
    layer = bundle.layers[0]
    dense = (layer.w_in.n_sources * layer.w_in.n_targets + layer.n * layer.n) * 1500
    wl = r["workload"]
    assert wl["synops_per_inference"]["dense"] == pytest.approx(dense)
    assert 0 < wl["synops_per_inference"]["effective"] < dense
    assert wl["activation_sparsity"] == pytest.approx(1 - wl["spike_rate"]["hidden"])  # one layer
    # the estimate meter: effective operations x 0.03 pJ (int8 accumulate), labelled as such
    p = r["power"]
    assert p["label"] == "estimate" and p["idle_w"] is None
    assert p["energy_per_inference_j"]["total"] == pytest.approx(wl["synops_per_inference"]["effective"] * 0.03e-12, rel=1e-12)
    assert p["active_w"] == pytest.approx(p["energy_per_inference_j"]["total"] / (lat["mean_ms"] / 1e3), rel=1e-12)


def test_the_three_backends_count_the_same_network(files: Dict[str, Path]) -> None:
    import onnx
    from ai_edge_litert import schema_py_generated as schema
    from onnx import numpy_helper

    recs = {k: bench_model(f, "mackey-glass", trials=1, warmup=0, samples=2) for k, f in files.items()}
    ev = recs["event"]
    for kind in ("onnx", "tflite"):
        r = recs[kind]
        assert r["backend"] == kind and r["model"]["format"] == kind
        for key in ("synapses", "neurons", "connection_sparsity"):
            assert r["model"][key] == ev["model"][key], key
        assert r["workload"]["synops_per_inference"]["dense"] == ev["workload"]["synops_per_inference"]["dense"]
        assert r["workload"]["synops_per_inference"]["effective"] == pytest.approx(ev["workload"]["synops_per_inference"]["effective"], rel=0.02)
        assert r["task"]["value"] == pytest.approx(ev["task"]["value"], rel=0.05)
        assert r["power"] is None and r["model"]["sha256"] != ev["model"]["sha256"]
    # footprints of the graph files: what the onnx package and the TFLite schema say they hold
    model = onnx.load(str(files["onnx"]))
    assert recs["onnx"]["model"]["footprint_bytes"] == sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    tfl = schema.Model.GetRootAsModel(files["tflite"].read_bytes(), 0)
    meta = {tfl.Metadata(i).Buffer() for i in range(tfl.MetadataLength())}
    expect = sum(tfl.Buffers(i).DataLength() for i in range(tfl.BuffersLength()) if i not in meta)
    assert recs["tflite"]["model"]["footprint_bytes"] == expect > 0


def test_conv_model_on_a_classification_task(conv: Dict[str, Path]) -> None:
    from spikeedge.runtime.summary import describe
    from spikeedge.tasks.protocols import classify
    from spikeedge.tasks.registry import load_task

    bundle = fmt.load(conv["event"])
    d = describe(bundle)
    task = load_task("digits")
    for kind in ("event", "onnx"):
        r = bench_model(conv[kind], "digits", trials=1, warmup=1, samples=12)
        assert r["task"]["metric"] == "accuracy" and r["task"]["higher_is_better"] and r["task"]["samples"] == 12
        acc = classify(backends.open_model(conv[kind]), np.asarray(task.x_test[:12], np.float64), task.y_test[:12])["accuracy"]
        assert r["task"]["value"] == pytest.approx(acc)
        assert r["protocol"]["steps_per_sample"] == bundle.time_steps
        assert r["model"]["synapses"] == d["synapses"]["without_readout"]
        assert r["model"]["connection_sparsity"] == pytest.approx(d["connection_sparsity"]["without_readout"])
        assert r["model"]["neurons"] == d["neurons"]
        assert r["workload"]["synops_per_inference"]["dense"] == pytest.approx(d["macs_per_inference"])
        assert 0 <= r["workload"]["activation_sparsity"] <= 1


# ----------------------------------------------------------------------------- repeatability


def test_a_real_slow_down_in_one_trial_trips_the_5_percent_rule(files: Dict[str, Path], monkeypatch: Any) -> None:
    # warm-up 1, 3 samples: inferences 5-7 are the second trial; each sleeps 60 ms inside its timing
    slow = {k: (lambda: time.sleep(0.06)) for k in (5, 6, 7)}
    wrap_sessions(monkeypatch, slow)
    r = bench_model(files["event"], "mackey-glass", trials=3, warmup=1, samples=3)
    means = r["latency"]["trial_means_ms"]
    assert means[1] > max(means[0], means[2]) + 50  # the sleep really was timed
    rep = r["repeatability"]
    assert not rep["ok"] and rep["max_deviation"] > 0.05
    assert "5%" in rep["warning"] and rep["warning"] in r["notes"]


def test_repeatability_rule() -> None:
    assert repeatability([100.0, 104.9, 95.1], 100.0)["ok"]
    bad = repeatability([100.0, 100.0, 112.0], 104.0)
    assert not bad["ok"] and bad["max_deviation"] == pytest.approx(8 / 104) and "7.7%" in bad["warning"]


# ----------------------------------------------------------------------------- power


def board_tree(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(str(BOARDS / name), str(tmp_path / name)))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(str(tmp), str(path))


def test_idle_active_and_dynamic_power_from_the_board_sensor(files: Dict[str, Path], tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """Jetson Orin NX tree: VDD_IN idles at 5056 mV x 1379 mA; from the first timed inference on
    the current is 2379 mA. Idle, active and dynamic power follow, and energy = power x time."""
    root = board_tree(tmp_path, "jetson-orin-nx")
    hw = root / ORIN_HWMON
    idle_w, busy_w = 5056 * 1379 / 1e6, 5056 * 2379 / 1e6
    # The numpy core: its inferences are long against the sensor's 5 ms update interval; the
    # compiled core's (~10x shorter) would let one lagging reading shift the window's mean by > 2%.
    monkeypatch.setenv("SPIKEEDGE_CORE", "numpy")
    wrap_sessions(monkeypatch, {2: lambda: write_atomic(hw / "curr1_input", "2379")})  # warm-up is inference 1
    db = tmp_path / "r.sqlite"
    rc, out, err = call(capsys, "bench", files["event"], "--task", "mackey-glass", "--trials", "3", "--samples", "3", "--warmup", "1",
                        "--meter", "auto", "--root", root, "--baseline", "0.3", "--db", db, "--json")
    assert rc == 0, err
    [r] = one_json(out)["runs"]
    assert r["board"] == "jetson-orin-nx"
    p = r["power"]
    assert p["label"] == "measured" and p["meter"] == "ina3221-hwmon" and "VDD_IN" in p["rails"] and p["total_rule"] == "VDD_IN"
    assert p["idle_w"] == pytest.approx(idle_w, rel=1e-9)  # measured before the change
    assert p["active_w"] == pytest.approx(busy_w, rel=0.02)  # the change lands at the window's start, within one 5 ms reading
    assert p["dynamic_w"] == pytest.approx(p["active_w"] - p["idle_w"], rel=1e-12)
    seconds = r["latency"]["mean_ms"] / 1e3
    assert p["energy_per_inference_j"]["total"] == pytest.approx(p["active_w"] * seconds, rel=1e-12)
    assert p["energy_per_inference_j"]["dynamic"] == pytest.approx(p["dynamic_w"] * seconds, rel=1e-12)
    assert 0 < p["sampling_rate_hz"] <= 1 / 0.005 + 1  # never faster than the sensor's update_interval
    t, w = p["trace"]["t_s"], p["trace"]["w"]
    assert 10 < len(t) == len(w) <= MAX_TRACE and t == sorted(t)
    assert min(w) == pytest.approx(idle_w) and max(w) == pytest.approx(busy_w)
    assert not [th for th in threading.enumerate() if th.name == "power-sampler"]


def test_power_trace_is_binned_to_2000_points() -> None:
    rs = [Reading(0.001 * i, 1000.0 + (i % 7), {}) for i in range(5003)]
    tr = power_trace(rs)
    assert len(tr["t_s"]) == len(tr["w"]) == MAX_TRACE
    assert np.mean(tr["w"]) == pytest.approx(np.mean([r.total_mw / 1e3 for r in rs]), rel=1e-3)  # bins keep the mean
    assert tr["t_s"][0] == pytest.approx(0.0005, abs=1e-3) and tr["t_s"][-1] == pytest.approx(5.0, abs=0.01)


def test_no_meter_means_no_power_and_a_note(files: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "bench", files["event"], "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0",
                        "--root", tmp_path, "--no-store", "--json")
    assert rc == 0, err
    res = one_json(out)
    [r] = res["runs"]
    assert r["power"] is None and r["board"] == "unknown" and any("no power figures" in n for n in r["notes"])
    assert res["stored"] is False and res["run_ids"] is None


def test_a_declared_board_is_recorded_with_a_note(files: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    """Where detection cannot tell (an empty root here; qemu in the field) --board names the profile."""
    base = ["bench", files["event"], "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0", "--root", tmp_path,
            "--meter", "none", "--no-store"]
    rc, out, err = call(capsys, *base, "--board", "rpi4", "--json")
    assert rc == 0, err
    [r] = one_json(out)["runs"]
    assert r["board"] == "rpi4" and any("rpi4 as declared" in n and "unknown" in n for n in r["notes"])
    rc, out, err = call(capsys, *base, "--board", "rpi9")
    assert rc == 2 and out == "" and "rpi9" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the store and Ctrl-C


def test_cli_stores_one_record_per_backend(files: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    from spikeedge.results.store import Store

    db = tmp_path / "r.sqlite"
    rc, out, err = call(capsys, "bench", files["event"], "--backend", "event,onnx,tflite", "--task", "mackey-glass", "--trials", "2",
                        "--samples", "2", "--warmup", "1", "--meter", "estimate", "--label", "v1", "--db", db, "--json")
    assert rc == 0, err
    res = one_json(out)
    assert [r["backend"] for r in res["runs"]] == ["event", "onnx", "tflite"] and res["db"] == str(db)
    with Store(db) as store:
        stored = store.runs()
    assert sorted(r["run_id"] for r in stored) == sorted(res["run_ids"]) == sorted(r["run_id"] for r in res["runs"])
    by_id = {r["run_id"]: r for r in stored}
    for r in res["runs"]:
        assert by_id[r["run_id"]]["latency"] == r["latency"] and by_id[r["run_id"]]["label"] == "v1"
    # the human form is a table per run, not JSON
    rc, human, err = call(capsys, "bench", files["onnx"], "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0",
                          "--meter", "estimate", "--no-store")
    assert rc == 0 and "execution time" in human and not human.lstrip().startswith("{")


def test_ctrl_c_mid_trial_stores_nothing(files: Dict[str, Path], tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """Three backends; the first finishes, Ctrl-C lands in the second one's second trial: the
    store keeps only what was there before (no record of the finished first backend either)."""
    import spikeedge.cli.bench as cli_bench
    from spikeedge.results.store import Store

    db = tmp_path / "r.sqlite"
    args = ["--task", "mackey-glass", "--trials", "2", "--samples", "2", "--warmup", "1", "--meter", "ina3221-hwmon",
            "--root", board_tree(tmp_path, "jetson-orin-nx"), "--baseline", "0.05", "--db", db, "--json"]
    rc, out, err = call(capsys, "bench", files["event"], *args)
    assert rc == 0, err
    before = one_json(out)["run_ids"]
    seen: List[str] = []
    real = cli_bench._report

    def interrupt(bar: Any, tid: Any, done: int, total: int, text: str) -> None:
        seen.append(text)
        if text.startswith("m.onnx: trial 2"):
            raise KeyboardInterrupt
        real(bar, tid, done, total, text)

    monkeypatch.setattr(cli_bench, "_report", interrupt)
    rc, out, err = call(capsys, "bench", files["event"], "--backend", "event,onnx,tflite", *args)
    assert rc == 130 and out == "" and "interrupted" in err
    assert any(s.startswith("m.seb: trial 2") for s in seen) and seen[-1].startswith("m.onnx: trial 2")
    with Store(db) as store:
        assert [r["run_id"] for r in store.runs()] == before
    assert not [th for th in threading.enumerate() if th.name == "power-sampler"]  # the meter's thread was stopped


def test_library_interrupt_stops_the_meter(files: Dict[str, Path], tmp_path: Path) -> None:
    root = board_tree(tmp_path, "jetson-orin-nx")

    def progress(done: int, total: int, phase: str) -> None:
        if phase == "trial 1/2" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bench_model(files["event"], "mackey-glass", trials=2, warmup=1, samples=2, meter=open_meter("ina3221-hwmon", root=str(root)),
                    root=str(root), baseline_s=0.05, progress=progress)
    assert not [th for th in threading.enumerate() if th.name == "power-sampler"]


@pytest.mark.parametrize("argv,names", [
    (["MISSING", "--task", "mackey-glass"], ["missing.seb"]),
    (["SEB", "--backend", "onnx,cuda", "--task", "mackey-glass"], ["--backend", "cuda"]),
    (["SEB", "--backend", "onnx", "--task", "mackey-glass"], ["m.seb", "onnx"]),
    (["SEB", "SEB", "--task", "mackey-glass"], ["two event models"]),
    (["ALONE", "--backend", "event,onnx", "--task", "mackey-glass"], ["--backend onnx", "alone.onnx"]),
    (["SEB", "--task", "mackey-glass", "--trials", "0", "--no-store"], ["--trials 0", ">= 1"]),
    (["SEB", "--task", "mackey-glass", "--samples", "0", "--no-store"], ["--samples 0", ">= 1"]),
    (["SEB", "--task", "mackey-glass", "--warmup", "-1", "--no-store"], ["--warmup -1", ">= 0"]),
    (["SEB", "--task", "digits", "--no-store"], ["m.seb", "takes 1 input", "digits gives 64", "--task"]),
    (["ONNX", "--task", "digits", "--no-store"], ["m.onnx", "takes 1 input", "digits gives 64", "--task"]),
    (["SEB", "--task", "weather", "--no-store"], ["weather"]),
    (["SEB", "--task", "mackey-glass", "--meter", "flux-capacitor", "--no-store"], ["flux-capacitor"]),
])
def test_user_errors(files: Dict[str, Path], tmp_path: Path, capsys: Any, argv: List[str], names: List[str]) -> None:
    alone = tmp_path / "alone.seb"
    shutil.copy(str(files["event"]), str(alone))
    subst = {"SEB": str(files["event"]), "ONNX": str(files["onnx"]), "MISSING": str(tmp_path / "missing.seb"), "ALONE": str(alone)}
    rc, out, err = call(capsys, "bench", *[subst.get(a, a) for a in argv], "--db", tmp_path / "r.sqlite")
    assert_user_error(rc, out, err, *names)
    assert not (tmp_path / "r.sqlite").exists()


def test_a_conv_model_on_a_forecast_task_is_a_user_error(conv: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    """Was a ValueError traceback from a reshape deep in the conv runtime."""
    rc, out, err = call(capsys, "bench", conv["event"], "--task", "mackey-glass", "--no-store", "--samples", "1", "--trials", "1")
    assert_user_error(rc, out, err, "c.seb", "takes 64 input", "mackey-glass gives 1", "--task")


@pytest.mark.parametrize("pruning,expected", [
    ({"method": "sca", "config": {"density": 0.25}, "channels": {"kept": 40, "total": 80, "density": 0.5}}, {"method": "sca", "density": 0.5}),
    ({"method": "lnp", "kept_synapses": 0.3, "kept_neurons": 0.5}, {"method": "lnp", "density": 0.3}),
    ({"method": "none"}, {"method": "none", "density": 1.0}),
    ({"method": "magnitude", "density": 0.2}, {"method": "magnitude", "density": 0.2}),
])
def test_kept_density_from_each_pruning_record(tmp_path: Path, pruning: Dict[str, Any], expected: Dict[str, Any]) -> None:
    """`spikeedge prune sca` writes the kept channel fraction under pruning.channels.density: the
    record had density null for every SCA model, so the report's Pareto points had no "d="."""
    from spikeedge.offline.convsnn import ConvSNN, fold
    from spikeedge.offline.convtrain import config_for, load_images
    from spikeedge.offline.quantize_conv import quantize_folded

    data = load_images("digits")
    net = ConvSNN(config_for(data, width=0.25, seed=0))
    net.eval()
    fmt.save(quantize_folded(fold(net), data.x_train[:20].numpy(), provenance={"pruning": pruning}), tmp_path / "p.seb")
    rec = bench_model(tmp_path / "p.seb", "digits", trials=1, warmup=0, samples=1)
    assert rec["model"]["pruning"] == expected


def test_a_board_profile_of_another_architecture_is_not_believed(files: Dict[str, Path], monkeypatch: Any) -> None:
    """An arm64 root run under qemu-user on an x86 host reads the host's /proc/cpuinfo, and its
    runs were stored as board x86-dev next to the host's own: two machines under one name."""
    import platform

    from spikeedge.runtime import boards

    pi = boards.detect(HERE / "fixtures" / "boards" / "rpi4")  # what a Pi 4's root says: an aarch64 profile
    assert pi.board is not None and pi.board.arch == "aarch64"
    monkeypatch.setattr(boards, "detect", lambda root="/", **kw: pi)  # ... read on this machine's own root "/"
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert bench_model(files["event"], "mackey-glass", trials=1, warmup=0, samples=1)["board"] == "rpi4"
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")  # but the interpreter runs on x86: emulated
    rec = bench_model(files["event"], "mackey-glass", trials=1, warmup=0, samples=1)
    assert rec["board"] == "unknown"
    assert any("rpi4" in n and "x86_64" in n and "emulated" in n for n in rec["notes"]), rec["notes"]


def test_siblings_are_found_for_the_backends_asked(files: Dict[str, Path]) -> None:
    from spikeedge.cli.bench import pick_models

    assert pick_models([files["event"]], "event,onnx,tflite") == [files["event"], files["onnx"], files["tflite"]]
    assert pick_models([files["tflite"], files["event"]], None) == [files["tflite"], files["event"]]


# ----------------------------------------------------------------------------- the environment record


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def put(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


def test_environment_of_a_raspberry_pi_tree(tmp_path: Path) -> None:
    root = board_tree(tmp_path, "rpi5")
    put(root, "proc/sys/kernel/hostname", "pi5-lab")
    put(root, "proc/sys/kernel/ostype", "Linux")
    put(root, "proc/sys/kernel/osrelease", "6.6.51+rpt-rpi-2712")
    put(root, "proc/sys/kernel/version", "#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3")
    for cpu in range(4):
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cpu, "ondemand")
    put(root, "sys/class/thermal/thermal_zone0/temp", "48312")
    put(root, "sys/class/thermal/thermal_zone1/temp", "51000")
    executable(root / "usr/bin/vcgencmd", '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x50005"\n')
    env = environment(str(root))
    assert env["hostname"] == "pi5-lab" and env["kernel"] == "Linux 6.6.51+rpt-rpi-2712 #1 SMP PREEMPT Debian 1:6.6.51-1+rpt3"
    assert env["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0" and env["governor"] == "ondemand"
    assert env["python"] == "%d.%d.%d" % sys.version_info[:3] and env["packages"]["numpy"] == np.__version__
    assert thermal(str(root)) == {"temperature_c": 51.0, "throttled": "0x50005"}


def test_environment_of_a_jetson_tree_with_a_capped_cpu(tmp_path: Path) -> None:
    root = board_tree(tmp_path, "jetson-orin-nx")
    for cpu, cap in ((0, "1984000"), (1, "1510400")):
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cpu, "schedutil")
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_max_freq" % cpu, cap)
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq" % cpu, "1984000")
    put(root, "sys/class/thermal/cooling_device0/type", "cpufreq-cpu0")
    put(root, "sys/class/thermal/cooling_device0/cur_state", "0")
    put(root, "sys/class/thermal/cooling_device0/max_state", "10")
    assert thermal(str(root)) == {"temperature_c": None, "throttled": "cpu1 capped at 1510 of 1984 MHz"}
    put(root, "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq", "1984000")
    assert thermal(str(root))["throttled"] == "ok"
    put(root, "sys/class/thermal/cooling_device0/cur_state", "3")
    assert thermal(str(root))["throttled"] == "cpufreq-cpu0 3/10"
    env = environment(str(root))
    assert env["cpu_model"].startswith("NVIDIA Jetson Orin NX") and env["governor"] == "schedutil"


def test_nothing_readable_is_none(tmp_path: Path) -> None:
    env = environment(str(tmp_path))
    assert env["hostname"] is None and env["kernel"] is None and env["cpu_model"] is None and env["governor"] is None
    assert thermal(str(tmp_path)) == {"temperature_c": None, "throttled": None}


def test_bench_records_the_state_before_and_after(files: Dict[str, Path], tmp_path: Path, monkeypatch: Any) -> None:
    """The temperature file is rewritten during the trials: before and after differ."""
    root = board_tree(tmp_path, "rpi5")
    zone = root / "sys/class/thermal/thermal_zone0/temp"
    put(root, "sys/class/thermal/thermal_zone0/temp", "45000")
    executable(root / "usr/bin/vcgencmd", '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x0"\n')
    wrap_sessions(monkeypatch, {2: lambda: write_atomic(zone, "71500")})
    r = bench_model(files["event"], "mackey-glass", trials=1, warmup=1, samples=1, root=str(root))
    env = r["environment"]
    assert r["board"] == "rpi5"
    assert env["temperature_c"] == {"before": 45.0, "after": 71.5} and env["throttled"] == {"before": "0x0", "after": "0x0"}
