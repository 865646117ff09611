"""Runtime cost of one time step: event-driven int8 vs dense numpy, in one process.

Network: 1,000 LIF neurons, 90% of recurrent weights zero, 100 rate-coded input channels (90%
zero input weights), batch 1. Activity is imposed (a random 5% of inputs and neurons spike each
step) so that the comparison is at exactly the stated activity; the event path is the runtime's
own code (``accumulate_events`` + ``lif_step_int``). Baselines: the same step with dense numpy
float32 (BLAS) and dense int8 -> int32 products. Prints medians over repeats after a warm-up.

    python benchmarks/runtime_step.py [--neurons 1000] [--sparsity 0.9] [--activity 0.05]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from spikeedge.runtime.bundle import SparseMatrix
from spikeedge.runtime.engine import accumulate_events
from spikeedge.runtime.fixedpoint import decay_to_q16
from spikeedge.runtime.neuron import LifIntParams, lif_state_zeros, lif_step_int


def build(n, n_in, sparsity, rng):
    def sparse_int8(rows, cols):
        w = rng.integers(-127, 128, size=(rows, cols)).astype(np.int8)
        w[rng.random((rows, cols)) < sparsity] = 0
        return w

    w_in, w_rec = sparse_int8(n, n_in), sparse_int8(n, n)
    params = LifIntParams(decay_to_q16(np.full(n, 0.6)), decay_to_q16(np.full(n, 0.8)), np.full(n, 1 << 10, np.int64),
                          np.full(n, 1 << 10, np.int64), np.zeros(n, np.int32), False)
    return w_in, w_rec, params


def time_it(fn, steps, repeats):
    fn(0)  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in range(steps):
            fn(t)
        runs.append((time.perf_counter() - t0) / steps)
    return 1e3 * float(np.median(runs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=1000)
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--activity", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, n_in = args.neurons, args.inputs
    w_in, w_rec, params = build(n, n_in, args.sparsity, rng)
    sp_in, sp_rec = SparseMatrix.from_dense(w_in), SparseMatrix.from_dense(w_rec)
    in_events = (rng.random((args.steps, 1, n_in)) < args.activity).astype(np.int32)
    rec_events = (rng.random((args.steps, 1, n)) < args.activity).astype(np.int32)
    acc_in, acc_rec = np.zeros((1, n), np.int32), np.zeros((1, n), np.int32)
    state = [lif_state_zeros(1, n)]
    synops = []

    def event_step(t):
        acc_in[...] = 0
        acc_rec[...] = 0
        ops = accumulate_events(sp_in, in_events[t], acc_in) + accumulate_events(sp_rec, rec_events[t], acc_rec)
        synops.append(ops)
        _, state[0] = lif_step_int(acc_in, acc_rec, state[0], params)

    wf_in, wf_rec = w_in.astype(np.float32), w_rec.astype(np.float32)
    fin, frec = in_events.astype(np.float32), rec_events.astype(np.float32)
    alpha, beta = np.float32(0.6), np.float32(0.8)
    fstate = [np.zeros((1, n), np.float32), np.zeros((1, n), np.float32)]

    def dense_float_step(t):
        syn = alpha * fstate[0] + fin[t] @ wf_in.T + frec[t] @ wf_rec.T
        v = beta * fstate[1] + syn
        s = v >= 1000.0
        fstate[0], fstate[1] = syn, v - 1000.0 * s

    wi_in, wi_rec = w_in.astype(np.int32), w_rec.astype(np.int32)

    def dense_int_step(t):
        a_in = in_events[t] @ wi_in.T
        a_rec = rec_events[t] @ wi_rec.T
        _, state[0] = lif_step_int(a_in, a_rec, state[0], params)

    event_ms = time_it(event_step, args.steps, args.repeats)
    dense_f_ms = time_it(dense_float_step, args.steps, args.repeats)
    dense_i_ms = time_it(dense_int_step, args.steps, args.repeats)
    dense_ops = n * (n + n_in)
    result = {
        "neurons": n, "inputs": n_in, "weight_sparsity": args.sparsity, "activity": args.activity,
        "event_int8_ms_per_step": round(event_ms, 4),
        "dense_float32_ms_per_step": round(dense_f_ms, 4),
        "dense_int32_ms_per_step": round(dense_i_ms, 4),
        "speedup_vs_dense_float32": round(dense_f_ms / event_ms, 2),
        "speedup_vs_dense_int32": round(dense_i_ms / event_ms, 2),
        "synops_per_step_event": float(np.mean(synops)),
        "synops_per_step_dense": dense_ops,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print("%-28s %s" % (k, v))


if __name__ == "__main__":
    main()
