"""The report's tables and the cell formatting they share (``results/report.py`` assembles the
page): the summary table of key columns, sized to stay on screen at 1280 px
(``tests/test_report_browser.py`` checks it in headless Chromium), and the run details table with
the rest of each run's figures, among them the operation-count energy estimate, which never
stands beside measured joules. Values from records are HTML-escaped here."""

from __future__ import annotations

import html
from typing import Any, Dict, List, Sequence, Tuple


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _get(record: Dict[str, Any], *path: str) -> Any:
    cur = record  # type: Any
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _num(value: Any, fmt: str = "%.3g") -> str:
    if value is None:
        return "–"
    try:
        return fmt % float(value)
    except (TypeError, ValueError):
        return _e(value)


def si(value: Any, unit: str) -> str:
    """``0.00123, "J"`` -> ``"1.23 mJ"``: engineering prefixes keep a table column readable."""
    if value is None:
        return "–"
    v = float(value)
    if v == 0:
        return "0 %s" % unit
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(v) >= factor:
            return "%.3g %s%s" % (v / factor, prefix, unit)
    return "%.3g p%s" % (v / 1e-12, unit)


def _bytes(value: Any) -> str:
    if value is None:
        return "–"
    v = float(value)
    for factor, name in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if v >= factor:
            return "%.3g %s" % (v / factor, name)
    return "%d B" % v


def _pct(value: Any) -> str:
    return "–" if value is None else "%.1f%%" % (100 * float(value))


def _throttled(value: Any) -> bool:
    """Raspberry Pi ``get_throttled`` style: anything but zero means throttling (now or since boot)."""
    if value in (None, ""):
        return False
    try:
        return int(str(value), 0) != 0
    except ValueError:
        return str(value).strip().lower() not in ("no", "false", "none", "0")


def flags(record: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(short flag, explanation) pairs for what makes a run's numbers less trustworthy."""
    out = []
    rep = record.get("repeatability") or {}
    if rep.get("ok") is False or rep.get("warning"):
        out.append(("not repeatable", rep.get("warning") or "trial means deviate by %s" % _pct(rep.get("max_deviation"))))
    thr = _get(record, "environment", "throttled") or {}
    if _throttled(thr.get("after")) or _throttled(thr.get("before")):
        out.append(("throttled", "throttling flags before %s, after %s" % (thr.get("before"), thr.get("after"))))
    if record.get("power") is None:
        out.append(("no power", "no power meter: no energy figures"))
    return out


def op_count_estimate(record: Dict[str, Any]) -> bool:
    """True when the run's energy is the operation-count estimate (synaptic operations x pJ per
    operation of a 45 nm int8 accelerator): a figure for hardware that does only those
    operations, orders of magnitude below what a CPU running the same inference draws, so the
    page never sets it beside measured joules."""
    power = record.get("power") or {}
    return bool(power) and power.get("label") != "measured" and power.get("model") != "cpu"


def cpu_estimate(record: Dict[str, Any]) -> bool:
    """True when the run's energy is a CPU model's estimate (the board profile's measured idle
    and load power x time, ``measure.bench.cpu_estimate``): shown, badged as an estimate."""
    power = record.get("power") or {}
    return power.get("label") == "estimate" and power.get("model") == "cpu"


def _energy_cell(r: Dict[str, Any]) -> str:
    power = r.get("power") or {}
    if not power:
        return '<span class="muted">no meter</span>'
    if op_count_estimate(r):
        return '<span class="muted" title="only an operation-count estimate (in the run details): not this CPU\'s energy">not measured</span>'
    energy = power.get("energy_per_inference_j") or {}
    badge = ('<span class="badge estimate" title="%s">CPU-model estimate</span>' % _e(power.get("basis"))
             if cpu_estimate(r) else '<span class="badge measured">measured</span>')
    return '<span title="dynamic (above idle): %s">%s</span> %s' % (_e(si(energy.get("dynamic"), "J")), si(energy.get("total"), "J"), badge)


def synaptic(record: Dict[str, Any]) -> Dict[str, Any]:
    """NeuroBench's ``SynapticOperations`` of a record (``Effective_MACs``, ``Effective_ACs``,
    ``Dense``, ``Effective``: their sum), from the names records carry since NeuroBench's were
    adopted or, in older records, from ``synops_per_inference`` (no MAC/AC split there)."""
    w = record.get("workload") or {}
    so = w.get("SynapticOperations")
    if isinstance(so, dict):
        return so
    old = w.get("synops_per_inference") or {}
    return {"Effective_MACs": None, "Effective_ACs": None, "Dense": old.get("dense"), "Effective": old.get("effective")}


def activation_sparsity(record: Dict[str, Any]) -> Any:
    w = record.get("workload") or {}
    return w.get("ActivationSparsity", w.get("activation_sparsity"))


def _task_cell(task: Dict[str, Any]) -> str:
    """``smape 24.21 ± 2.3 ↓``: the value and the standard deviation of the per-window (or
    per-sample) scores it is the mean of, where the record has it; the standard error and the
    sample count on hover."""
    if not task:
        return "–"
    arrow = "↑" if task.get("higher_is_better") else "↓"
    spread = "" if task.get("std") is None else " ± %s" % _num(task.get("std"), "%.2g")
    title = "mean over %s samples" % _e(task.get("samples"))
    if task.get("sem") is not None:
        title += "; sd %s, sem %s" % (_num(task.get("std"), "%.3g"), _num(task.get("sem"), "%.3g"))
    return '<span title="%s">%s %s%s %s</span>' % (title, _e(task.get("metric")), _num(task.get("value"), "%.4g"), spread, arrow)


# The key columns: on screen at 1280 px (tests/test_report_browser.py checks it); the rest of a
# run's figures are in the run details table below.
SUMMARY_COLUMNS = ("model", "backend", "board", "task metric ± sd", "latency mean ± sem", "energy / inference",
                   "SynOps (effective) / inf.", "activation sparsity", "connection sparsity", "footprint", "flags")


def _summary_table(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    rows = []
    for name, r in zip(names, records):
        lat = r.get("latency") or {}
        model = r.get("model") or {}
        density = _get(model, "pruning", "density")
        model_cell = _e(model.get("name")) + ("" if density is None else ' <span class="muted">d=%s</span>' % _num(density, "%.2g"))
        flag_cells = "".join('<span class="badge flag" title="%s">%s</span>' % (_e(why), _e(f)) for f, why in flags(r))
        so = synaptic(r)
        split = "" if so.get("Effective_MACs") is None else "Effective_MACs %s, Effective_ACs %s" % (si(so["Effective_MACs"], ""), si(so.get("Effective_ACs"), ""))
        cells = [
            ("wrap", model_cell),
            ("", _e(r.get("backend"))),
            ("wrap", _e(r.get("board"))),
            ("num", _task_cell(r.get("task") or {})),
            ("num", "%s ± %s ms" % (_num(lat.get("mean_ms"), "%.4g"), _num(lat.get("sem_ms"), "%.2g"))),
            ("num", _energy_cell(r)),
            ("num", '<span title="%s">%s</span>' % (_e(split), si(so.get("Effective"), ""))),
            ("num", _pct(activation_sparsity(r))),
            ("num", _pct(model.get("connection_sparsity"))),
            ("num", _bytes(model.get("footprint_bytes"))),
            ("wrap", flag_cells),
        ]
        rows.append("<tr title=\"%s\">%s</tr>" % (_e(name), "".join('<td class="%s">%s</td>' % c for c in cells)))
    return ('<table id="runs"><thead><tr>%s</tr></thead><tbody>%s</tbody></table>'
            % ("".join("<th>%s</th>" % _e(h) for h in SUMMARY_COLUMNS), "".join(rows)))


def _details_table(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    """Per run what the summary leaves out: identity, latency percentiles, dynamic energy, the
    operation-count energy estimate (apart from the measurements), NeuroBench's MAC/AC split."""
    head = ["run", "created", "model · backend · board", "label", "thr.", "p50", "p99", "throughput", "dynamic energy",
            "op-count energy est.", "Effective_MACs", "Effective_ACs", "Dense"]
    rows = []
    for name, r in zip(names, records):
        lat = r.get("latency") or {}
        energy = _get(r, "power", "energy_per_inference_j") or {}
        so = synaptic(r)
        est = (si(energy.get("total"), "J") + ' <span class="badge estimate">estimate</span>') if op_count_estimate(r) else "–"
        cells = [
            ("", '<code title="%s">%s</code>' % (_e(r.get("run_id")), _e(str(r.get("run_id") or "")[:8]))),
            ("", _e(r.get("created"))),
            ("wrap", _e(name)),
            ("", _e(r.get("label") or "")),
            ("num", _e(r.get("threads"))),
            ("num", _num(lat.get("p50_ms"), "%.4g ms")),
            ("num", _num(lat.get("p99_ms"), "%.4g ms")),
            ("num", _num(lat.get("throughput_per_s"), "%.4g /s")),
            ("num", si(energy.get("dynamic"), "J") if r.get("power") and not op_count_estimate(r) else "–"),
            ("num", est),
            ("num", si(so.get("Effective_MACs"), "")),
            ("num", si(so.get("Effective_ACs"), "")),
            ("num", si(so.get("Dense"), "")),
        ]
        rows.append("<tr>%s</tr>" % "".join('<td class="%s">%s</td>' % c for c in cells))
    return ('<div class="scroll"><table><thead><tr>%s</tr></thead><tbody>%s</tbody></table></div>'
            % ("".join("<th>%s</th>" % _e(h) for h in head), "".join(rows)))
