"""Synthetic ``spikeedge.bench/1`` run records for tests (shared by the results, bench and report
tests; keep ``make_record(**overrides)`` stable).

Latency samples are drawn with numpy's RNG from a realistic noise model (log-normal jitter per
inference, a small drift per trial, rare slow outliers), and every latency statistic is computed
from them as the bench does, so compare's noise estimates see real-looking data.

``make_record(seed=0, mean_ms=2.0, noise=0.08, trial_drift=0.01, trials=5, samples_per_trial=200,
power=True, **overrides)``: the keyword knobs shape the synthetic run; any other keyword replaces
a field, nested fields spelled with ``__`` (``task__value=0.9``, ``model__sha256="ab..."``).
The run id and creation time follow from ``seed`` (seed n is created n seconds after a fixed
start), so the same seed gives the same record.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np


def latency_from_samples(samples_ms: np.ndarray, trials: int) -> Dict[str, Any]:
    per_trial = np.array_split(np.asarray(samples_ms, float), trials)
    trial_means = [float(t.mean()) for t in per_trial]
    mean = float(np.mean(samples_ms))
    return {"mean_ms": mean, "sem_ms": float(np.std(samples_ms, ddof=1) / np.sqrt(len(samples_ms))),
            "p50_ms": float(np.percentile(samples_ms, 50)), "p99_ms": float(np.percentile(samples_ms, 99)),
            "throughput_per_s": 1000.0 / mean, "trial_means_ms": trial_means,
            "samples_ms": [float(x) for x in samples_ms], "preprocess_ms": 0.05}


def draw_samples(rng: np.random.Generator, mean_ms: float, noise: float, trial_drift: float, trials: int,
                 samples_per_trial: int) -> np.ndarray:
    out = []
    for _ in range(trials):
        drift = 1.0 + rng.normal(0.0, trial_drift)
        jitter = rng.lognormal(-noise ** 2 / 2, noise, samples_per_trial)  # mean 1
        slow = np.where(rng.random(samples_per_trial) < 0.005, rng.uniform(1.5, 3.0, samples_per_trial), 1.0)
        out.append(mean_ms * drift * jitter * slow)
    return np.concatenate(out)


def make_record(seed: int = 0, mean_ms: float = 2.0, noise: float = 0.08, trial_drift: float = 0.01, trials: int = 5,
                samples_per_trial: int = 200, power: bool = True, **overrides: Any) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    samples = draw_samples(rng, mean_ms, noise, trial_drift, trials, samples_per_trial)
    lat = latency_from_samples(samples, trials)
    dev = max(abs(t - lat["mean_ms"]) for t in lat["trial_means_ms"]) / lat["mean_ms"]
    idle, active = 2.10, 2.10 + 0.35 + 0.01 * rng.normal()
    record: Dict[str, Any] = {
        "schema": "spikeedge.bench/1",
        "run_id": "%032x" % random.Random(seed).getrandbits(128),
        "created": "2026-11-23T%02d:%02d:%02dZ" % (seed // 3600 % 24, seed // 60 % 60, seed % 60),
        "label": None,
        "model": {"path": "/models/mg.seb", "name": "mg.seb", "sha256": "5eb0" + "0" * 60, "format": "bundle",
                  "file_bytes": 48213, "footprint_bytes": 262144, "connection_sparsity": 0.82, "neurons": 512,
                  "synapses": 47000, "pruning": {"method": "lnp", "density": 0.18}},
        "task": {"name": "mackey-glass", "metric": "smape", "value": 14.2, "higher_is_better": False, "samples": 30},
        "backend": "event", "threads": 1, "board": "rpi5",
        "protocol": {"batch": 1, "warmup": 20, "trials": trials, "samples_per_trial": samples_per_trial, "steps_per_sample": 750},
        "latency": lat,
        "repeatability": {"ok": dev <= 0.05, "max_deviation": dev, "warning": None if dev <= 0.05 else "trial means spread %.1f%%" % (100 * dev)},
        "power": None,
        "workload": {"activation_sparsity": 0.93, "synops_per_inference": {"dense": 3.8e6, "effective": 2.4e5},
                     "spike_rate": {"hidden": 0.07}},
        "environment": {"hostname": "board-1", "kernel": "6.6.31", "machine": "aarch64", "cpu_model": "Cortex-A76",
                        "governor": "performance", "temperature_c": {"before": 48.0, "after": 51.5},
                        "throttled": {"before": "0x0", "after": "0x0"}, "python": "3.11.2",
                        "packages": {"numpy": "2.1.0"}, "spikeedge": "0.1.0", "spikeedge_build": None},
    }
    if power:
        seconds = lat["mean_ms"] / 1000
        record["power"] = {"label": "measured", "meter": "ina219", "rails": ["5V"], "sampling_rate_hz": 1000.0,
                           "idle_w": idle, "active_w": active, "dynamic_w": active - idle,
                           "energy_per_inference_j": {"total": active * seconds, "dynamic": (active - idle) * seconds},
                           "trace": {"t_s": [0.0, 0.5, 1.0], "w": [idle, active, active]}}
    for key, value in overrides.items():
        *parents, last = key.split("__")
        node = record
        for part in parents:
            node = node[part]
        node[last] = value
    return record
