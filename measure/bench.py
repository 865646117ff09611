"""The field benchmark of ``spikeedge bench``: NeuroBench's system-track protocol on a board.

One call of ``bench_model`` benchmarks one model file on its backend and returns one *run
record* (``docs/bench.md`` lists every field). The protocol (``../shared/reference/neurobench.md``):

* batch 1, one sample at a time; a sample is one window of a forecast task (teacher-forced
  through its training part, then predicted autoregressively: the work that yields its sMAPE)
  or one input sequence / image of a classification task;
* pre-processing (copying the sample from the task split into a contiguous array in memory) is
  timed apart (``preprocess_ms``); each inference is timed with ``perf_counter_ns`` from the
  sample in memory to the output of its last time step. The model's own spike encoder runs
  inside each time step and is part of the execution time;
* warm-up inferences first (not timed), then ``trials`` passes over the same samples; mean and
  standard error over every timed inference, p50/p99, throughput; each trial's mean must lie
  within 5% of the overall mean or the record carries a warning;
* power: the meter's idle baseline before, its mean during the trials (active), dynamic =
  active - idle; energy per inference = power x mean execution time (total and dynamic);
* workload from the runtime's own counters (activation sparsity, effective synaptic operations,
  spike rates), static figures (footprint, connection sparsity) from the file; the task metric
  on the outputs of the timed samples.

This module is the protocol (samples, timing, statistics, power); the figures that come from the
model itself (workload, synapses, footprint, pruning) are in ``bench_record.py``.

Board side: numpy only (and the backend's interpreter), Python 3.8+.
"""

from __future__ import annotations

import math
import time
import types
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import SpikeedgeError
from .bench_record import dense_ops_per_step, graph_footprint, input_width, model_card, model_record, workload_figures

SCHEMA = "spikeedge.bench/1"
MAX_SAMPLES_MS = 10000  # per-inference times kept in the record
MAX_TRACE = 2000  # power trace points kept in the record
REPEATABILITY = 0.05  # NeuroBench: every trial's mean within 5% of the reported mean
Progress = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------- the protocol


def bench_model(path: Any, task: str, backend: str = "auto", trials: int = 5, warmup: int = 5, samples: Optional[int] = None,
                meter: Any = None, root: str = "/", label: Optional[str] = None, threads: int = 1,
                progress: Optional[Progress] = None, baseline_s: float = 2.0, data: Optional[str] = None,
                meter_note: Optional[str] = None, board: Optional[str] = None) -> Dict[str, Any]:
    """Benchmark the model file ``path`` on ``task``; one run record (``docs/bench.md``).

    ``samples``: samples per trial (default: the task's 30 forecast windows, or up to 1,000
    test inputs); ``meter``: a ``board.meters`` meter, or None (no power figures,
    ``meter_note`` says why); ``progress(done, total, phase)`` is called between inferences
    (outside the timed region); whatever it raises (KeyboardInterrupt) ends the run with the
    meter's thread stopped and nothing returned.
    """
    from ..runtime.backends import backend_of, open_model
    from ..board.detect import detect
    from ..board.environment import environment, thermal

    path = Path(path)
    for option, value, least in (("--trials", trials, 1), ("--samples", samples, 1), ("--warmup", warmup, 0), ("--baseline", baseline_s, 0)):
        if value is not None and value < least:
            raise SpikeedgeError("%s %s: must be >= %d" % (option, value, least))
    session = open_model(path, backend, threads=threads)
    kind = backend_of(path)
    spec, items, metric = _task_items(task, session, samples, data)
    width = input_width(model_card(session))
    if width is not None and width != spec.n_inputs:  # else the first inference fails deep in the runtime
        raise SpikeedgeError("%s: the model takes %d input value(s) per step, task %s gives %d (--task)" % (path, width, spec.name, spec.n_inputs))
    n = len(items)
    total = warmup + trials * n
    tick = progress or (lambda done, total, phase: None)
    env = environment(root)
    notes: List[str] = [meter_note] if meter_note else []
    found = _board_name(detect(root), root, notes)
    if board is None:
        board = found
    else:  # declared by the user (--board) or the inventory (spikeedge_board): a known profile
        from ..board.profile import get_board

        board = get_board(board).name
        if board != found:
            notes.append("board %s as declared (--board or the inventory's spikeedge_board); detection found %s" % (board, found))

    prepared, pre_ns = [], []
    for item in items:  # pre-processing, timed apart: the sample into a contiguous array in memory
        t0 = time.perf_counter_ns()
        prepared.append(_prepare(spec, item))
        pre_ns.append(time.perf_counter_ns() - t0)
    run = _runner(spec)

    before = thermal(root)
    for i in range(warmup):  # first-call costs (allocation, interpreter set-up) out of the timing
        run(session, prepared[i % n])
        tick(i + 1, total, "warm-up")

    estimate = meter is not None and getattr(meter, "estimate", False)
    sampler = None
    idle_mw = None
    times_ns = np.empty((trials, n), np.int64)
    counts: List[Tuple[Dict[str, int], int, int, Dict[str, int]]] = []
    scores: List[float] = []
    try:
        if meter is not None and not estimate:
            from ..board.sampler import Sampler

            sampler = Sampler(meter).start()
            idle_mw = sampler.measure_baseline(baseline_s) if baseline_s > 0 else None
        t_start = time.monotonic()
        done = warmup
        for k in range(trials):
            for i in range(n):
                t0 = time.perf_counter_ns()
                out = run(session, prepared[i])
                times_ns[k, i] = time.perf_counter_ns() - t0
                if k == 0:  # the runtime's counters and the metric, from the first pass
                    counts.append((dict(session.spike_counts), int(session.synops), int(session.steps), dict(getattr(session, "layer_synops", None) or {})))
                    scores.append(metric(prepared[i], out))
                done += 1
                tick(done, total, "trial %d/%d" % (k + 1, trials))
        t_end = time.monotonic()
        if sampler is not None:
            sampler.mark("active", t_start, t_end, trials * n)
    finally:
        result = sampler.stop() if sampler is not None else None
    after = thermal(root)

    env["temperature_c"] = {"before": before["temperature_c"], "after": after["temperature_c"]}
    env["throttled"] = {"before": before["throttled"], "after": after["throttled"]}
    latency = latency_stats(times_ns, pre_ns)
    repeat = repeatability(latency["trial_means_ms"], latency["mean_ms"])
    if repeat["warning"]:
        notes.append(repeat["warning"])
    workload = workload_figures(session, counts, dense_ops_per_step(session))
    if estimate:
        power: Optional[Dict[str, Any]] = estimate_power(workload["synops_per_inference"]["effective"], latency["mean_ms"], meter)
        cpu = _cpu_power(board)
        if cpu is not None:  # the board's measured idle/load power: a CPU model, not the accelerator's op count
            power = cpu_estimate(cpu, threads, latency["mean_ms"], power)
        else:
            notes.append("energy: operation-count estimate only (board %s has no measured idle/load power in its profile); "
                         "not what this CPU draws" % board)
    elif result is not None:
        power = measured_power(result, sampler.samples, idle_mw, latency["mean_ms"], baseline_s)
        if result.failure:
            notes.append("power figures rejected: %s" % result.failure)
        elif power is None:
            notes.append("no power figures: %s" % (result.error or "no meter readings during the trials"))
    else:
        power = None
        if not meter_note:
            notes.append("no power figures: no meter")
    steps = [c[2] for c in counts]
    return {
        "schema": SCHEMA,
        "run_id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": label,
        "model": model_record(path, session),
        "task": dict({"name": spec.name, "metric": metric.name, "value": float(np.mean(scores)), "higher_is_better": metric.name == "accuracy",
                      "samples": n}, **score_spread(scores)),
        "backend": kind,
        "core": getattr(session, "core", None),  # event runtime: "compiled" or "numpy" (runtime/compiled.py)
        "threads": int(threads),
        "board": board,
        "protocol": {"batch": 1, "warmup": int(warmup), "trials": int(trials), "samples_per_trial": n,
                     "steps_per_sample": int(round(float(np.mean(steps))))},
        "latency": latency,
        "repeatability": repeat,
        "power": power,
        "workload": workload,
        "environment": env,
        "notes": notes,
        # one line when the meter's readings cover less of the trials than NeuroBench's rules
        # accept (board.sampler.MIN_COVERAGE): spikeedge bench then stores nothing and exits 1
        "power_failure": result.failure if result is not None and not estimate else None,
    }


_ARCH = {"arm64": "aarch64", "amd64": "x86_64"}


def _board_name(found: Any, root: str, notes: List[str]) -> str:
    """The detected board profile's name, or ``unknown``. On this machine's own root a profile
    for another architecture is not believed: under qemu-user emulation (an arm64 root on an x86
    host) /proc/cpuinfo is the host's, and detection would file the arm64 runs under the host's
    board. (A fixture tree given with ``--root`` describes another machine on purpose.)"""
    if found.board is None:
        return "unknown"
    import platform

    machine = platform.machine()
    if str(root) == "/" and _ARCH.get(machine.lower(), machine) != found.board.arch:
        notes.append("board detection matched %s, an %s profile, but this interpreter runs on %s (emulated?): board recorded as unknown"
                     % (found.board.name, found.board.arch, machine))
        return "unknown"
    return found.board.name


# ----------------------------------------------------------------------------- the task's samples


class _Metric:
    """Score of one sample from its output: sMAPE of a forecast window, 1/0 for a correct class.
    The task's value is their mean, as ``tasks.protocols`` defines it for ``spikeedge eval``."""

    def __init__(self, name: str, fn: Callable[[Any, Any], float]) -> None:
        self.name, self.fn = name, fn

    def __call__(self, item: Any, out: Any) -> float:
        return float(self.fn(item, out))


def _task_items(task: str, session: Any, samples: Optional[int], data: Optional[str]) -> Tuple[Any, List[Any], _Metric]:
    from ..tasks.metrics import smape
    from ..tasks.registry import load_task

    spec = load_task(task, repeats=samples or 30, data=data)
    if spec.kind == "forecast":
        items: List[Any] = list(spec.windows[: samples or 30])
        return spec, items, _Metric("smape", lambda w, preds: smape(np.ravel(w.test_y), np.ravel(preds)))
    count = min(len(spec.x_test), samples if samples is not None else 1000)
    items = [(spec.x_test[i], spec.y_test[i]) for i in range(count)]
    return spec, items, _Metric("accuracy", lambda item, correct: correct)


def _prepare(spec: Any, item: Any) -> Any:
    if spec.kind == "forecast":
        return types.SimpleNamespace(train_x=np.array(item.train_x, np.float64), test_x=np.array(item.test_x, np.float64),
                                     test_y=np.array(item.test_y, np.float64))
    x, y = item
    return np.array(x, np.float64)[None], np.array([y])


def _runner(spec: Any) -> Callable[[Any, Any], Any]:
    """One inference at batch 1 through the same protocol code ``spikeedge eval`` scores with
    (``tasks/protocols.py``): a forecast window's predictions, or 1.0/0.0 for a correct class."""
    from ..tasks.protocols import classify, forecast_windows

    if spec.kind == "forecast":
        return lambda session, w: forecast_windows(session, [w])[0]
    return lambda session, xy: classify(session, xy[0], xy[1], batch_size=1)["accuracy"]


# ----------------------------------------------------------------------------- statistics


def latency_stats(times_ns: np.ndarray, pre_ns: List[int]) -> Dict[str, Any]:
    """Mean, standard error (sample std / sqrt(N)), p50/p99 and throughput over every timed
    inference of every trial; ``times_ns`` is (trials, samples)."""
    ms = times_ns.astype(np.float64) / 1e6
    flat = ms.ravel()
    mean = float(flat.mean())
    sem = float(flat.std(ddof=1) / math.sqrt(flat.size)) if flat.size > 1 else 0.0
    keep = flat if flat.size <= MAX_SAMPLES_MS else flat[np.linspace(0, flat.size - 1, MAX_SAMPLES_MS).round().astype(int)]
    return {"mean_ms": mean, "sem_ms": sem, "p50_ms": float(np.percentile(flat, 50)), "p99_ms": float(np.percentile(flat, 99)),
            "throughput_per_s": 1e3 / mean if mean > 0 else None, "trial_means_ms": [float(m) for m in ms.mean(axis=1)],
            "samples_ms": [float(v) for v in keep], "preprocess_ms": float(np.mean(pre_ns)) / 1e6 if pre_ns else 0.0}


def repeatability(trial_means: List[float], mean: float, limit: float = REPEATABILITY) -> Dict[str, Any]:
    """NeuroBench's rule: each trial's mean within ``limit`` (5%) of the reported mean."""
    dev = max(abs(m - mean) / mean for m in trial_means) if mean > 0 else 0.0
    ok = dev <= limit
    warning = None if ok else ("trial means differ from the mean by up to %.1f%% (limit %.0f%%): the board was not steady "
                               "(throttling, background load, frequency governor); rerun, or pin the governor to performance" % (100 * dev, 100 * limit))
    return {"ok": bool(ok), "max_deviation": float(dev), "warning": warning}


def score_spread(scores: List[float]) -> Dict[str, Optional[float]]:
    """The spread of the per-sample scores whose mean is the task metric (per window for
    Mackey-Glass sMAPE, per image for accuracy): ``std`` (sample standard deviation, n - 1) and
    ``sem`` (std / sqrt(n)), the uncertainty a report shows beside the value; None under 2 samples."""
    a = np.asarray(scores, np.float64)
    if a.size < 2 or not np.all(np.isfinite(a)):
        return {"std": None, "sem": None}
    std = float(np.std(a, ddof=1))
    return {"std": std, "sem": std / math.sqrt(a.size)}


# ----------------------------------------------------------------------------- power


def _cpu_power(board: str) -> Any:
    """The board profile's measured idle/load power (``CpuPower``), or None."""
    from ..board.profile import get_board
    from ..errors import BoardError

    try:
        return get_board(board).cpu_power if board and board != "unknown" else None
    except BoardError:
        return None


def cpu_estimate(cpu: Any, threads: int, mean_ms: float, op_count: Dict[str, Any]) -> Dict[str, Any]:
    """A CPU model's energy estimate: active power = the profile's measured idle power plus its
    measured load-minus-idle power times the share of cores the run keeps busy (``threads`` of
    ``cores``), times the mean inference time; dynamic = the part above idle. Labelled
    ``estimate`` with ``model: cpu``; the operation-count figure is kept beside it
    (``op_count_j``) for reference, never shown as the energy."""
    busy = min(1.0, max(1, int(threads)) / max(1, int(cpu.cores)))
    active = cpu.idle_w + (cpu.load_w - cpu.idle_w) * busy
    seconds = mean_ms / 1e3
    return {"label": "estimate", "model": "cpu", "meter": "cpu-model", "rails": ["board (profile)"], "sampling_rate_hz": None,
            "idle_w": cpu.idle_w, "active_w": active, "dynamic_w": active - cpu.idle_w,
            "energy_per_inference_j": {"total": active * seconds, "dynamic": (active - cpu.idle_w) * seconds},
            "trace": {"t_s": [], "w": []}, "device": "none (board profile's measured idle/load power x time)",
            "basis": "idle %.3g W + (load %.3g W - idle) x %d/%d busy cores, x mean latency; %s" % (
                cpu.idle_w, cpu.load_w, min(int(threads), cpu.cores), cpu.cores, cpu.source),
            "op_count_j": (op_count.get("energy_per_inference_j") or {}).get("total"), "error": None}


def estimate_power(synops: float, mean_ms: float, meter: Any) -> Dict[str, Any]:
    """Operation-count estimate: effective synaptic operations x energy per operation. All of
    it is compute above idle, so total = dynamic; there is no idle figure and no trace. It is an
    int8 accelerator's figure (``model: synops``), not a CPU's: the report lists it apart."""
    joules = float(synops) * float(meter.pj_per_op) * 1e-12
    watts = joules / (mean_ms / 1e3) if mean_ms > 0 else 0.0
    desc = meter.describe()
    return {"label": "estimate", "model": "synops", "meter": "estimate", "rails": list(desc.get("rails", ["estimate"])), "sampling_rate_hz": None,
            "idle_w": None, "active_w": watts, "dynamic_w": watts, "energy_per_inference_j": {"total": joules, "dynamic": joules},
            "trace": {"t_s": [], "w": []}, "device": str(desc.get("device")), "pj_per_op": float(meter.pj_per_op),
            "error": None}


def measured_power(result: Any, readings: List[Any], idle_mw: Optional[float], mean_ms: float, baseline_s: float) -> Optional[Dict[str, Any]]:
    """The sampler's active window against its idle baseline; None when no reading covers it.
    ``readings``: the sampler's readings, for the trace."""
    try:
        w = result.window("active")
    except KeyError:
        return None
    if w.coverage <= 0:
        return None
    active = w.mean_power_mw / 1e3
    idle = idle_mw / 1e3 if idle_mw is not None else None
    dynamic = active - idle if idle is not None else None
    seconds = mean_ms / 1e3
    return {"label": result.label, "meter": str(result.meter.get("meter")), "rails": list(result.meter.get("rails") or []),
            "sampling_rate_hz": float(result.effective_rate_hz), "idle_w": idle, "active_w": active, "dynamic_w": dynamic,
            "energy_per_inference_j": {"total": active * seconds, "dynamic": dynamic * seconds if dynamic is not None else None},
            "trace": power_trace(readings), "device": str(result.meter.get("device")), "baseline_s": baseline_s,
            "total_rule": result.meter.get("total"), "coverage": w.coverage, "error": result.error,
            "fallback": result.meter.get("fallback")}


def power_trace(readings: List[Any], limit: int = MAX_TRACE) -> Dict[str, List[float]]:
    """Total power over time (s from the first reading); longer traces are averaged in equal
    bins down to ``limit`` points (a bin mean keeps the energy; a stride would drop peaks)."""
    t = np.array([r.time_monotonic for r in readings], np.float64)
    w = np.array([r.total_mw / 1e3 for r in readings], np.float64)
    if t.size > limit:
        bins = np.array_split(np.arange(t.size), limit)
        t = np.array([t[b].mean() for b in bins])
        w = np.array([w[b].mean() for b in bins])
    t0 = float(t[0]) if t.size else 0.0
    return {"t_s": [float(x - t0) for x in t], "w": [float(x) for x in w]}


__all__ = ["bench_model", "latency_stats", "repeatability", "score_spread", "estimate_power", "cpu_estimate", "measured_power", "power_trace", "graph_footprint",
           "SCHEMA"]
