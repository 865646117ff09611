"""``spikeedge report``: one self-contained HTML file from benchmark run records.

Self-contained means it opens offline and from e-mail: CSS inline, figures embedded as PNG
``data:`` URIs, no script, no font or URL fetched from anywhere. Everything that comes from a
record (model names, labels, kernel strings, package versions) is HTML-escaped, because records
come from boards and users. ``render_report`` is a pure function of the records (no clock, no
host name), so the same runs give the same page; ``write_report`` writes it through a temporary
file and a rename, and optionally each figure as a PNG for slides. docs/report.md describes
every section and how each plot is computed. About 400 lines in one file on purpose: the page's
CSS, captions and sections are read and changed together.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, MissingExtraError

DEFAULT_TITLE = "spikeedge field benchmark report"

_CSS = """
:root { --fg:#1d2330; --muted:#5d6677; --line:#dfe3ea; --bg:#f6f7f9; --accent:#1f5fbf; --warn:#a35200; --warnbg:#fff3e0; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:22px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c5cbd6; }
main { max-width:1400px; margin:0 auto; padding:8px 32px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:18px 0; }
h2 { font-size:17px; margin:0 0 10px; }
h3 { font-size:15px; margin:16px 0 6px; }
p.note, figcaption, .muted { color:var(--muted); font-size:13px; }
nav a { color:var(--accent); margin-right:14px; text-decoration:none; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { flex:1 1 150px; border:1px solid var(--line); border-radius:6px; padding:10px 14px; }
.card b { display:block; font-size:20px; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; white-space:nowrap; }
th { background:#eef1f5; font-weight:600; position:sticky; top:0; }
tbody tr:nth-child(even) { background:#fafbfc; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
td.wrap { white-space:normal; min-width:180px; }
#runs th { white-space:normal; vertical-align:bottom; }
#runs td.wrap { min-width:0; max-width:200px; overflow-wrap:anywhere; }
#runs td { white-space:normal; }
#runs td.num { white-space:nowrap; }
table.facts { width:auto; margin-bottom:8px; }
table.facts th { position:static; background:none; color:var(--muted); font-weight:500; }
.badge { display:inline-block; padding:0 6px; border-radius:9px; font-size:11px; margin-right:3px; }
.measured { background:#e3f4e6; color:#1b6b2a; }
.estimate { background:#eceff4; color:#4a5568; font-style:italic; }
.flag { background:var(--warnbg); color:var(--warn); }
ul.warnings { margin:0; padding-left:20px; color:var(--warn); }
figure { margin:0; }
figure img { max-width:100%; height:auto; display:block; border:1px solid var(--line); border-radius:4px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px; }
"""

# What each figure shows and how it is computed, printed under it.
_CAPTIONS = {
    "latency": "Per-inference latency of every run (all trials' samples). Box: quartiles; line: median; whiskers: "
               "1st and 99th percentiles; diamond: mean; dots: the samples beyond the whiskers. Colour: backend.",
    "energy": "Energy per inference of the newest run of each model, board and backend, measured by a power meter. "
              "The black tick marks the dynamic part (total minus idle power x time) where an idle level was measured. "
              "Operation-count estimates (synaptic operations x energy per operation of a 45 nm accelerator) are not "
              "drawn: they are not what a CPU draws for the same inference (see the run details).",
    "pareto": "Task metric against effective synaptic operations per inference (the operations that actually "
              "happened: one per spike per outgoing synapse), one point per model file (newest run per backend; "
              "backends with the same result share a point). The red step line is the Pareto front: the points no "
              "other point beats on both counts (fewer or equal operations and an equal or better metric, strictly "
              "better in one); it reads as the best metric reachable within a budget of operations.",
    "power": "Power (W) against time (s) during the benchmark, downsampled to at most 2,000 points. Dashed: idle "
             "level measured before the run; dotted: mean power while inferring.",
}
_MISSING = {
    "latency": "No run has latency samples.",
    "energy": "No run has measured energy (runs benchmarked with --meter none, without a meter, or with only the "
              "operation-count estimate): no energy plot.",
    "pareto": "No run has both a task metric and synaptic operations: no accuracy/SynOps plot.",
    "power": "No run has a power trace (estimates and runs without a meter have none): no power plot.",
}


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


def _sorted(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Newest first (ISO-8601 UTC strings sort as times), ties by run id: a stable page."""
    by_id = sorted(records, key=lambda r: str(r.get("run_id") or ""))
    return sorted(by_id, key=lambda r: str(r.get("created") or ""), reverse=True)


def op_count_estimate(record: Dict[str, Any]) -> bool:
    """True when the run's energy is the operation-count estimate (synaptic operations x pJ per
    operation of a 45 nm int8 accelerator): a figure for hardware that does only those
    operations, orders of magnitude below what a CPU running the same inference draws, so the
    page never sets it beside measured joules."""
    power = record.get("power") or {}
    return bool(power) and power.get("label") != "measured"


def _energy_cell(r: Dict[str, Any]) -> str:
    power = r.get("power") or {}
    if not power:
        return '<span class="muted">no meter</span>'
    if op_count_estimate(r):
        return '<span class="muted" title="only an operation-count estimate (in the run details): not this CPU\'s energy">not measured</span>'
    energy = power.get("energy_per_inference_j") or {}
    return '<span title="dynamic (above idle): %s">%s</span> <span class="badge measured">measured</span>' % (
        _e(si(energy.get("dynamic"), "J")), si(energy.get("total"), "J"))


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


def _warnings(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    items = []
    for name, r in zip(names, records):
        for flag, why in flags(r):
            if flag != "no power":
                items.append("<li><b>%s</b>: %s — %s</li>" % (_e(name), _e(flag), _e(why)))
    if not items:
        return ""
    return '<section id="warnings"><h2>Warnings</h2><ul class="warnings">%s</ul></section>' % "".join(items)


def _env(record: Dict[str, Any], key: str) -> Any:
    return _get(record, "environment", key)


def _distinct(values: Sequence[Any]) -> str:
    """Every different value once, in order, joined by " / " (one value: just it)."""
    seen = []  # type: List[str]
    for v in values:
        text = "–" if v is None or v == "" else str(v)
        if text not in seen:
            seen.append(text)
    return " / ".join(seen)


def _env_section(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    """Per board: the fixed facts (values that differ between runs all shown, joined by " / "),
    then one row per run for what changes from run to run (governor, temperatures, throttling)."""
    boards = []  # type: List[str]
    for r in records:
        if str(r.get("board")) not in boards:
            boards.append(str(r.get("board")))
    parts = []
    for board in boards:
        mine = [(n, r) for n, r in zip(names, records) if str(r.get("board")) == board]
        runs = [r for _, r in mine]
        facts = [(title, _distinct([_env(r, key) for r in runs])) for title, key in (
            ("hostname", "hostname"), ("kernel", "kernel"), ("machine", "machine"), ("CPU", "cpu_model"), ("Python", "python"))]
        facts.append(("spikeedge", _distinct([" ".join(str(x) for x in (_env(r, "spikeedge"), _env(r, "spikeedge_build")) if x)
                                              for r in runs])))
        packages = {}  # type: Dict[str, List[str]]
        for _, r in mine:
            for pkg, ver in sorted((_env(r, "packages") or {}).items()):
                vs = packages.setdefault(str(pkg), [])
                if str(ver) not in vs:
                    vs.append(str(ver))
        facts.append(("packages", ", ".join("%s %s" % (p, " / ".join(v)) for p, v in sorted(packages.items())) or "–"))
        fact_rows = "".join('<tr><th>%s</th><td class="wrap">%s</td></tr>' % (_e(k), _e(v)) for k, v in facts)
        run_rows = []
        for name, r in mine:
            temp = _env(r, "temperature_c") or {}
            thr = _env(r, "throttled") or {}
            run_rows.append("<tr>%s</tr>" % "".join("<td>%s</td>" % c for c in (
                _e(name), _e(r.get("created")), _e(_env(r, "governor") or "–"),
                _num(temp.get("before"), "%.1f °C"), _num(temp.get("after"), "%.1f °C"),
                _e(thr.get("before") or "–"), _e(thr.get("after") or "–"))))
        parts.append('<h3>%s</h3><table class="facts">%s</table><div class="scroll"><table><thead><tr>%s</tr></thead>'
                     "<tbody>%s</tbody></table></div>" % (
                         _e(board), fact_rows,
                         "".join("<th>%s</th>" % h for h in ("run", "created", "governor", "temp. before", "temp. after",
                                                             "throttled before", "throttled after")),
                         "".join(run_rows)))
    return '<section id="environment"><h2>Environment per board</h2>%s</section>' % "".join(parts)


def _pareto_list(records: Sequence[Dict[str, Any]]) -> str:
    """The front's points as a table under the plot (the numbers an engineer will quote)."""
    from .selection import pareto_front, pareto_points

    rows = []
    for (task, metric, hib), pts in sorted(pareto_points(records).items()):
        for i in pareto_front([(p.synops, p.value) for p in pts], hib):
            p = pts[i]
            rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td class=\"num\">%s %s</td><td class=\"num\">%s</td></tr>" % (
                _e(task), _e(p.label), _e(", ".join(p.backends)), _e(metric), _num(p.value, "%.4g"), _e(si(p.synops, ""))))
    if not rows:
        return ""
    return ('<h3>On the Pareto front (fewest SynOps first)</h3><div class="scroll"><table><thead><tr><th>task</th>'
            "<th>model</th><th>backends</th><th>metric</th><th>SynOps / inference</th></tr></thead><tbody>%s</tbody>"
            "</table></div>" % "".join(rows))


def build(records: Sequence[Dict[str, Any]], title: str = DEFAULT_TITLE) -> Tuple[str, Dict[str, bytes], Dict[str, str]]:
    """(HTML, {plot name: PNG bytes}, {plot name: why it was left out}) for ``records``."""
    if not records:
        raise DataError("no runs to report")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError("spikeedge report draws with matplotlib: pip install 'spikeedge[offline]'") from None
    from .. import __version__
    from .plots import PLOTS, png_bytes
    from .selection import run_names

    records = _sorted(records)
    names = run_names(records)
    pngs = {}  # type: Dict[str, bytes]
    omitted = {}  # type: Dict[str, str]
    figure_html = []
    for key, heading, draw in PLOTS:
        fig = draw(records)
        if fig is None:
            omitted[key] = _MISSING[key]
            body = '<p class="note">%s</p>' % _e(_MISSING[key])
        else:
            pngs[key] = png_bytes(fig)
            body = '<figure><img src="data:image/png;base64,%s" alt="%s"><figcaption>%s</figcaption></figure>' % (
                base64.b64encode(pngs[key]).decode("ascii"), _e(heading), _e(_CAPTIONS[key]))
            if key == "pareto":
                body += _pareto_list(records)
            if key == "power":
                left = [n for n, r in zip(names, records) if not _get(r, "power", "trace", "t_s")]
                if left:
                    body += '<p class="note">No trace for: %s.</p>' % _e("; ".join(left))
        figure_html.append('<section id="%s"><h2>%s</h2>%s</section>' % (key, _e(heading), body))

    boards = sorted({str(r.get("board")) for r in records})
    backends = sorted({str(r.get("backend")) for r in records})
    models = sorted({str(_get(r, "model", "name")) for r in records})
    created = sorted(str(r.get("created") or "") for r in records)
    measured = sum(1 for r in records if _get(r, "power", "label") == "measured")
    estimated = sum(1 for r in records if _get(r, "power", "label") == "estimate")
    cards = [("runs", len(records)), ("boards", len(boards)), ("backends", ", ".join(backends)),
             ("models", len(models)), ("energy measured / op-count estimate only", "%d / %d" % (measured, estimated))]
    nav = "".join('<a href="#%s">%s</a>' % (k, _e(h.split(" (")[0])) for k, h, _ in PLOTS)
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>%s</title><style>%s</style></head><body>" % (_e(title), _CSS),
        "<header><h1>%s</h1><p>%d runs from %s to %s · boards: %s</p></header><main>" % (
            _e(title), len(records), _e(created[0]), _e(created[-1]), _e(", ".join(boards))),
        '<nav><a href="#summary">Summary</a>%s<a href="#environment">Environment</a></nav>' % nav,
        '<section id="summary"><h2>Summary</h2><div class="cards">%s</div><h3>Runs (newest first)</h3>%s'
        '<p class="note">Task metric: the mean over the task\'s windows or samples, ± the standard deviation of the '
        "per-window (per-sample) scores (hover: the standard error). Latency is per inference (batch 1) over all "
        "trials; sem is the standard error of the trial means. Energy is shown only where a power meter measured it; "
        "an operation-count estimate (synaptic operations x energy per operation of a 45 nm int8 accelerator) is "
        "listed apart in the run details, because a CPU running the same inference draws orders of magnitude more. "
        "SynOps: NeuroBench's effective synaptic operations (Effective_MACs + Effective_ACs; hover for the split). "
        "Sparsities are NeuroBench's ActivationSparsity (spikes per neuron and step) and ConnectionSparsity "
        "(weights). Footprint counts every weight dense (NeuroBench rule). Hover a flag for its reason.</p>"
        '<h3>Run details</h3>%s</section>' % (
            "".join('<div class="card"><span class="muted">%s</span><b>%s</b></div>' % (_e(k), _e(v)) for k, v in cards),
            _summary_table(records, names), _details_table(records, names)),
        _warnings(records, names),
    ] + figure_html + [
        _env_section(records, names),
        "</main><footer>spikeedge %s · records schema %s</footer></body></html>" % (
            _e(__version__), _e(", ".join(sorted({str(r.get("schema")) for r in records})))),
    ]
    return "\n".join(page) + "\n", pngs, omitted


def render_report(records: Sequence[Dict[str, Any]], title: str = DEFAULT_TITLE) -> str:
    """The report page for ``records`` (run records, any order) as one HTML string."""
    return build(records, title)[0]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside ``path``, then rename over it. mkstemp makes the file private (0600); a
    report is for sharing, so it gets the mode a plain ``open`` would have given it."""
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_report(records: Sequence[Dict[str, Any]], path: Path, png_dir: Optional[Path] = None,
                 title: str = DEFAULT_TITLE) -> Dict[str, Any]:
    """Write the report to ``path`` (and ``<png_dir>/<plot>.png`` per drawn plot); each file is
    written to a temporary name beside it, then renamed, so an interrupted run leaves no
    half-written file. Returns what was written, JSON-able."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError("%s: folder %s does not exist" % (path, path.parent))
    page, pngs, omitted = build(records, title)
    written = []
    if png_dir is not None:
        png_dir = Path(png_dir)
        if png_dir.exists() and not png_dir.is_dir():
            raise DataError("--png-dir %s: not a folder" % png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for key, data in pngs.items():
            _atomic_write(png_dir / ("%s.png" % key), data)
            written.append(str(png_dir / ("%s.png" % key)))
    _atomic_write(path, page.encode("utf-8"))
    return {"output": str(path), "runs": len(records), "bytes": len(page.encode("utf-8")),
            "plots": sorted(pngs), "omitted": omitted, "pngs": written}

