"""LNP's cost on a large network: one run with the default ``LnpConfig`` (targets 0.5/0.2) on an
HRSNN of ``--neurons`` in the given regime, one torch/BLAS thread. Reports wall time and the
process's CPU time (on a shared machine the wall time includes waiting for other processes; the
CPU time is what one core spends) and the load average; writes ``docs/results/lnp_timing.json``.

    OMP_NUM_THREADS=1 python benchmarks/lnp_timing.py [--neurons 2000] [--regime edge]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from spikeedge.offline.hrsnn import HRSNN
from spikeedge.offline.lnp import LnpConfig, lnp_prune
from spikeedge.offline.lnp.regime import REGIMES, regime_config
from spikeedge.runtime.bundle import write_atomic

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=2000)
    ap.add_argument("--regime", default="edge", choices=sorted(REGIMES))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "lnp_timing.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = HRSNN(regime_config(args.regime, n_neurons=args.neurons, seed=0))
    load0 = os.getloadavg()
    w0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lnp_prune(model, LnpConfig(target_neurons=0.5, target_synapses=0.2, seed=0))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    s = res.summary()
    doc = {"neurons": args.neurons, "regime": args.regime, "wall_seconds": wall, "cpu_seconds": cpu,
           "load_average_before": load0, "load_average_after": os.getloadavg(), "cpu_count": os.cpu_count(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "iterations": s["iterations"], "stopped": s["stopped"],
           "neurons_after": s["neurons"], "synapses_before": s["start"]["synapses"], "synapses_after": s["synapses"],
           "phase_seconds": s["phase_seconds"], "lyapunov_max": s["lyapunov_max"], "spectral_radius": s["spectral_radius"]}
    write_atomic(args.out, json.dumps(doc, indent=1).encode())
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
