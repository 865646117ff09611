"""The hand-written run records of the report tests (tests/test_report.py and
tests/test_report_browser.py): ``record(**over)``, one valid ``spikeedge.bench/1`` record, and
``fleet()``, a realistic mix of them."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List


def record(**over: Any) -> Dict[str, Any]:
    """A valid ``spikeedge.bench/1`` record (spec of issue 9); ``over`` replaces top-level keys,
    and ``model__name=...`` style keys replace nested ones."""
    rng = [1.0 + 0.01 * ((i * 37) % 50) for i in range(400)]
    r = {
        "schema": "spikeedge.bench/1", "run_id": uuid.uuid4().hex, "created": "2026-11-23T10:00:00Z", "label": None,
        "model": {"path": "/models/m.seb", "name": "m.seb", "sha256": "a" * 64, "format": "bundle", "file_bytes": 50000,
                  "footprint_bytes": 200000, "connection_sparsity": 0.5, "neurons": 512, "synapses": 100000,
                  "pruning": {"method": "lnp", "density": 0.5}},
        "task": {"name": "mackey-glass", "metric": "smape", "value": 12.5, "higher_is_better": False, "samples": 30},
        "backend": "event", "threads": 1, "board": "rpi5",
        "protocol": {"batch": 1, "warmup": 10, "trials": 5, "samples_per_trial": 80, "steps_per_sample": 100},
        "latency": {"mean_ms": 1.2, "sem_ms": 0.01, "p50_ms": 1.2, "p99_ms": 1.45, "throughput_per_s": 830.0,
                    "trial_means_ms": [1.2, 1.21, 1.19, 1.2, 1.2], "samples_ms": rng, "preprocess_ms": 0.1},
        "repeatability": {"ok": True, "max_deviation": 0.01, "warning": None},
        "power": {"label": "measured", "meter": "rpi5-pmic", "rails": ["VDD_CORE"], "sampling_rate_hz": 10.0,
                  "idle_w": 2.1, "active_w": 3.4, "dynamic_w": 1.3,
                  "energy_per_inference_j": {"total": 0.0041, "dynamic": 0.0016},
                  "trace": {"t_s": [0.1 * i for i in range(60)], "w": [2.1 if i < 10 else 3.4 + 0.1 * (i % 3) for i in range(60)]}},
        "workload": {"activation_sparsity": 0.93, "synops_per_inference": {"dense": 1e7, "effective": 7e5},
                     "spike_rate": {"hidden": 0.07}},
        "environment": {"hostname": "pi", "kernel": "6.6.31+rpt-rpi-2712", "machine": "aarch64",
                        "cpu_model": "Cortex-A76", "governor": "performance",
                        "temperature_c": {"before": 45.0, "after": 52.5}, "throttled": {"before": "0x0", "after": "0x0"},
                        "python": "3.11.2", "packages": {"numpy": "1.26.4"}, "spikeedge": "0.1.0", "spikeedge_build": None},
    }
    for key, value in over.items():
        cur = r
        parts = key.split("__")
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = value
    return r


def fleet() -> List[Dict[str, Any]]:
    """A realistic mix: two boards, three backends, three pruning levels, one estimate, one run
    without power, one not repeatable."""
    out = []
    for i, (density, value, ops) in enumerate(((1.0, 10.0, 2e6), (0.5, 11.0, 8e5), (0.2, 15.0, 3e5), (0.3, 18.0, 9e5))):
        for board in ("rpi5", "jetson-orin-nano"):
            for backend in ("event", "onnx"):
                out.append(record(created="2026-11-2%dT10:%02d:00Z" % (i, len(out)), board=board, backend=backend,
                                   model__name="hrsnn-d%.1f.seb" % density, model__sha256="%x" % i * 64,
                                   model__pruning={"method": "lnp", "density": density},
                                   task__value=value, workload__synops_per_inference={"dense": 1e7, "effective": ops},
                                   latency__mean_ms=1.0 + i + (backend == "onnx"),
                                   power__energy_per_inference_j={"total": 0.001 * (i + 1), "dynamic": 0.0004 * (i + 1)}))
    out.append(record(backend="tflite", board="rpi5", power__label="estimate", power__trace={"t_s": [], "w": []},
                       power__idle_w=None, power__energy_per_inference_j={"total": 2e-5, "dynamic": None}))
    out.append(record(backend="event", board="x86-host", power=None, label="nightly"))
    out.append(record(backend="event", board="rpi5", repeatability={"ok": False, "max_deviation": 0.12,
                                                                      "warning": "trial means differ by 12% (> 5%)"},
                       environment__throttled={"before": "0x0", "after": "0x50005"}))
    return out
