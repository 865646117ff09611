"""``spikeedge report``: one self-contained HTML file from benchmark run records.

Self-contained means it opens offline and from e-mail: CSS inline, figures embedded as PNG
``data:`` URIs, no script, no font or URL fetched from anywhere. Everything that comes from a
record (model names, labels, kernel strings, package versions) is HTML-escaped, because records
come from boards and users. ``render_report`` is a pure function of the records (no clock, no
host name), so the same runs give the same page; ``write_report`` writes it through a temporary
file and a rename, and optionally each figure as a PNG for slides. docs/report.md describes
every section and how each plot is computed. The page's CSS, captions and sections are here, read
and changed together; the two run tables and their cell formatting are in ``report_tables.py``.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, MissingExtraError
from .report_tables import (  # noqa: F401  (si, flags and the cell helpers are imported from here too)
    _details_table,
    _e,
    _get,
    _num,
    _summary_table,
    cpu_estimate,
    flags,
    op_count_estimate,
    si,
)

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
    "energy": "Energy per inference of the newest run of each model, board and backend: solid bars measured by a power "
              "meter, pale hatched bars estimated by a CPU model (the board profile's measured idle and load power x the "
              "inference time). The black tick marks the dynamic part (total minus idle power x time) where there is an idle level. "
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


def _sorted(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Newest first (ISO-8601 UTC strings sort as times), ties by run id: a stable page."""
    by_id = sorted(records, key=lambda r: str(r.get("run_id") or ""))
    return sorted(by_id, key=lambda r: str(r.get("created") or ""), reverse=True)


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
    cpu_model = sum(1 for r in records if cpu_estimate(r))
    op_only = sum(1 for r in records if op_count_estimate(r))
    cards = [("runs", len(records)), ("boards", len(boards)), ("backends", ", ".join(backends)),
             ("models", len(models)), ("energy measured / CPU-model est. / op-count only", "%d / %d / %d" % (measured, cpu_model, op_only))]
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
        "trials; sem is the standard error of the trial means. Energy is shown where a power meter measured it, or as a "
        "<i>CPU-model estimate</i> (the board profile's measured idle and load power x time; hover for its basis); "
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

