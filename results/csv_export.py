"""Runs as a flat CSV table, one row per run: for spreadsheets and plotting elsewhere.

Columns are fixed (``COLUMNS``; documented in ``docs/results-store.md``) so that scripts can
rely on them; a value the run does not have is an empty cell. Lists (samples, traces) are left
out: the store keeps them, ``spikeedge results`` and the report read them there.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple, Union

from ..errors import DataError

COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("run_id", "run_id"), ("created", "created"), ("label", "label"), ("board", "board"), ("backend", "backend"),
    ("threads", "threads"), ("model_name", "model.name"), ("model_sha256", "model.sha256"), ("model_format", "model.format"),
    ("task", "task.name"), ("metric", "task.metric"), ("value", "task.value"), ("higher_is_better", "task.higher_is_better"),
    ("trials", "protocol.trials"), ("latency_mean_ms", "latency.mean_ms"), ("latency_sem_ms", "latency.sem_ms"),
    ("latency_p50_ms", "latency.p50_ms"), ("latency_p99_ms", "latency.p99_ms"),
    ("throughput_per_s", "latency.throughput_per_s"), ("preprocess_ms", "latency.preprocess_ms"),
    ("power_label", "power.label"), ("power_meter", "power.meter"), ("power_idle_w", "power.idle_w"),
    ("power_active_w", "power.active_w"), ("power_dynamic_w", "power.dynamic_w"),
    ("energy_total_j", "power.energy_per_inference_j.total"), ("energy_dynamic_j", "power.energy_per_inference_j.dynamic"),
    ("synops_dense", "workload.synops_per_inference.dense"), ("synops_effective", "workload.synops_per_inference.effective"),
    ("activation_sparsity", "workload.activation_sparsity"), ("connection_sparsity", "model.connection_sparsity"),
    ("footprint_bytes", "model.footprint_bytes"), ("file_bytes", "model.file_bytes"),
    ("repeatability_ok", "repeatability.ok"), ("repeatability_max_deviation", "repeatability.max_deviation"),
    # appended (issue 19): the metric's spread, NeuroBench's MAC/AC split, which estimate
    ("value_std", "task.std"), ("Effective_MACs", "workload.SynapticOperations.Effective_MACs"),
    ("Effective_ACs", "workload.SynapticOperations.Effective_ACs"), ("power_model", "power.model"),
)


def _cell(record: Dict[str, Any], path: str) -> Any:
    node: Any = record
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return node


def rows(records: Iterable[Dict[str, Any]]) -> List[List[Any]]:
    """The header and one row per record."""
    return [[name for name, _ in COLUMNS]] + [[_cell(r, path) for _, path in COLUMNS] for r in records]


def to_text(records: Iterable[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows(records))
    return buf.getvalue()


def write_csv(records: Iterable[Dict[str, Any]], path: Union[str, Path]) -> int:
    """Write the table to ``path`` through a temporary file renamed into place (an interrupted
    export leaves the old file, never half a table); returns the number of runs written."""
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError("%s: its folder does not exist" % path)
    table = rows(records)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % path.name, suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows(table)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's file is private; an export is for sharing
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(table) - 1
