"""What LNP did, for people: the per-iteration record as JSON and a plot of it.

``write_report(result, directory)`` writes two files, each atomically (readers see the old file
or the whole new one), and creates ``directory`` if needed:

- ``lnp_record.json``: ``{"summary": LnpResult.summary(), "record": [row 0 = the starting
  network, then one row per iteration]}``. Strict JSON: non-finite numbers become ``null``.
- ``lnp.png``: four panels against the iteration: neurons and synapses, the largest Lyapunov
  exponent, the spectral radius of the recurrent weights and their inverse participation ratio.

The plot is drawn on matplotlib's Agg canvas directly, without pyplot, so the global backend of
a program that imports this module is left alone.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from ...runtime.bundle import write_atomic
from .loop import LnpResult

RECORD_FILE = "lnp_record.json"
PLOT_FILE = "lnp.png"


def clean(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays unwrapped, tuples as lists, paths
    as strings, NaN and infinities as ``None`` (strict JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def record_document(result: LnpResult) -> Dict[str, Any]:
    """The JSON document of ``lnp_record.json``."""
    return clean({"summary": result.summary(), "record": result.record})


def _column(record: Sequence[Dict[str, Any]], key: str) -> np.ndarray:
    """One quantity over the iterations; missing or non-numeric values are NaN (gaps in a line)."""
    out = []
    for row in record:
        value = row.get(key)
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def plot_png(record: List[Dict[str, Any]], title: str = "Lyapunov Noise Pruning") -> bytes:
    """The four-panel plot of ``record`` as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    it = _column(record, "iteration")
    if np.isnan(it).all():
        it = np.arange(len(record), dtype=np.float64)
    fig = Figure(figsize=(10, 7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    marker = dict(marker="o", markersize=3, linewidth=1.5)

    ax = axes[0, 0]
    line_n = ax.plot(it, _column(record, "neurons"), color="tab:blue", label="neurons", marker="o", markersize=4, linewidth=3)
    ax.set_ylabel("neurons")
    twin = ax.twinx()
    # equal kept fractions put the two lines on top of each other: dashed synapses keep both visible
    line_s = twin.plot(it, _column(record, "synapses"), color="tab:orange", label="synapses", linestyle="--", marker="x", markersize=5, linewidth=1.5)
    twin.set_ylabel("recurrent synapses")
    ax.legend(handles=line_n + line_s, loc="upper right", fontsize="small")
    ax.set_title("network size")

    panels = [
        (axes[0, 1], "lyapunov_max", "largest Lyapunov exponent", "tab:red", 0.0),
        (axes[1, 0], "spectral_radius", "spectral radius", "tab:green", 1.0),
        (axes[1, 1], "ipr", "inverse participation ratio", "tab:purple", None),
    ]
    for ax, key, label, color, reference in panels:
        ax.plot(it, _column(record, key), color=color, **marker)
        if reference is not None:
            ax.axhline(reference, color="0.5", linestyle="--", linewidth=1)
        ax.set_ylabel(label)
        ax.set_title(label)
    for ax in axes[1]:
        ax.set_xlabel("iteration")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_report(result: LnpResult, directory: Union[str, Path]) -> Dict[str, Path]:
    """Write ``lnp_record.json`` and ``lnp.png`` into ``directory``; returns their paths
    (keys ``record`` and ``plot``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"record": directory / RECORD_FILE, "plot": directory / PLOT_FILE}
    summary = result.summary()
    title = "Lyapunov Noise Pruning: %s -> %s neurons, %s -> %s synapses (%s)" % (
        result.start.get("neurons"), summary["neurons"], result.start.get("synapses"), summary["synapses"], result.stopped,
    )
    png = plot_png(result.record, title)  # drawn before anything is written
    text = json.dumps(record_document(result), indent=1, allow_nan=False) + "\n"
    write_atomic(paths["record"], text.encode("utf-8"))
    write_atomic(paths["plot"], png)
    return paths
