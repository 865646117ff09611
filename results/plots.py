"""The report's figures, one small function per plot, each taking run records
(``spikeedge.bench/1``, see ``docs/report.md``) and returning a matplotlib ``Figure`` or ``None``
when no record holds the data it needs.

matplotlib is imported inside the functions (it belongs to the offline extra, and a board never
draws). Figures are built as bare ``matplotlib.figure.Figure`` objects rendered by the Agg canvas,
never through pyplot: no global backend switch, no figure registry leaking memory in a long
process. ``png_bytes`` writes PNGs without the "Software" metadata (which carries a URL and the
matplotlib version) so the same records give the same bytes. Which runs and points a figure
shows (names, newest per key, model families, the Pareto front) is chosen in ``selection.py``.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .selection import model_family, newest_per, pareto_front, pareto_points, run_names

# Fixed colours per backend, so one backend looks the same in every plot.
BACKEND_COLOURS = {"event": "#1f77b4", "onnx": "#ff7f0e", "tflite": "#2ca02c"}
_OTHER_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728"]
MAX_LATENCY_RUNS = 40  # more boxes than this are unreadable on a slide; the newest are drawn
MAX_POWER_RUNS = 8


def _t(text: Any) -> str:
    """Record text as literal matplotlib text: a "$" would start mathtext, and bad mathtext in a
    model name or label would make drawing fail."""
    text = str(text)
    if len(text) > 70:  # a label this long would squeeze the axes to nothing
        text = text[:69] + "…"
    return text.replace("$", r"\$")


def backend_colour(backend: str, order: Sequence[str] = ()) -> str:
    if backend in BACKEND_COLOURS:
        return BACKEND_COLOURS[backend]
    others = [b for b in order if b not in BACKEND_COLOURS]
    i = others.index(backend) if backend in others else abs(hash(backend))
    return _OTHER_COLOURS[i % len(_OTHER_COLOURS)]


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, without metadata (reproducible; no URL inside)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def declutter(fig: Any, texts: Sequence[Any], pad_px: float = 3.0, rounds: int = 60) -> None:
    """Move annotations (text offset in points from their anchor) up until no two overlap.

    The figure is laid out once (constrained layout) and then frozen, so the axes do not move
    again when the labels do; each round, for every overlapping pair the upper label is pushed
    above the lower one. Labels of points with nearly the same coordinates (forms of a model,
    bars of one board) were drawn over each other."""
    texts = [t for t in texts if t.get_visible()]
    if len(texts) < 2:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    if hasattr(fig, "draw_without_rendering"):
        fig.draw_without_rendering()
    else:  # matplotlib < 3.6
        fig.canvas.draw()
    if hasattr(fig, "set_layout_engine"):
        fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    to_points = 72.0 / fig.dpi
    for _ in range(rounds):
        boxes = [t.get_window_extent(renderer) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (boxes[i].y0, boxes[i].x0))
        moved = False
        for k, i in enumerate(order):
            for j in order[k + 1:]:
                a, b = boxes[i], boxes[j]
                if a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1:  # strict: touching is fine
                    x, y = texts[j].xyann
                    texts[j].xyann = (x, y + (a.y1 - b.y0 + pad_px) * to_points)
                    boxes[j] = texts[j].get_window_extent(renderer)
                    moved = True
        if not moved:
            return


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def _samples(r: Dict[str, Any]) -> List[float]:
    lat = r.get("latency") or {}
    xs = lat.get("samples_ms") or lat.get("trial_means_ms") or []
    return [float(x) for x in xs if x is not None and math.isfinite(float(x)) and float(x) > 0]


def latency_figure(records: Sequence[Dict[str, Any]]) -> Optional[Any]:
    """Horizontal box plots of per-inference latency, one row per run (newest first, at most
    ``MAX_LATENCY_RUNS``): box = quartiles, whiskers = 1st and 99th percentiles, diamond = mean.
    Log axis when the slowest sample is more than 30x the fastest."""
    names = run_names(records)
    rows = [(n, r, _samples(r)) for n, r in zip(names, records)]
    rows = [row for row in rows if row[2]][:MAX_LATENCY_RUNS]
    if not rows:
        return None
    rows.reverse()  # boxplot draws bottom-up: keep the first record at the top
    fig = _figure(9.0, 1.2 + 0.38 * len(rows))
    ax = fig.add_subplot()
    order = [r.get("backend") or "?" for _, r, _ in rows]
    import matplotlib

    # "orientation" replaced "vert" in matplotlib 3.10 ("vert" is deprecated from 3.11)
    horizontal = {"orientation": "horizontal"} if _version(matplotlib.__version__) >= (3, 10) else {"vert": False}
    bp = ax.boxplot([s for _, _, s in rows], whis=(1, 99), showfliers=True, patch_artist=True,
                    showmeans=True, widths=0.6,
                    meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4},
                    flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
                    medianprops={"color": "black"}, **horizontal)
    for patch, (_, r, _) in zip(bp["boxes"], rows):
        patch.set_facecolor(backend_colour(r.get("backend") or "?", order))
        patch.set_alpha(0.75)
    ax.set_yticks(range(1, len(rows) + 1))
    ax.set_yticklabels([_t(n) for n, _, _ in rows], fontsize=8)
    lo = min(min(s) for _, _, s in rows)
    hi = max(max(s) for _, _, s in rows)
    if hi / lo > 30:
        ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms)")
    ax.set_title("Latency distribution per run (whiskers: p1-p99, diamond: mean)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _energy(r: Dict[str, Any]) -> Optional[Tuple[float, Optional[float], str]]:
    """(total, dynamic, label) of a run's measured energy per inference; None without one. An
    operation-count estimate is not drawn (``report.op_count_estimate``): it is an accelerator's
    figure and would sit beside a CPU's measured joules as if comparable. A CPU model's estimate
    (the board's measured idle/load power x time) is drawn, hatched as an estimate."""
    p = r.get("power")
    if not p or not (p.get("label") == "measured" or p.get("model") == "cpu"):  # measured, or a CPU model's estimate
        return None
    e = p.get("energy_per_inference_j") or {}
    if e.get("total") is None:
        return None
    return float(e["total"]), (None if e.get("dynamic") is None else float(e["dynamic"])), str(p.get("label") or "estimate")




# Energy scales for the axis: the largest value decides the unit of a panel (a bar of
# 1.7e-06 mJ with a "1e-6" offset above the axis is unreadable; 1.72 nJ is not).
_ENERGY_UNITS = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def energy_unit(joules: float) -> Tuple[float, str]:
    """(scale, unit) for showing energies up to ``joules``: value / scale is in [1, 1000)."""
    for scale, unit in _ENERGY_UNITS:
        if joules >= scale:
            return scale, unit
    return _ENERGY_UNITS[-1]


def _grid(n: int, row_height: float, title_space: float = 0.5) -> Tuple[Any, List[Any]]:
    """A figure of ``n`` panels: one column up to two panels, two columns beyond (a slide is
    wider than tall); the unused last cell is hidden."""
    cols = 1 if n <= 2 else 2
    rows = (n + cols - 1) // cols
    fig = _figure(9.0 if cols == 1 else 12.0, title_space + row_height * rows)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _plain_log(ax: Any) -> None:
    """Log y axis with plain tick labels ("0.02", "4"), not "4 x 10^0"."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "%g" % v))
    ax.yaxis.set_minor_formatter(NullFormatter())


def energy_figure(records: Sequence[Dict[str, Any]]) -> Optional[Any]:
    """Energy per inference, grouped bars: one panel per model (``model_family``: a bundle and the
    graphs exported from it share a panel), in it one group per board and one bar per backend (the
    newest run of each model/board/backend), the value written on each bar, in the unit that
    suits the panel (J, mJ, µJ, nJ or pJ). Solid bars are measured, pale hatched bars are CPU-model
    estimates (the board's measured idle/load power x time; operation-count estimates are not
    drawn, see ``_energy``); a black tick marks the dynamic part
    (above idle) where an idle level was measured. A panel whose values span more than 100x gets
    a log axis."""
    runs = [r for r in records if _energy(r) is not None]
    if not runs:
        return None
    runs = newest_per(runs, lambda r: (model_family(r), r.get("board"), r.get("backend")))
    models = []  # type: List[Any]
    for r in runs:
        if model_family(r) not in models:
            models.append(model_family(r))
    backends = sorted({r.get("backend") or "?" for r in runs})
    fig, axes = _grid(len(models), 2.8, 0.9)
    width = 0.8 / max(1, len(backends))
    labels = []  # type: List[Any]
    for ax, model in zip(axes, models):
        mine = [r for r in runs if model_family(r) == model]
        boards = []  # type: List[str]
        for r in mine:
            if (r.get("board") or "?") not in boards:
                boards.append(r.get("board") or "?")
        scale, unit = energy_unit(max(_energy(r)[0] for r in mine))
        values = []  # type: List[float]
        for r in mine:
            total, dynamic, label = _energy(r)
            values += [v / scale for v in (total, dynamic) if v is not None and v > 0]
            gx = boards.index(r.get("board") or "?")
            bi = backends.index(r.get("backend") or "?")
            x = gx - 0.4 + width * (bi + 0.5)
            colour = backend_colour(r.get("backend") or "?", backends)
            measured = label == "measured"
            ax.bar(x, total / scale, width * 0.9, color=colour, alpha=1.0 if measured else 0.45,
                   hatch=None if measured else "//", edgecolor="black" if measured else colour, linewidth=0.6)
            if dynamic is not None and (r.get("power") or {}).get("idle_w") is not None:
                ax.plot([x - width * 0.4, x + width * 0.4], [dynamic / scale] * 2, color="black", linewidth=2)
            labels.append(ax.annotate("%.3g%s" % (total / scale, "" if measured else " est."), (x, total / scale), ha="center",
                                      va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points"))
        ax.set_xticks(range(len(boards)))
        ax.set_xticklabels([_t(b) for b in boards], fontsize=8)
        ax.set_xlim(-0.6, len(boards) - 0.4)
        ax.set_ylabel("%s per inference" % unit)
        if values and max(values) / min(values) > 100:
            _plain_log(ax)
        ax.margins(y=0.15)
        ax.set_title(_t(model[0]), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=backend_colour(b, backends), edgecolor="black", label=_t(b)) for b in backends]
    handles += [Patch(facecolor="white", edgecolor="grey", hatch="//", label="estimate (CPU model)"),
                Line2D([], [], color="black", linewidth=2, label="dynamic (above idle)")]
    import matplotlib

    if _version(matplotlib.__version__) >= (3, 7):  # legends "outside" the axes came with 3.7
        fig.legend(handles=handles, fontsize=8, loc="outside upper center", ncol=len(handles))
    else:
        axes[0].legend(handles=handles, fontsize=8, loc="best")
    declutter(fig, labels)
    return fig




def pareto_figure(records: Sequence[Dict[str, Any]]) -> Optional[Any]:
    """Task metric against effective synaptic operations per inference, one point per model
    (``pareto_points``; label: file name without its suffix, kept density, backends), one panel
    per task; the Pareto
    front (``pareto_front``) as a step line, the best metric reachable within a SynOps budget,
    its points filled red. Log x axis when SynOps span more than 20x."""
    groups = pareto_points(records)
    if not groups:
        return None
    fig, axes = _grid(len(groups), 4.2, 0.2)
    labels = []  # type: List[Any]
    for ax, ((task, metric, hib), pts) in zip(axes, sorted(groups.items())):
        xy = [(p.synops, p.value) for p in pts]
        front = pareto_front(xy, hib)
        rest = [i for i in range(len(pts)) if i not in front]
        ax.scatter([xy[i][0] for i in rest], [xy[i][1] for i in rest], s=36, color="#8da0b6", edgecolor="black",
                   linewidth=0.5, zorder=3, label="dominated")
        ax.scatter([xy[i][0] for i in front], [xy[i][1] for i in front], s=44, color="crimson", edgecolor="black",
                   linewidth=0.5, zorder=4, label="on the front")
        for p in pts:
            labels.append(ax.annotate(_t("%s %s" % (p.label, "/".join(p.backends))), (p.synops, p.value), fontsize=7,
                                      xytext=(5, 3), textcoords="offset points"))
        # Extend the last step to the right edge: beyond the costliest front point, the best
        # reachable metric stays that point's.
        fx = [xy[i][0] for i in front]
        fy = [xy[i][1] for i in front]
        xmax = max(x for x, _ in xy)
        ax.step(fx + [xmax * 1.08 if xmax > 0 else 1.0], fy + fy[-1:], where="post", color="crimson",
                linewidth=1.5, label="Pareto front", zorder=2)
        from matplotlib.ticker import EngFormatter, NullFormatter

        positive = [x for x, _ in xy if x > 0]
        if len(positive) == len(xy) and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(EngFormatter())  # "300 k", "2 M"
        ax.margins(x=0.12, y=0.1)
        ax.set_xlabel("synaptic operations per inference (effective)")
        ax.set_ylabel("%s (%s is better)" % (_t(metric), "higher" if hib else "lower"))
        ax.set_title(_t("%s: %s vs SynOps" % (task, metric)), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    declutter(fig, labels)
    return fig


def _trace(r: Dict[str, Any]) -> Optional[Tuple[List[float], List[float]]]:
    tr = (r.get("power") or {}).get("trace") or {}
    t, w = tr.get("t_s") or [], tr.get("w") or []
    n = min(len(t), len(w))
    if n < 2:
        return None
    return [float(x) for x in t[:n]], [float(x) for x in w[:n]]


def power_figure(records: Sequence[Dict[str, Any]]) -> Optional[Any]:
    """Power traces (W against s), one panel per run that has a trace (newest first, at most
    ``MAX_POWER_RUNS``), with the idle level as a dashed line and the mean active power dotted."""
    names = run_names(records)
    rows = [(n, r, _trace(r)) for n, r in zip(names, records)]
    rows = [row for row in rows if row[2] is not None][:MAX_POWER_RUNS]
    if not rows:
        return None
    fig, axes = _grid(len(rows), 2.4, 0.3)
    for ax, (name, r, (t, w)) in zip(axes, rows):
        p = r["power"]
        ax.plot(t, w, color=backend_colour(r.get("backend") or "?"), linewidth=0.9)
        if p.get("idle_w") is not None:
            ax.axhline(float(p["idle_w"]), color="grey", linestyle="--", linewidth=1, label="idle %.3g W" % p["idle_w"])
        if p.get("active_w") is not None:
            ax.axhline(float(p["active_w"]), color="black", linestyle=":", linewidth=1, label="active mean %.3g W" % p["active_w"])
        ax.set_title(_t("%s (%s, %s)" % (name, p.get("label") or "?", p.get("meter") or "?")), fontsize=9)
        ax.set_ylabel("W")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlabel("time (s)", fontsize=8)
    return fig


PLOTS = (
    ("latency", "Latency distributions", latency_figure),
    ("energy", "Energy per inference by board and backend", energy_figure),
    ("pareto", "Task metric vs synaptic operations (Pareto front)", pareto_figure),
    ("power", "Power traces", power_figure),
)
