"""``spikeedge bench`` (``measure/bench.py``, ``cli/bench.py``): real runs of small models on every
backend, the numbers checked against independent computations (numpy statistics, the eval
protocol, the bundle's own description, the exporters' files), a real slow-down tripping the 5%
rule, Ctrl-C leaving the results store untouched. Power from a board's sensors and the
environment record: tests/test_bench_board.py."""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json

from spikeedge.runtime import backends
from spikeedge.runtime import bundle as fmt
from spikeedge.measure.bench import bench_model, repeatability
from spikeedge.board.meters import EstimateMeter, open_meter
from bench_helpers import HERE, board_tree, mackey_glass_files, wrap_sessions


# The record of the shared contract: every key, at every level that has fixed keys.
KEYS = {
    "": {"schema", "run_id", "created", "label", "model", "task", "backend", "threads", "board", "protocol", "latency",
         "repeatability", "power", "workload", "environment"},
    "model": {"path", "name", "sha256", "format", "file_bytes", "footprint_bytes", "connection_sparsity", "neurons", "synapses", "pruning"},
    "task": {"name", "metric", "value", "higher_is_better", "samples", "std", "sem"},
    "protocol": {"batch", "warmup", "trials", "samples_per_trial", "steps_per_sample"},
    "latency": {"mean_ms", "sem_ms", "p50_ms", "p99_ms", "throughput_per_s", "trial_means_ms", "samples_ms", "preprocess_ms"},
    "repeatability": {"ok", "max_deviation", "warning"},
    "power": {"label", "meter", "rails", "sampling_rate_hz", "idle_w", "active_w", "dynamic_w", "energy_per_inference_j", "trace"},
    "workload": {"ActivationSparsity", "SynapticOperations", "activation_sparsity", "synops_per_inference", "spike_rate"},
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
    # its spread over the windows: the sample standard deviation and the standard error
    per_window = [forecast_smape(backends.open_model(files["event"]), [w])["smape"] for w in windows]
    assert r["task"]["std"] == pytest.approx(np.std(per_window, ddof=1), rel=1e-9) and r["task"]["std"] > 0
    assert r["task"]["sem"] == pytest.approx(r["task"]["std"] / np.sqrt(3), rel=1e-12)

    # static figures: the bundle's own description; dense operations: every weight, every step
    from spikeedge.measure.summary import describe

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
    # NeuroBench's names: the same figures; a direct-encoded recurrent model's MACs (its input
    # synapses) are counted with its ACs by the runtime, so the split is not claimed
    so = wl["SynapticOperations"]
    assert so["Dense"] == wl["synops_per_inference"]["dense"] and so["Effective"] == wl["synops_per_inference"]["effective"]
    assert so["Effective_MACs"] is None and so["Effective_ACs"] is None
    assert wl["ActivationSparsity"] == wl["activation_sparsity"]
    # the estimate meter: effective operations x 0.03 pJ (int8 accumulate), labelled as such
    p = r["power"]
    assert p["label"] == "estimate" and p["idle_w"] is None
    assert p["energy_per_inference_j"]["total"] == pytest.approx(wl["synops_per_inference"]["effective"] * 0.03e-12, rel=1e-12)
    assert p["active_w"] == pytest.approx(p["energy_per_inference_j"]["total"] / (lat["mean_ms"] / 1e3), rel=1e-12)


def test_estimate_on_a_board_with_measured_power_is_a_cpu_model(files: Dict[str, Path]) -> None:
    """``--meter estimate`` on a board whose profile has measured idle/load power (rpi4): the
    energy is the CPU model's (idle + (load - idle) x 1 of 4 cores, x the mean latency), labelled
    an estimate; the operation-count figure is kept apart. On a board without such figures the
    operation-count estimate stays, with a note that it is not what the CPU draws."""
    from spikeedge.board.profile import get_board

    cpu = get_board("rpi4").cpu_power
    r = bench_model(files["event"], "mackey-glass", trials=1, warmup=0, samples=2, meter=EstimateMeter(), board="rpi4")
    p, lat = r["power"], r["latency"]
    assert p["label"] == "estimate" and p["model"] == "cpu" and p["idle_w"] == cpu.idle_w == 2.25
    assert p["active_w"] == pytest.approx(2.25 + (5.25 - 2.25) / 4)
    assert p["energy_per_inference_j"]["total"] == pytest.approx(p["active_w"] * lat["mean_ms"] / 1e3, rel=1e-12)
    assert p["energy_per_inference_j"]["dynamic"] == pytest.approx((p["active_w"] - 2.25) * lat["mean_ms"] / 1e3, rel=1e-12)
    assert p["op_count_j"] == pytest.approx(r["workload"]["synops_per_inference"]["effective"] * 0.03e-12, rel=1e-12)
    assert p["energy_per_inference_j"]["total"] > 1e4 * p["op_count_j"]
    r = bench_model(files["event"], "mackey-glass", trials=1, warmup=0, samples=2, meter=EstimateMeter(), board="x86-dev")
    assert r["power"]["model"] == "synops" and any("operation-count estimate only" in n for n in r["notes"])


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
    from spikeedge.measure.summary import describe
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
        # the stem reads the image (MACs), every later layer and the readout read spikes (ACs)
        so = r["workload"]["SynapticOperations"]
        assert so["Dense"] == pytest.approx(d["macs_per_inference"])
        assert so["Effective_MACs"] > 0 and so["Effective_ACs"] >= 0
        assert so["Effective_MACs"] + so["Effective_ACs"] == pytest.approx(so["Effective"])
        if kind == "event":
            stem = d["layers"][0]["name"]
            session = backends.open_model(conv[kind])
            per_image = []
            for x, y in zip(np.asarray(task.x_test[:12], np.float64), task.y_test[:12]):
                classify(session, x[None], np.asarray([y]), batch_size=1)
                per_image.append(session.layer_synops[stem])
            assert so["Effective_MACs"] == pytest.approx(np.mean(per_image))
        assert r["task"]["std"] == pytest.approx(np.sqrt(acc * (1 - acc) * 12 / 11), rel=1e-9)  # 0/1 scores per image


# ----------------------------------------------------------------------------- repeatability


def test_a_real_slow_down_in_one_trial_trips_the_5_percent_rule(files: Dict[str, Path], monkeypatch: Any) -> None:
    # warm-up 1, 3 samples: inferences 5-7 are the second trial; each sleeps 500 ms inside its
    # timing, far beyond what a loaded CI machine adds to a ~50-150 ms inference
    slow = {k: (lambda: time.sleep(0.5)) for k in (5, 6, 7)}
    wrap_sessions(monkeypatch, slow)
    r = bench_model(files["event"], "mackey-glass", trials=3, warmup=1, samples=3)
    means = r["latency"]["trial_means_ms"]
    assert means[1] > max(means[0], means[2]) + 400  # the sleep really was timed
    rep = r["repeatability"]
    assert not rep["ok"] and rep["max_deviation"] > 0.05
    assert "5%" in rep["warning"] and rep["warning"] in r["notes"]


def test_repeatability_rule() -> None:
    assert repeatability([100.0, 104.9, 95.1], 100.0)["ok"]
    bad = repeatability([100.0, 100.0, 112.0], 104.0)
    assert not bad["ok"] and bad["max_deviation"] == pytest.approx(8 / 104) and "7.7%" in bad["warning"]


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

    from spikeedge.board import detect as detection

    pi = detection.detect(HERE / "fixtures" / "boards" / "rpi4")  # what a Pi 4's root says: an aarch64 profile
    assert pi.board is not None and pi.board.arch == "aarch64"
    monkeypatch.setattr(detection, "detect", lambda root="/", **kw: pi)  # ... read on this machine's own root "/"
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
