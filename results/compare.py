"""Compare two stored runs metric by metric: did B regress against A, beyond noise?

The rule (``docs/results-store.md``): a metric *regresses* when it moved in its bad direction by
more than its threshold, and *improves* when it moved the good way by more than it. The
threshold is the largest of

- a relative floor: changes smaller than this are not worth a CI failure (latency and energy 5%,
  p99 and dynamic energy 10%, counts 1%; the task metric 1 point of accuracy or 5% relative for
  error metrics such as sMAPE);
- ``k`` (3) combined standard errors, sqrt(se_A^2 + se_B^2), where the runs carry them: the mean
  latency's standard error (the larger of the per-inference SEM and that of the trial means) and
  distribution-free standard errors of p50/p99 from the per-inference samples;
- the trial spread: the larger of A's and B's largest relative deviation of a trial mean from the
  run's mean (a change smaller than a run's own trial-to-trial drift is not evidence).

Comparing different things (board, backend, model or task differ) gives warnings, not failures.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

K_SIGMA = 3.0
ACCURACY_POINT = 0.01  # accuracy is a fraction in [0, 1]: one point is 0.01


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _get(record: Dict[str, Any], path: str) -> Optional[float]:
    node: Any = record
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if finite(node) else None


def quantile_se(samples: Any, q: float) -> Optional[float]:
    """Standard error of the q-quantile without assuming a distribution: the number of samples
    below the true quantile is binomial (sd sqrt(n q (1-q))), so half the gap between the order
    statistics that far either side is one standard error. None below 20 samples."""
    xs = sorted(x for x in (samples or []) if finite(x))
    n = len(xs)
    if n < 20:
        return None
    d = math.sqrt(n * q * (1 - q))
    lo = xs[max(0, int(math.floor(q * n - d)))]
    hi = xs[min(n - 1, int(math.ceil(q * n + d)))]
    return (hi - lo) / 2


def mean_se(record: Dict[str, Any]) -> Optional[float]:
    """The mean latency's standard error: the larger of the per-inference SEM and the SE of the
    trial means (which also sees drift between trials)."""
    lat = record.get("latency") or {}
    ses = [float(lat["sem_ms"])] if finite(lat.get("sem_ms")) else []
    trials = [t for t in lat.get("trial_means_ms") or [] if finite(t)]
    if len(trials) >= 2:
        ses.append(statistics.stdev(trials) / math.sqrt(len(trials)))
    return max(ses) if ses else None


def trial_spread(record: Dict[str, Any]) -> float:
    """Largest relative deviation of a trial mean from the run's mean latency (0 if unknown)."""
    lat = record.get("latency") or {}
    mean = lat.get("mean_ms")
    trials = [t for t in lat.get("trial_means_ms") or [] if finite(t)]
    if not trials or not finite(mean) or mean <= 0:
        return 0.0
    return max(abs(t - mean) for t in trials) / mean


def _rel_se(record: Dict[str, Any]) -> Optional[float]:
    se, mean = mean_se(record), _get(record, "latency.mean_ms")
    return se / mean if se is not None and mean else None


class Metric(NamedTuple):
    name: str  # dotted path in the record
    label: str  # short name for tables
    unit: str
    floor: float  # relative floor
    se: Optional[Callable[[Dict[str, Any]], Optional[float]]]  # absolute SE of this metric in one run
    timing: bool  # scales with latency: the trial spread applies


def _scaled_se(path: str) -> Callable[[Dict[str, Any]], Optional[float]]:
    """SE of a quantity proportional to the mean time (energy) or its inverse (throughput): the
    latency's relative SE carried over."""
    def se(record: Dict[str, Any]) -> Optional[float]:
        rel, value = _rel_se(record), _get(record, path)
        return abs(value) * rel if rel is not None and value is not None else None
    return se


METRICS = (
    Metric("latency.mean_ms", "latency mean", "ms", 0.05, mean_se, True),
    Metric("latency.p50_ms", "latency p50", "ms", 0.05, lambda r: quantile_se((r.get("latency") or {}).get("samples_ms"), 0.5), True),
    Metric("latency.p99_ms", "latency p99", "ms", 0.10, lambda r: quantile_se((r.get("latency") or {}).get("samples_ms"), 0.99), True),
    Metric("latency.throughput_per_s", "throughput", "1/s", 0.05, _scaled_se("latency.throughput_per_s"), True),
    Metric("power.energy_per_inference_j.total", "energy total", "J", 0.05, _scaled_se("power.energy_per_inference_j.total"), True),
    Metric("power.energy_per_inference_j.dynamic", "energy dynamic", "J", 0.10, _scaled_se("power.energy_per_inference_j.dynamic"), True),
    Metric("workload.synops_per_inference.effective", "synops effective", "ops", 0.01, None, False),
    Metric("model.file_bytes", "file bytes", "B", 0.01, None, False),
)
HIGHER_IS_BETTER = {"latency.throughput_per_s"}


def _row(name: str, label: str, unit: str, a: Optional[float], b: Optional[float], higher: bool,
         terms: List[Tuple[float, str]], note: Optional[str] = None) -> Dict[str, Any]:
    row: Dict[str, Any] = {"metric": name, "label": label, "unit": unit, "higher_is_better": higher, "a": a, "b": b, "delta": None,
                           "delta_pct": None, "threshold": None, "basis": None, "status": "n/a"}
    if a is None or b is None or note:
        row["note"] = note or "missing in %s" % ("A" if a is None else "B")
        return row
    threshold, basis = max(terms)
    delta = b - a
    worse = -delta if higher else delta
    row.update(delta=delta, delta_pct=100 * delta / abs(a) if a else None, threshold=threshold, basis=basis,
               status="regressed" if worse > threshold else "improved" if -worse > threshold else "same")
    return row


def _metric_row(m: Metric, ra: Dict[str, Any], rb: Dict[str, Any], k: float, note: Optional[str]) -> Dict[str, Any]:
    a, b = _get(ra, m.name), _get(rb, m.name)
    terms = [(m.floor * abs(a or 0.0), "%g%% floor" % (100 * m.floor))]
    if m.se is not None:
        sa, sb = m.se(ra), m.se(rb)
        if sa is not None and sb is not None:
            terms.append((k * math.hypot(sa, sb), "%g SE" % k))
    if m.timing:
        terms.append((max(trial_spread(ra), trial_spread(rb)) * abs(a or 0.0), "trial spread"))
    return _row(m.name, m.label, m.unit, a, b, m.name in HIGHER_IS_BETTER, terms, note)


def _task_row(ra: Dict[str, Any], rb: Dict[str, Any]) -> Dict[str, Any]:
    ta, tb = ra.get("task") or {}, rb.get("task") or {}
    metric = ta.get("metric") or "metric"
    a, b = _get(ra, "task.value"), _get(rb, "task.value")
    if str(metric).lower() == "accuracy":
        terms = [(ACCURACY_POINT, "1 point")]
    else:
        terms = [(0.05 * abs(a or 0.0), "5% floor")]
    note = None
    if (ta.get("name"), metric) != (tb.get("name"), tb.get("metric")):
        note = "different tasks or metrics"
    return _row("task." + str(metric), "task " + str(metric), "", a, b, bool(ta.get("higher_is_better")), terms, note)


def _summary(r: Dict[str, Any]) -> Dict[str, Any]:
    model = r.get("model") or {}
    return {"run_id": r.get("run_id"), "created": r.get("created"), "label": r.get("label"), "board": r.get("board"),
            "backend": r.get("backend"), "model": model.get("name"), "model_sha256": model.get("sha256"),
            "task": (r.get("task") or {}).get("name")}


def compare_runs(a: Dict[str, Any], b: Dict[str, Any], k: float = K_SIGMA) -> Dict[str, Any]:
    """Per-metric deltas of run ``b`` against run ``a`` and whether any regressed."""
    warnings = []
    for what, get in (("board", lambda r: r.get("board")), ("backend", lambda r: r.get("backend")),
                      ("model sha256", lambda r: ((r.get("model") or {}).get("sha256") or "")[:12] or None),  # 12 digits tell files apart
                      ("task", lambda r: (r.get("task") or {}).get("name"))):
        if get(a) != get(b):
            warnings.append("A and B differ in %s (%s vs %s): comparing different things" % (what, get(a), get(b)))
    pa, pb = a.get("power") or {}, b.get("power") or {}
    power_note = None
    if pa and pb and pa.get("label") != pb.get("label"):
        power_note = "power %s vs %s" % (pa.get("label"), pb.get("label"))
        warnings.append("energy not compared: A's power is %s, B's %s" % (pa.get("label"), pb.get("label")))
    rows = [_metric_row(m, a, b, k, power_note if m.name.startswith("power.") else None) for m in METRICS[:6]]
    rows.append(_task_row(a, b))
    rows += [_metric_row(m, a, b, k, power_note if m.name.startswith("power.") else None) for m in METRICS[6:]]
    regressions = [row["metric"] for row in rows if row["status"] == "regressed"]
    return {"a": _summary(a), "b": _summary(b), "k": k, "rows": rows, "warnings": warnings,
            "regressions": regressions, "regressed": bool(regressions)}
