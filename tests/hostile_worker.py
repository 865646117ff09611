"""Runs ``spikeedge info``, ``run`` and ``profile`` in this one process on many bundle files,
under an address-space limit (``RLIMIT_AS``), and prints every exit code and output as JSON.

Used by ``test_hostile_fuzz.py``: one process for hundreds of files instead of one per command.
Usage: ``python hostile_worker.py HEADROOM_BYTES JOBS.json``; JOBS.json is
``{"warmup": JOB, "jobs": [JOB, ...]}``, a JOB ``{"bundle": PATH, "input": PATH}``. The limit is this process's address space after importing
and warming up the CLI, plus ``HEADROOM_BYTES``; a ``MemoryError`` (or any other exception that
escapes the CLI) is reported as ``"exception"``.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import traceback
from typing import Any, Dict, List


def vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def call(main: Any, argv: List[str]) -> Dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}
    except BaseException as exc:  # noqa: B902 - everything that escapes the CLI is a finding
        return {"rc": None, "out": out.getvalue(), "err": err.getvalue(),
                "exception": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:]}


def commands(bundle: str, x: str) -> Dict[str, List[str]]:
    return {"info": ["info", bundle, "--json"], "info_text": ["info", bundle], "run": ["run", bundle, "--input", x, "--json"],
            "profile": ["profile", bundle, "--input", x, "--meter", "none", "--baseline", "0", "--json"]}


def main() -> None:
    headroom, jobs_path = int(sys.argv[1]), sys.argv[2]
    with open(jobs_path) as f:
        doc = json.load(f)
    jobs, warmup = doc["jobs"], doc["warmup"]
    from spikeedge.cli.app import main as cli

    for argv in commands(warmup["bundle"], warmup["input"]).values():  # imports and first-use allocations before the limit
        warm = call(cli, argv)
        if warm["rc"] != 0:
            raise SystemExit("warm-up failed: %r" % warm)
    base = vm_size()
    limit = base + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    results = []
    for job in jobs:
        results.append({name: call(cli, argv) for name, argv in commands(job["bundle"], job["input"]).items()})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sys.__stdout__.write(json.dumps({"baseline_bytes": base, "limit_bytes": limit, "peak_rss_bytes": peak, "results": results}))


if __name__ == "__main__":
    main()
