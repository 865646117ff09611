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

from .bundle import file_sha256
from .errors import SpikeedgeError

SCHEMA = "spikeedge.bench/1"
MAX_SAMPLES_MS = 10000  # per-inference times kept in the record
MAX_TRACE = 2000  # power trace points kept in the record
REPEATABILITY = 0.05  # NeuroBench: every trial's mean within 5% of the reported mean
FORMAT = {"event": "bundle", "onnx": "onnx", "tflite": "tflite"}
Progress = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------- the protocol


def bench_model(path: Any, task: str, backend: str = "auto", trials: int = 5, warmup: int = 5, samples: Optional[int] = None,
                meter: Any = None, root: str = "/", label: Optional[str] = None, threads: int = 1,
                progress: Optional[Progress] = None, baseline_s: float = 2.0, data: Optional[str] = None,
                meter_note: Optional[str] = None, board: Optional[str] = None) -> Dict[str, Any]:
    """Benchmark the model file ``path`` on ``task``; one run record (``docs/bench.md``).

    ``samples``: samples per trial (default: the task's 30 forecast windows, or up to 1,000
    test inputs); ``meter``: a ``runtime.power_meters`` meter, or None (no power figures,
    ``meter_note`` says why); ``progress(done, total, phase)`` is called between inferences
    (outside the timed region); whatever it raises (KeyboardInterrupt) ends the run with the
    meter's thread stopped and nothing returned.
    """
    from .backends import backend_of, open_model
    from .boards import detect
    from .environment import environment, thermal

    path = Path(path)
    for option, value, least in (("--trials", trials, 1), ("--samples", samples, 1), ("--warmup", warmup, 0), ("--baseline", baseline_s, 0)):
        if value is not None and value < least:
            raise SpikeedgeError("%s %s: must be >= %d" % (option, value, least))
    session = open_model(path, backend, threads=threads)
    kind = backend_of(path)
    spec, items, metric = _task_items(task, session, samples, data)
    width = _input_width(_card(session))
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
        from .boards import get_board

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
    counts: List[Tuple[Dict[str, int], int, int]] = []
    scores: List[float] = []
    try:
        if meter is not None and not estimate:
            from .power_sampler import Sampler

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
                    counts.append((dict(session.spike_counts), int(session.synops), int(session.steps)))
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
    workload = _workload(session, counts, _dense_ops_per_step(session))
    if estimate:
        power: Optional[Dict[str, Any]] = estimate_power(workload["synops_per_inference"]["effective"], latency["mean_ms"], meter)
    elif result is not None:
        power = measured_power(result, sampler.samples, idle_mw, latency["mean_ms"], baseline_s)
        if power is None:
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
        "model": _model_record(path, session),
        "task": {"name": spec.name, "metric": metric.name, "value": float(np.mean(scores)), "higher_is_better": metric.name == "accuracy",
                 "samples": n},
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


# ----------------------------------------------------------------------------- power


def estimate_power(synops: float, mean_ms: float, meter: Any) -> Dict[str, Any]:
    """Operation-count estimate: effective synaptic operations x energy per operation. All of
    it is compute above idle, so total = dynamic; there is no idle figure and no trace."""
    joules = float(synops) * float(meter.pj_per_op) * 1e-12
    watts = joules / (mean_ms / 1e3) if mean_ms > 0 else 0.0
    desc = meter.describe()
    return {"label": "estimate", "meter": "estimate", "rails": list(desc.get("rails", ["estimate"])), "sampling_rate_hz": None,
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
            "total_rule": result.meter.get("total"), "coverage": w.coverage, "error": result.error}


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


# ----------------------------------------------------------------------------- workload and the file


def _neurons(session: Any) -> Dict[str, int]:
    found = getattr(session, "neurons", None)
    if isinstance(found, dict):
        return {k: int(v) for k, v in found.items()}
    return {ls.layer.name: int(ls.layer.n) for ls in session.layers}


def _workload(session: Any, counts: List[Tuple[Dict[str, int], int, int]], dense_per_step: float) -> Dict[str, Any]:
    """NeuroBench's workload metrics from the runtime's counters, averaged per sample."""
    neurons = _neurons(session)
    steps = sum(c[2] for c in counts)
    spikes = {name: sum(c[0].get(name, 0) for c in counts) for name in neurons}
    slots = sum(neurons.values()) * steps
    return {"activation_sparsity": 1.0 - sum(spikes.values()) / slots if slots else None,
            "synops_per_inference": {"dense": dense_per_step * steps / len(counts), "effective": sum(c[1] for c in counts) / len(counts)},
            "spike_rate": {name: spikes[name] / (neurons[name] * steps) if steps else 0.0 for name in neurons}}


def _card(session: Any) -> Dict[str, Any]:
    card = getattr(session, "card", None)
    if card is not None:
        return card
    from .stepgraph import card_for

    return card_for(session.bundle, "event")


def _input_width(card: Dict[str, Any]) -> Optional[int]:
    """Input values per time step the model takes: an HRSNN's encoder inputs, a conv model's
    image size (channels x height x width); None when the card does not say."""
    if card.get("n_inputs") is not None:
        return int(card["n_inputs"])
    if card.get("input_shape"):
        return int(np.prod(card["input_shape"]))
    return None


def _dense_ops_per_step(session: Any) -> float:
    """Every weight times every activation, per time step, over the layers whose operations the
    runtime counts: a recurrent model's input and recurrent synapses (its readout of leaky
    traces is counted in neither figure); a conv model's layers and readout."""
    card = _card(session)
    if card["model"] == "hrsnn":
        return float(sum(len(l["nnz_in"]) * l["n"] + l["n"] * l["n"] for l in card["layers"]))
    ops = 0
    for row in card["layers"]:
        if row["kind"] in ("conv_lif", "conv_stream"):
            out = row["shape_out"]
            ops += row["shape_in"][0] * row["kernel"][0] * row["kernel"][1] * out[0] * out[1] * out[2]
        elif row["kind"] == "linear_lif":
            ops += len(row["nnz"]) * row["shape_out"][0]
    return float(ops + len(card["readout"]["nnz"]) * int(card["n_outputs"]))


def _synapses(card: Dict[str, Any]) -> Tuple[int, int]:
    """(non-zero weights, all weight positions) of the spiking layers, readout excluded."""
    if card["model"] == "hrsnn":
        nz = sum(sum(l["nnz_in"]) + sum(l["nnz_rec"]) for l in card["layers"])
        return nz, sum(len(l["nnz_in"]) * l["n"] + l["n"] * l["n"] for l in card["layers"])
    nz = dense = 0
    for row in card["layers"]:
        if row["kind"] in ("conv_lif", "conv_stream"):
            nz += int(np.sum(row["nnz"]))
            dense += row["shape_in"][0] * row["kernel"][0] * row["kernel"][1] * row["shape_out"][0]
        elif row["kind"] == "linear_lif":
            nz += int(np.sum(row["nnz"]))
            dense += len(row["nnz"]) * row["shape_out"][0]
    return nz, dense


def _model_record(path: Path, session: Any) -> Dict[str, Any]:
    from .backends import backend_of

    kind = backend_of(path)
    card = _card(session)
    nz, dense = _synapses(card)
    if kind == "event":
        from .summary import describe

        footprint: Optional[int] = int(describe(session.bundle)["footprint_bytes_dense"])
    else:
        footprint = graph_footprint(path, kind)
    prov = card.get("provenance") or {}
    pruning = prov.get("pruning") if isinstance(prov.get("pruning"), dict) else {}
    return {"path": str(path), "name": path.name, "sha256": file_sha256(path), "format": FORMAT[kind], "file_bytes": path.stat().st_size,
            "footprint_bytes": footprint, "connection_sparsity": 1.0 - nz / dense if dense else 0.0,
            "neurons": sum(_neurons(session).values()), "synapses": nz,
            "pruning": {"method": pruning.get("method"), "density": kept_density(pruning)}}


def kept_density(pruning: Dict[str, Any]) -> Optional[float]:
    """The kept fraction a pruning record states: ``density`` (magnitude, random), LNP's
    ``kept_synapses``, SCA's achieved ``channels.density``; 1.0 for ``method: none``."""
    channels = pruning.get("channels") if isinstance(pruning.get("channels"), dict) else {}
    for value in (pruning.get("density"), pruning.get("kept_synapses"), channels.get("density")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 1.0 if pruning.get("method") == "none" else None


# ----------------------------------------------------------------------------- footprint of step graphs

# ONNX TensorProto.DataType -> bytes per element
_ONNX_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def graph_footprint(path: Path, kind: str) -> Optional[int]:
    """NeuroBench's footprint of a step graph: the constant tensors it stores (weights, scales,
    constants), elements x element size. Read with the standard library (no onnx or schema
    package on a board); None when the file cannot be walked."""
    try:
        blob = path.read_bytes()
        return _onnx_initializer_bytes(blob) if kind == "onnx" else _tflite_constant_bytes(blob)
    except (ValueError, IndexError, KeyError):
        return None


def _varint(b: bytes, i: int) -> Tuple[int, int]:
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return x, i


def _fields(b: bytes, i: int, end: int) -> Any:
    """(field number, wire type, value) of a protobuf message; length-delimited values as (start, end)."""
    while i < end:
        key, i = _varint(b, i)
        wire = key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield key >> 3, wire, v
        elif wire == 2:
            n, i = _varint(b, i)
            yield key >> 3, wire, (i, i + n)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)


def _onnx_initializer_bytes(b: bytes) -> int:
    """ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto dims (1), data_type (2)."""
    total = 0
    for f, wire, v in _fields(b, 0, len(b)):
        if f != 7 or wire != 2:
            continue
        for g, gw, gv in _fields(b, v[0], v[1]):
            if g != 5 or gw != 2:
                continue
            numel, dtype = 1, 0
            for t, tw, tv in _fields(b, gv[0], gv[1]):
                if t == 1 and tw == 0:
                    numel *= tv
                elif t == 1 and tw == 2:  # packed dims
                    i = tv[0]
                    while i < tv[1]:
                        d, i = _varint(b, i)
                        numel *= d
                elif t == 2 and tw == 0:
                    dtype = tv
            total += numel * _ONNX_SIZES[dtype]
    return total


def _tflite_constant_bytes(blob: bytes) -> int:
    """Bytes of every non-empty buffer of a TFLite file except the metadata entries'."""
    import struct

    from .tflite_meta import BUF_DATA, BUF_SIZE, META_BUFFER, MODEL_BUFFERS, MODEL_METADATA, _Table, _vector

    if blob[4:8] != b"TFL3":
        raise ValueError("no TFL3 identifier")
    model = _Table(blob, struct.unpack_from("<I", blob, 0)[0])
    skip = set()
    meta_vec = model.ref(MODEL_METADATA)
    if meta_vec is not None:
        for i in _vector(blob, meta_vec):
            at = meta_vec + 4 + 4 * i
            skip.add(_Table(blob, at + struct.unpack_from("<I", blob, at)[0]).u32(META_BUFFER))
    buf_vec = model.ref(MODEL_BUFFERS)
    total = 0
    for i in _vector(blob, buf_vec) if buf_vec is not None else ():
        if i in skip:
            continue
        at = buf_vec + 4 + 4 * i
        buf = _Table(blob, at + struct.unpack_from("<I", blob, at)[0])
        data_at = buf.ref(BUF_DATA)
        total += struct.unpack_from("<I", blob, data_at)[0] if data_at is not None else buf.u64(BUF_SIZE)
    return total


__all__ = ["bench_model", "latency_stats", "repeatability", "estimate_power", "measured_power", "power_trace", "graph_footprint",
           "SCHEMA"]
