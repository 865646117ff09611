"""Graph steps of LNP: betweenness neuron pruning with Kron reduction, eigenvector
delocalisation, and the spectral measures recorded each iteration.

Neuron pruning removes the neurons of lowest weighted betweenness centrality (``networkx``; edge
length ``1/|W_ij|`` so strong synapses are short paths; betweenness sampled from
``samples`` sources when the network is larger, Brandes' estimator). Their two-step paths are
rerouted by *Kron reduction* of the linearised rate model: eliminating the set ``R`` at steady
state, ``x_R = (I - G_R W_RR)^{-1} (G_R W_RK x_K + u_R)``, gives the kept neurons

    W'_KK = W_KK + W_KR (I - G_R W_RR)^{-1} G_R W_RK,

so the kept network's linear response is unchanged. Fill-in entries whose sign contradicts the
source neuron's excitatory/inhibitory type are dropped (Dale's law is kept).

Delocalisation adds back a few of the synapses noise pruning just removed: those that most raise
the *local degree heterogeneity* ``H = mean_v CV^2(deg(u) : u in N[v])`` (``N[v]``: v and its
neighbours in the undirected graph, ``deg``: in + out degree), the property that keeps the
leading eigenvectors from localising on a few neurons. Localisation is measured by the inverse
participation ratio ``IPR(x) = sum x_i^4 / (sum x_i^2)^2`` (1/n when spread evenly, 1 on one
neuron) of the leading eigenvectors of ``W``.
"""

from __future__ import annotations

from typing import Dict, Tuple

import networkx as nx
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import ArpackNoConvergence, eigs


def betweenness(w: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Weighted betweenness centrality of each neuron (edge length ``1/|w|``)."""
    n = len(w)
    targets, sources = np.nonzero(w)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(sources.tolist(), targets.tolist(), (1.0 / np.abs(w[targets, sources])).tolist()), weight="length")
    k = None if n <= samples else samples
    bc = nx.betweenness_centrality(g, k=k, weight="length", seed=seed)
    return np.array([bc[i] for i in range(n)])


def kron_reduce(w: np.ndarray, gains: np.ndarray, keep: np.ndarray, source_sign: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """``W'`` over the neurons ``keep`` (bool mask) with the removed ones eliminated (see module).

    New synapses (fill-in where there was none) weaker than ``floor`` x the median |weight| are
    not created: they would count as synapses yet carry nothing (and vanish in int8)."""
    r = ~keep
    if not r.any():
        return w.copy()
    w_kk, w_kr, w_rk, w_rr = w[np.ix_(keep, keep)], w[np.ix_(keep, r)], w[np.ix_(r, keep)], w[np.ix_(r, r)]
    g_r = gains[r]
    inner = np.eye(int(r.sum())) - g_r[:, None] * w_rr
    fill = w_kr @ np.linalg.solve(inner, g_r[:, None] * w_rk)
    out = w_kk + fill
    nz = np.abs(w[w != 0])
    if nz.size:
        out[(w_kk == 0) & (np.abs(fill) < floor * float(np.median(nz)))] = 0.0
    sign = source_sign[keep][None, :]
    out[(out * sign) < 0] = 0.0  # Dale: a source's synapses keep its sign
    np.fill_diagonal(out, 0.0)
    return out


def _undirected(w: np.ndarray) -> Tuple[sparse.csr_matrix, np.ndarray]:
    """Undirected adjacency (bool CSR, no self loops) and in+out degrees."""
    nz = w != 0
    adj = sparse.csr_matrix(nz | nz.T)
    adj.setdiag(False)
    adj.eliminate_zeros()
    deg = nz.sum(axis=0) + nz.sum(axis=1)
    return adj, deg.astype(np.float64)


def local_heterogeneity(w: np.ndarray) -> float:
    """``H``: mean over neurons of the squared coefficient of variation of degrees in N[v]."""
    adj, deg = _undirected(w)
    closed = adj + sparse.identity(len(w), format="csr")
    cnt = np.asarray(closed.sum(axis=1)).ravel()
    m1 = closed @ deg / cnt
    m2 = closed @ (deg * deg) / cnt
    cv2 = np.where(m1 > 0, m2 / np.maximum(m1, 1e-300) ** 2 - 1.0, 0.0)
    return float(cv2.mean())


def heterogeneity_gains(w: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Exact change of ``H`` from adding each candidate synapse ``(target, source)`` alone."""
    n = len(w)
    adj, deg = _undirected(w)
    closed = (adj + sparse.identity(n, format="csr")).tocsr()
    cnt = np.asarray(closed.sum(axis=1)).ravel()
    s1 = closed @ deg
    s2 = closed @ (deg * deg)

    def cv2(a, b, c):
        m1 = a / c
        return np.where(m1 > 0, (b / c) / np.maximum(m1, 1e-300) ** 2 - 1.0, 0.0)

    base = cv2(s1, s2, cnt)
    gains = np.empty(len(candidates))
    indptr, indices = closed.indptr, closed.indices
    for idx, (a, b) in enumerate(candidates):
        na, nb = indices[indptr[a] : indptr[a + 1]], indices[indptr[b] : indptr[b + 1]]
        new_link = b not in set(na.tolist())
        nodes = np.union1d(na, nb)
        t1, t2, c = s1[nodes].copy(), s2[nodes].copy(), cnt[nodes].copy()
        for x in (a, b):  # degree of x rises by one in every neighbourhood containing it
            inside = np.isin(nodes, indices[indptr[x] : indptr[x + 1]])
            t1[inside] += 1.0
            t2[inside] += 2.0 * deg[x] + 1.0
        if new_link:  # a joins N[b] and b joins N[a], with their new degrees
            for x, y in ((a, b), (b, a)):
                pos = np.searchsorted(nodes, x)
                t1[pos] += deg[y] + 1.0
                t2[pos] += (deg[y] + 1.0) ** 2
                c[pos] += 1.0
        gains[idx] = (cv2(t1, t2, c) - base[nodes]).sum() / n
    return gains


def delocalise(w: np.ndarray, removed: np.ndarray, removed_weights: np.ndarray, n_add: int, rng: np.random.Generator, max_candidates: int = 2000) -> Tuple[np.ndarray, int]:
    """Add back the ``n_add`` removed synapses (``removed``: (m, 2) target, source) with the
    largest heterogeneity gain (ranked once; candidates sampled when there are many)."""
    if n_add <= 0 or len(removed) == 0:
        return w, 0
    pick = rng.choice(len(removed), size=min(max_candidates, len(removed)), replace=False)
    gains = heterogeneity_gains(w, removed[pick])
    best = pick[np.argsort(-gains, kind="stable")[:n_add]]
    out = w.copy()
    out[removed[best, 0], removed[best, 1]] = removed_weights[best]
    return out, len(best)


def regrow(w: np.ndarray, n_add: int, source_sign: np.ndarray, weight_std: float, rng: np.random.Generator, max_candidates: int = 2000, ranked: bool = True) -> Tuple[np.ndarray, int]:
    """Grow ``n_add`` new synapses where there are none, at the pairs that most raise local
    heterogeneity (sampled candidates); weights drawn as at initialisation
    (``|N(0, weight_std^2)|`` with the source's sign). Used when neuron pruning alone left fewer
    synapses than the iteration's target. ``ranked=False`` (the delocalisation ablation) grows
    at random pairs."""
    n = len(w)
    if n_add <= 0 or n < 2:
        return w, 0
    absent = np.argwhere((w == 0) & ~np.eye(n, dtype=bool))
    if len(absent) == 0:
        return w, 0
    pick = absent[rng.choice(len(absent), size=min(max_candidates, len(absent)), replace=False)]
    chosen = pick[np.argsort(-heterogeneity_gains(w, pick), kind="stable")[:n_add]] if ranked else pick[:n_add]
    out = w.copy()
    out[chosen[:, 0], chosen[:, 1]] = source_sign[chosen[:, 1]] * np.abs(rng.normal(0.0, weight_std, size=len(chosen)))
    return out, len(chosen)


def leading_spectrum(w: np.ndarray, k: int = 6) -> Dict[str, float]:
    """Spectral radius of ``W`` and mean IPR of its ``k`` leading eigenvectors (by modulus)."""
    n = len(w)
    if n == 0 or not np.any(w):
        return {"spectral_radius": 0.0, "ipr": 1.0 / max(n, 1)}
    k = min(k, n - 2)
    vals = vecs = None
    if n > 50 and k >= 1:
        try:
            v0 = np.random.default_rng(0).standard_normal(n)  # a fixed start: ARPACK's own is random, and so the digits
            vals, vecs = eigs(sparse.csr_matrix(w), k=k, which="LM", tol=1e-8, maxiter=20000, v0=v0)
        except (ArpackNoConvergence, ValueError, RuntimeError):
            vals = None
    if vals is None:
        all_vals, all_vecs = np.linalg.eig(w)
        order = np.argsort(-np.abs(all_vals))[: max(k, 1)]
        vals, vecs = all_vals[order], all_vecs[:, order]
    p2 = np.abs(vecs) ** 2
    ipr = (p2 ** 2).sum(axis=0) / p2.sum(axis=0) ** 2
    return {"spectral_radius": float(np.abs(vals).max()), "ipr": float(ipr.mean())}
