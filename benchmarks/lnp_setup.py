"""What the LNP evaluation compares, shared by ``lnp_eval.py`` (which runs it) and ``lnp_report.py``
(which tabulates it): the tasks and their metrics, the rows (how each network is obtained), the
quick-mode settings, and the cache key's code part."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = ("mackey-glass", "lorenz", "rossler", "digits")
METRIC = {"mackey-glass": ("smape", "sMAPE", "lower"), "lorenz": ("nrmse", "NRMSE", "lower"),
          "rossler": ("nrmse", "NRMSE", "lower"), "digits": ("accuracy", "accuracy", "higher")}
# Rows: (key, label, how the network is obtained, LnpConfig switches for LNP rows).
ROWS = [
    ("dense", "dense HRSNN", "dense", None),
    ("lnp", "LNP", "lnp", {}),
    ("activity", "activity-based pruning (AP)", "activity", None),
    ("random", "random pruning", "random", None),
    ("magnitude", "magnitude pruning", "magnitude", None),
    ("lnp-homogeneous", "LNP, homogeneous time constants", "lnp-homogeneous", {}),
    ("lnp-no-noise", "LNP without noise pruning", "lnp", {"noise_pruning": False}),
    ("lnp-no-betweenness", "LNP without betweenness neuron pruning", "lnp", {"neuron_pruning_by_betweenness": False}),
    ("lnp-no-delocalisation", "LNP without delocalisation", "lnp", {"delocalisation": False}),
    ("lnp-no-timescales", "LNP without timescale optimisation", "lnp", {"timescale_optimisation": False}),
    ("lnp-no-modulation", "LNP without Lyapunov modulation", "lnp", {"lyapunov_modulation": False}),
]
QUICK_ROWS = ("dense", "lnp", "activity", "random", "magnitude", "lnp-homogeneous", "lnp-no-noise")
# Quick mode: a shorter LNP loop, so that the smoke test exercises every path in minutes.
QUICK_LNP = {"max_iterations": 8, "prune_iterations": 3, "bo_evaluations": 3, "noise_steps": 200, "transient_steps": 50}


def say(msg: str) -> None:
    print("[lnp_eval %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# Bump when lnp_eval's measurements change (what is computed, not how the report looks): it
# is part of the cache key, with a hash of the library sources, so stale results are not reused.
EVAL_VERSION = 2


def code_fingerprint() -> str:
    """Hash of every library source the results depend on: a change invalidates the cache."""
    h = hashlib.sha256(b"lnp_eval %d" % EVAL_VERSION)
    for sub in ("offline", "tasks", "runtime"):
        for p in sorted((REPO / sub).rglob("*.py")):
            h.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
