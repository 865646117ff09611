"""Which runs and points the report's figures and tables show, chosen from run records
(``spikeedge.bench/1``): readable run names, the newest run per key, a model in all its forms,
the metric-vs-SynOps points and their Pareto front. Plain Python, no matplotlib (``plots.py``
draws them)."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple


def run_names(records: Sequence[Dict[str, Any]]) -> List[str]:
    """A short readable name per run, "model · backend · board [label]"; runs that would share a
    name get their run id's first 6 characters appended so every plot row stays identifiable."""
    base = []
    for r in records:
        name = "%s · %s · %s" % ((r.get("model") or {}).get("name") or "?", r.get("backend") or "?", r.get("board") or "?")
        if r.get("label"):
            name += " [%s]" % r["label"]
        base.append(name)
    return [n + (" #%s" % str(r.get("run_id") or "")[:6] if base.count(n) > 1 else "") for n, r in zip(base, records)]


SAME_SYNOPS = 1e-4  # relative: SynOps this close, with the same metric, are one point


def pareto_front(points: Sequence[Tuple[float, float]], higher_is_better: bool, rel_tol: float = SAME_SYNOPS) -> List[int]:
    """Indices of the non-dominated points, ordered by cost (synaptic operations) ascending.

    A point (cost, metric) is dominated when another point costs no more and has a metric at
    least as good, and is strictly better in one of the two. Costs within ``rel_tol`` of each
    other count as equal (``SAME_SYNOPS``: TFLite's float32 graph counts up to half an operation
    per inference differently from the bundle, so a worse metric at 0.5 fewer operations must not
    pass as a trade-off: it drew strictly worse points on the front). Equal points are all kept
    (none strictly dominates the other). Along the returned front the metric strictly improves
    with cost."""
    sign = 1.0 if higher_is_better else -1.0

    def same(a: float, b: float) -> bool:
        return abs(a - b) <= rel_tol * max(abs(a), abs(b))

    keep = []
    for i, (c, m) in enumerate(points):
        g = sign * m
        dominated = any((c2 <= c or same(c2, c)) and sign * m2 >= g and ((c2 < c and not same(c2, c)) or sign * m2 > g)
                        for j, (c2, m2) in enumerate(points) if j != i)
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], -sign * points[i][1]))


def _created(r: Dict[str, Any]) -> Any:
    return str(r.get("created") or "")


def _samples_then_time(r: Dict[str, Any]) -> Any:
    """A task score over more samples is the more complete one (a quick 3-window check on a slow
    board must not replace the 30-window score); the newest among equals."""
    n = (r.get("task") or {}).get("samples")
    return (n if isinstance(n, (int, float)) else 0, _created(r))


def newest_per(records: Sequence[Dict[str, Any]], key: Any, rank: Any = _created) -> List[Dict[str, Any]]:
    """The newest record (or the highest ``rank``) for each ``key(record)``, in first-seen order
    of the keys (ISO-8601 UTC ``created`` strings sort as times)."""
    best = {}  # type: Dict[Any, Dict[str, Any]]
    order = []
    for r in records:
        k = key(r)
        if k not in best:
            order.append(k)
            best[k] = r
        elif rank(r) > rank(best[k]):
            best[k] = r
    return [best[k] for k in order]


_FORM_SUFFIX = re.compile(r"\.(seb|onnx|tflite)$", re.IGNORECASE)


def model_family(r: Dict[str, Any]) -> Tuple[str, Any, Any]:
    """One model in all its forms: the bundle ``m.seb`` and the step graphs ``m.onnx`` and
    ``m.tflite`` exported from it are three files (three sha256s, one backend each) of one
    network. They share the file name without its suffix (the convention ``spikeedge bench
    --backend`` finds siblings by) and the neuron and synapse counts (read from the step-graph
    card, equal for every form)."""
    m = r.get("model") or {}
    return _FORM_SUFFIX.sub("", str(m.get("name") or "?")), m.get("neurons"), m.get("synapses")


def _metric_point(r: Dict[str, Any]) -> Optional[Tuple[float, float]]:
    t = r.get("task") or {}
    w = r.get("workload") or {}
    ops = (w.get("synops_per_inference") or {}).get("effective")
    if t.get("value") is None or ops is None:
        return None
    v, c = float(t["value"]), float(ops)
    if not (math.isfinite(v) and math.isfinite(c)) or c < 0:
        return None
    return c, v




class Point(NamedTuple):
    """One point of the metric-vs-SynOps plot: a model (``model_family``: a bundle and the graphs
    exported from it) on one task, with the backends that gave this same (SynOps, metric) pair."""

    synops: float
    value: float
    label: str  # model file name and kept density
    backends: Tuple[str, ...]


def pareto_points(records: Sequence[Dict[str, Any]]) -> Dict[Tuple[str, str, bool], List[Point]]:
    """Points per (task, metric, higher_is_better), one panel each. The newest run of each model
    (``model_family``) and backend counts; the backends of one model with the same SynOps and
    metric (the usual case: ``m.seb``, ``m.onnx`` and ``m.tflite`` on runtimes that are
    bit-exact) share one point, others (say a tflite float graph) get their own. "The same"
    SynOps: within ``SAME_SYNOPS`` (TFLite computes in float32 and may count half an operation
    more per inference on average; drawn apart, the two points' labels would overprint)."""
    runs = [r for r in records if _metric_point(r) is not None]
    runs = newest_per(runs, lambda r: (model_family(r), r.get("backend"), (r.get("task") or {}).get("name")), rank=_samples_then_time)
    merged = []  # type: List[List[Any]]  # [group, family, synops, value, backends, label]
    for r in runs:
        t = r["task"]
        group = (str(t.get("name")), str(t.get("metric")), bool(t.get("higher_is_better")))
        c, v = _metric_point(r)
        for m in merged:
            if m[0] == group and m[1] == model_family(r) and m[3] == v and abs(m[2] - c) <= SAME_SYNOPS * max(abs(m[2]), abs(c)):
                m[4].append(str(r.get("backend")))
                break
        else:
            merged.append([group, model_family(r), c, v, [str(r.get("backend"))], _point_label(r)])
    groups = {}  # type: Dict[Tuple[str, str, bool], List[Point]]
    for group, _, c, v, backends, label in merged:
        groups.setdefault(group, []).append(Point(c, v, label, tuple(sorted(backends))))
    return groups


def _point_label(r: Dict[str, Any]) -> str:
    density = ((r.get("model") or {}).get("pruning") or {}).get("density")
    return "%s%s" % (model_family(r)[0], "" if density is None else " (d=%.2g)" % density)
