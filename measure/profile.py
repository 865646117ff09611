"""On-device profile of a model: what ``spikeedge profile`` reports.

Per-layer spike rates and synaptic operations (the session's own counters), wall time per phase
(input encoding, synaptic accumulation, neuron update, readout; for step graphs: encoding, the
interpreter call, bookkeeping) from a ``PhaseClock`` the sessions charge while profiling, peak
memory (Python/numpy allocations through ``tracemalloc``, and the process's peak resident set),
and, when a power meter is given, power and energy per inference from ``board.sampler``
(an idle baseline first, then the inference window: gross and dynamic energy).

One *inference* is one input sample: a whole input sequence of one stream for a recurrent
model, one image (T steps) for a convolutional one.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any, Dict, Optional

import numpy as np


# What each figure of the profile is counted per: the batch's streams (one sample each) run
# together, so wall time per step is for the whole batch, every count is per stream.
UNITS = {
    "steps_per_inference": "time steps per inference (one stream's sample)",
    "ms_per_inference": "wall ms per inference (one stream's sample): the run's time / (batch x repeats)",
    "ms_per_step": "wall ms per time step of the whole batch (all streams at once)",
    "ms_per_stream_step": "wall ms per time step per stream: ms_per_step / batch",
    "phases_ms_per_inference": "wall ms per inference (one stream's sample), per phase",
    "spikes_per_step": "spikes per time step per stream, per layer",
    "spike_rate": "spikes per neuron per time step, per layer",
    "synops_per_step": "synaptic operations per time step per stream",
    "synops_per_inference": "synaptic operations per inference (one stream's sample)",
    "energy_per_inference_j": "joules per inference (one stream's sample)",
    "ActivationSparsity": "NeuroBench: zero neuron outputs / all, over layers, steps and streams",
    "SynapticOperations": "NeuroBench, per inference (one stream's sample): Effective (= Effective_MACs + Effective_ACs) "
                          "as counted by the runtime, Dense (every weight x every input position it meets)",
}


class PhaseClock:
    """Seconds per phase: ``start()`` at the top of a step, ``lap(name)`` charges ``name`` with
    the time since the previous mark."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        t = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + (t - self._t)
        self._t = t


def peak_rss_bytes() -> Optional[int]:
    """Peak resident memory of this process. Linux's ``VmHWM`` first: ``ru_maxrss`` survives
    ``execve``, so a process started by a large parent reports the parent's peak (a benchmark
    measured 300 MB for a 50 MB session that way)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB
    except (ImportError, OSError):
        return None


def neurobench_names(session: Any, summary: Dict[str, Any], effective: float, steps: int) -> Dict[str, Any]:
    """The profile's workload figures under NeuroBench's names (``docs/bench.md``). The MAC/AC
    split is ``spikeedge bench``'s (it keeps per-sample counts); here only their sum."""
    from .bench_record import _neurons, dense_ops_per_step

    neurons = _neurons(session)
    total = sum(neurons.values())
    rates = summary.get("spike_rate") or {}
    firing = sum(float(rates.get(name, 0.0)) * n for name, n in neurons.items()) / total if total else None
    return {"ActivationSparsity": None if firing is None else 1.0 - firing,
            "SynapticOperations": {"Effective": effective, "Dense": dense_ops_per_step(session) * steps}}


def _run(session: Any, xs: np.ndarray) -> Any:
    return session.run(xs)


def profile_model(session: Any, xs: np.ndarray, meter: Any = None, baseline_s: float = 1.0, repeats: int = 1) -> Dict[str, Any]:
    """Profile ``session`` (any backend) on inputs ``xs`` (recurrent: (batch, steps, n_in);
    conv: images (batch, C, H, W)), ``repeats`` times; with ``meter`` (``board.meters``)
    also power and energy per inference."""
    conv = bool(getattr(session, "steps_per_inference", None))
    n_inferences = xs.shape[0] * repeats
    _run(session, xs[:1])  # warm-up: first-call costs (allocation, interpreter set-up) out of the profile
    estimate = meter is not None and getattr(meter, "estimate", False)
    sampler = None
    if meter is not None and not estimate:
        from ..board.sampler import Sampler

        sampler = Sampler(meter).start()
        baseline_mw = sampler.measure_baseline(baseline_s)
    clock = PhaseClock()
    session.clock = clock
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        if sampler is not None:
            with sampler.window("inference", count=n_inferences):
                for _ in range(repeats):
                    result = _run(session, xs)
        else:
            for _ in range(repeats):
                result = _run(session, xs)
    finally:
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        session.clock = None
        power = sampler.stop() if sampler is not None else None
    summary = result.summary()
    steps = result.steps * repeats
    out: Dict[str, Any] = {
        "core": getattr(session, "core", None),  # event runtime: "compiled" or "numpy" (runtime/compiled.py)
        "inferences": n_inferences,
        "steps_per_inference": result.steps if conv else xs.shape[1],
        "batch": result.batch,
        "seconds": seconds,
        "ms_per_inference": 1e3 * seconds / n_inferences,
        "ms_per_step": 1e3 * seconds / max(1, steps),
        "spike_rate": summary["spike_rate"],
        "spikes_per_step": summary["spikes_per_step"],
        "synops_per_inference": result.synops / max(1, xs.shape[0]),
        "synops_per_step": summary["synops_per_step"],
        "phases_ms_per_inference": {k: 1e3 * v / n_inferences for k, v in clock.seconds.items()},
        "phases_share": {k: v / max(1e-12, sum(clock.seconds.values())) for k, v in clock.seconds.items()},
        "memory": {"traced_peak_bytes": int(peak), "process_peak_rss_bytes": peak_rss_bytes()},
        # the batch's streams run together: a batched step's wall time spread over its streams
        "ms_per_stream_step": 1e3 * seconds / max(1, steps * result.batch),
        "units": UNITS,
    }
    out.update(neurobench_names(session, summary, out["synops_per_inference"], out["steps_per_inference"]))
    if hasattr(session, "accumulation_report"):  # the event runtime's hybrid: switch points, steps per path
        out["accumulation"] = session.accumulation_report()
    if getattr(result, "layer_synops", None):
        out["synops_per_layer"] = result.layer_synops
    if estimate:  # exact: the operations counted, times the energy per operation (not a measurement)
        joules = result.synops * repeats * meter.pj_per_op * 1e-12 / n_inferences
        out["power"] = {"label": "estimate", "model": "synops",  # an int8 accelerator's figure, not this CPU's (docs/bench.md)
                        "meter": meter.describe(), "energy_per_inference_j": {"gross": joules, "dynamic": joules},
                        "mean_power_mw": {"gross": 1e3 * joules * n_inferences / seconds, "dynamic": None}}
    if power is not None:
        w = power.window("inference")
        out["power"] = {
            "label": w.label,  # "measured", or "estimate" (operation count x energy per op)
            "meter": power.meter,
            "baseline_mw": baseline_mw,
            "energy_per_inference_j": {"gross": w.energy_per_item_j, "dynamic": w.dynamic_energy_per_item_j},
            "mean_power_mw": {"gross": w.mean_power_mw, "dynamic": w.dynamic_power_mw},
            "window_s": w.duration_s,
            "samples": w.samples,
            "coverage": w.coverage,
            "sampling_rate_hz": power.effective_rate_hz,
            "error": power.error,
            "failure": power.failure,  # set when the readings cover too little: the CLI exits 1
            "min_coverage": power.min_coverage,
        }
    return out
