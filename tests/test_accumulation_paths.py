"""Every accumulation path of ``runtime/accumulate.py`` gives the same integers (issue 18, item 10):
the dense int8 rows summed in int16 (the event path), the float32 BLAS product (the hybrid's dense
path), the sparse gather with ``np.add.at`` (matrices above ``DENSE_ROWS_MAX_BYTES``), against an
int64 reference, on random matrices and on whole random bundles with each path forced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.accumulate import EventColumns
from spikeedge.runtime.bundle import Bundle, DirectEncoder, LifRecurrentLayer, RateEncoder, SparseMatrix, TraceReadout
from spikeedge.runtime.engine import Session

PATHS = ("event", "dense", "sparse")


def force(cols: EventColumns, path: str) -> bool:
    """Make ``cols`` take ``path`` for every step; False when that path does not exist for it."""
    if path == "event":
        cols.switch_k = cols.w.n_sources + 1
        cols.cost = {}
    elif path == "dense":
        if cols.rows_f32 is None:
            return False
        cols.switch_k = -1
    else:
        cols.dense = False
    return True


@st.composite
def matrices(draw: Any, max_side: int = 24) -> SparseMatrix:
    n_t, n_s = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (n_t, n_s)).astype(np.int8) * (rng.random((n_t, n_s)) < density)
    if draw(st.booleans()):
        w[w != 0] = draw(st.sampled_from([-128, 127]))  # extremes: the int16 chunking at its bound
    return SparseMatrix.from_dense(w.astype(np.int8))


@settings(max_examples=150, deadline=None)
@given(w=matrices(), batch=st.integers(1, 3), kind=st.sampled_from(["spikes", "signed"]), seed=st.integers(0, 2**31 - 1))
def test_every_path_gives_the_reference_integers(w, batch, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "spikes":
        events = rng.random((batch, w.n_sources)) < rng.random()
    else:  # a direct encoder's 16-bit values
        events = (rng.integers(-32767, 32768, (batch, w.n_sources)) * (rng.random((batch, w.n_sources)) < 0.5)).astype(np.int32)
    want = events.astype(np.int64) @ w.to_dense().astype(np.int64).T
    for path in PATHS:
        cols = EventColumns(w, 32767 if kind == "signed" else 1)
        if not force(cols, path):
            continue
        out = np.full((batch, w.n_targets), 7.0)  # overwritten, not added to
        cols.accumulate(events, out)
        assert np.array_equal(out, want), path


def random_bundle(seed: int, n_in: int, n: int, encoder: str) -> Bundle:
    rng = np.random.default_rng(seed)

    def sparse(rows: int, cols: int, density: float) -> SparseMatrix:
        return SparseMatrix.from_dense((rng.integers(-128, 128, (rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.int8))

    enc: Any = DirectEncoder(n_in, 0.01, 16) if encoder == "direct" else RateEncoder(n_in, 0.7, seed)
    layers = []
    n_ch = n_in
    for i in range(2):
        layers.append(LifRecurrentLayer(
            "l%d" % i, n, rng.choice(["subtract", "zero"]), sparse(n, n_ch, 0.6), sparse(n, n, 0.3),
            rng.integers(30000, 65537, n).astype(np.int32), rng.integers(30000, 65537, n).astype(np.int32),
            rng.integers(0, 1 << 14, n).astype(np.int64), rng.integers(0, 1 << 14, n).astype(np.int64),
            rng.integers(-2000, 2000, n).astype(np.int32), np.full(n, 0.01), np.full(n, 0.01)))
        n_ch = n
    readout = TraceReadout("ro", n, 2, 12, np.full(n, 50000, np.int32), rng.integers(-128, 128, (2, n)).astype(np.int8), np.full(2, 0.01), np.zeros(2))
    return fmt.loads(fmt.dumps(Bundle(enc, tuple(layers), readout)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(1, 12), n=st.integers(1, 30), batch=st.integers(1, 3),
       encoder=st.sampled_from(["direct", "rate"]))
def test_a_bundle_runs_the_same_on_every_path(seed, n_in, n, batch, encoder):
    bundle = random_bundle(seed, n_in, n, encoder)
    xs = np.random.default_rng(seed).uniform(-1, 1, (batch, 25, n_in))
    runs = {}
    for path in PATHS:
        session = Session(bundle, batch, record_spikes=True)
        if not all(force(cols, path) for pair in session.columns for cols in pair) and path == "dense":
            continue
        result = session.run(xs)
        runs[path] = (result.outputs, [np.stack(h) for h in session.spike_history], result.synops)
    first = runs["event"]
    for path, (outputs, spikes, synops) in runs.items():
        assert np.array_equal(outputs, first[0]), path
        assert all(np.array_equal(a, b) for a, b in zip(spikes, first[1])), path
        assert synops == first[2], path
