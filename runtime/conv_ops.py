"""Inference of a convolutional SNN bundle (``ConvBundle``), in numpy.

The integer model (``docs/quantization.md``, section "Convolutional SNNs"), per time step and
per layer; ``x`` is the directly encoded image (int, ``bits`` wide) for the first layer and
binary spikes after it::

    acc = conv2d(x, weight, stride, padding)   or   weight @ x         (int32, exact)
    v   = sat32( rs(decay * mem, 16) + rs(acc * m, shift) + bias )
    s   = v >= THRESHOLD;   mem = v * (1 - s)                          (hard reset)

Max pooling of spikes is an OR over each window, sum pooling an integer sum (``sum_pool``); flatten is channel-major; the readout sums
``weight @ x`` over the steps in int64 and reports ``float64(sum) * acc_scale / steps + bias``.

Two ways to compute a layer's accumulation, both exact and interchangeable (the tests hold them
to the offline integer reference bit for bit):

* ``event``: gather, product, scatter over the occupied sites (input positions with an event
  in any channel), the sparse-convolution dataflow: the sites' channel vectors times every
  kernel slice in one BLAS product, then each kernel offset's block added to the outputs its
  sites reach; a linear layer gathers the weight rows of its active inputs. Work is
  proportional to the occupied sites. (A scatter per spike, one ``bincount`` over (event,
  offset, channel) triples, was 2.2-4.3x slower on the spiking layers of a trained MNIST model;
  ``docs/quantization.md``.)
* ``dense``: im2col and one BLAS product over all positions, in float32 where every partial sum
  is an integer below 2**24 (spike inputs: ``128 * fan-in < 2**24``), else float64 (exact below
  2**53; the bundle's load check bounds every accumulation by 2**31).

``auto`` (the default) takes the event path when the layer's input activity is below
``EVENT_MAX_ACTIVITY`` (measured with ``benchmarks/conv_runtime.py``; ``docs/quantization.md``
has the numbers). Synaptic operations are counted the same way whatever the path: one per
(non-zero input, non-zero weight) pair that reaches an output, NeuroBench's Eff_ACs (Eff_MACs
for the real-valued image).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .bundle import ConvLifLayer
from .fixedpoint import DECAY_BITS, THRESHOLD, rshift_round, saturate32

METHODS = ("auto", "event", "dense")
# Input activity (fraction of non-zero inputs) below which ``auto`` scatters events instead of the
# dense product; measured per layer kind with benchmarks/conv_runtime.py (docs/quantization.md).
EVENT_MAX_ACTIVITY = {"conv_lif": 0.02, "conv_stream": 0.02, "linear_lif": 0.05, "linear_readout": 0.05}
FLOAT32_EXACT = 1 << 24
# The dense path of a stride-1 conv takes the shifted product instead of im2col when it has at
# most this many output channels per active input channel (benchmarks/conv_runtime.py: the
# shifted product is 1.0-3.2x faster at O/C <= 0.75 over 7x7-14x14 maps, 8-64 channels and 4-64
# maps per call, except 0.89-0.95x on the smallest; im2col wins from O/C = 1 at small batches).
SHIFT_MAX_OUT_PER_IN = 0.75


def lif_hard_step_int(acc: np.ndarray, mem: np.ndarray, m: np.ndarray, shift: int, bias: np.ndarray, decay: int) -> Tuple[np.ndarray, np.ndarray]:
    """One step of integer LIF neurons with hard reset; ``m`` and ``bias`` broadcast over
    ``acc`` (int64). Returns (spikes as bool, new membrane as int32)."""
    v = rshift_round(np.int64(decay) * mem.astype(np.int64), DECAY_BITS) + rshift_round(acc * m, shift) + bias
    v = saturate32(v)
    spikes = v >= THRESHOLD
    v[spikes] = 0
    return spikes, v.astype(np.int32)


def max_pool(x: np.ndarray, size: int) -> np.ndarray:
    """Max over non-overlapping ``size`` x ``size`` windows of (B, C, H, W), the remainder rows and
    columns dropped: ``np.maximum`` over the window's ``size**2`` strided views (5x faster than a
    reshape and ``max`` over two axes on a 10 x 14 x 14 map)."""
    b, c, h, w = x.shape
    oh, ow = h // size, w // size
    v = x[:, :, : oh * size, : ow * size]
    out = v[:, :, 0::size, 0::size]
    for i in range(size):
        for j in range(size):
            if i or j:
                out = np.maximum(out, v[:, :, i::size, j::size])
    return np.ascontiguousarray(out)


def sum_pool(x: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """Sums over ``kh`` x ``kw`` windows of (B, C, H, W) with strides ``sh``, ``sw`` (no padding,
    floor mode), int64: the window's ``kh * kw`` strided views added (``max_pool``'s layout)."""
    b, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((b, c, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            out += x[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
    return out


ROUTING_KINDS = ("maxpool", "flatten", "global_sum_pool", "sum_pool")  # layers without weights or neurons


def _route(layer: Any, x: np.ndarray) -> np.ndarray:
    """A layer without weights or neurons applied to (batch, ...) activations: max pooling of
    spikes, flattening (channel-major), window sums, or spike counts over H and W."""
    if layer.kind == "maxpool":
        return max_pool(x, layer.size)
    if layer.kind == "sum_pool":
        return sum_pool(x, layer.kernel_h, layer.kernel_w, layer.stride_h, layer.stride_w)
    if layer.kind == "flatten":
        return x.reshape(x.shape[0], -1)
    return x.sum(axis=(2, 3), dtype=np.int64)


# ----------------------------------------------------------------------------- accumulations


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int, dtype: Any, pad_buffer: Optional[np.ndarray] = None) -> np.ndarray:
    """(B, C, H, W) -> (C*kh*kw, B*OH*OW) in ``dtype``: rows in ``weight.reshape(O, -1)`` order,
    the images' columns side by side, so that one matrix product serves the whole batch (a
    batch of small products was 20% slower for 4 images, 25% for 128).

    ``pad_buffer``: a zeroed (B', C', H + 2p, W + 2p) array of ``dtype`` with B' >= B, C' >= C,
    whose border stays zero: the input is copied into its interior instead of ``np.pad``
    (a Python-level function, a third of a small conv layer's time)."""
    if padding:
        b, c, h, w = x.shape
        if pad_buffer is None:
            pad_buffer = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype)
        xp = pad_buffer[:b, :c]
        xp[:, :, padding : padding + h, padding : padding + w] = x
        x = xp
    else:
        x = np.ascontiguousarray(x, dtype)
    b, c, h, w = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    sb, sc, sh, sw = x.strides
    view = as_strided(x, (c, kh, kw, b, oh, ow), (sc, sh, sw, sb, sh * stride, sw * stride), writeable=False)
    return view.reshape(c * kh * kw, b * oh * ow)


class ConvOp:
    """The accumulation of one ``conv_lif`` layer, by events or dense, with its synapse counts."""

    def __init__(self, layer: ConvLifLayer, in_shape: Tuple[int, ...], peak: int) -> None:
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = layer.out_shape(in_shape)
        o, c, kh, kw = layer.weight.shape
        exact32 = 128 * layer.fan_in * peak < FLOAT32_EXACT
        self.dtype = np.float32 if exact32 else np.float64
        self.w2 = layer.weight.reshape(o, -1).astype(self.dtype)  # dense: (O, C*kh*kw)
        self.w3 = self.w2.reshape(o, c, kh * kw)  # the same by input channel
        self.nnz = np.count_nonzero(layer.weight, axis=0).reshape(c, kh * kw)  # (C, kh*kw): weights reached per (event, offset)
        self.nnz_flat = self.nnz.reshape(-1).astype(np.int64)  # the same in im2col row order
        self.nnz = self.nnz.astype(np.int64)
        ky, kx = np.divmod(np.arange(kh * kw), kw)
        self.ky, self.kx = ky, kx
        # events: every kernel slice side by side, (C, kh*kw*O), for the sites' product
        self.wall = np.ascontiguousarray(layer.weight.transpose(1, 2, 3, 0).reshape(c, kh * kw * o)).astype(self.dtype)
        self._reach_t: Optional[np.ndarray] = None  # made on first use (event path, shifted product)
        # shifted product: (kh*kw*O, C), row k*O + o, and its zero-margined input grid (reused)
        self.wshift = np.ascontiguousarray(layer.weight.transpose(2, 3, 0, 1).reshape(kh * kw * o, c)).astype(self.dtype)
        self._grid: Optional[np.ndarray] = None
        self._pad: Optional[np.ndarray] = None  # im2col's zero-bordered input buffer, reused
        self.count_dtype = np.float32 if layer.fan_in * o < FLOAT32_EXACT else np.float64  # exact operation counts

    @property
    def reach_t(self) -> np.ndarray:
        """(H*W, C): the synapses one event at input position (y, x) of channel c reaches, the
        non-zero weights of the kernel offsets whose output ``((y + p - ky) / s, ...)`` is whole
        and inside the map (synaptic operations of the event path and the shifted product: a
        lookup per event). Made on first use: im2col counts without it."""
        if self._reach_t is None:
            self._reach_t = self._reach()
        return self._reach_t

    def _reach(self) -> np.ndarray:
        ly = self.layer
        _, h, w = self.in_shape
        _, oh, ow = self.out_shape
        s, p = ly.stride, ly.padding
        ny = np.arange(h)[:, None] + p - self.ky[None, :]  # (H, kh*kw)
        nx = np.arange(w)[:, None] + p - self.kx[None, :]  # (W, kh*kw)
        vy = (ny >= 0) & (ny % s == 0) & (ny // s < oh)
        vx = (nx >= 0) & (nx % s == 0) & (nx // s < ow)
        valid = (vy[:, None, :] & vx[None, :, :]).reshape(h * w, -1)  # (H*W, kh*kw)
        return valid.astype(np.int64) @ self.nnz.T.astype(np.int64)

    def dense(self, x: np.ndarray) -> Tuple[np.ndarray, int]:
        """One product over every position, over the input channels with at least one event in
        the batch (a silent channel contributes nothing: its rows of the product are skipped).
        im2col copies kh*kw rows per input channel; the shifted product writes kh*kw rows per
        output channel, so it is taken where the layer narrows (``SHIFT_MAX_OUT_PER_IN``)."""
        ly = self.layer
        active = np.flatnonzero(x.any(axis=(0, 2, 3)))
        if active.size == 0:
            return np.zeros((x.shape[0],) + self.out_shape, np.int64), 0
        if ly.stride == 1 and ly.out_channels <= SHIFT_MAX_OUT_PER_IN * active.size:
            return self._shifted(x, active)
        w2, nnz = self.w2, self.nnz_flat
        if active.size < ly.in_channels:
            x = x[:, active]
            w2 = self.w3[:, active].reshape(ly.out_channels, -1)
            nnz = self.nnz[active].reshape(-1)
        b, c, h, w = x.shape
        p = ly.padding
        buf = self._pad
        if buf is None or buf.shape[0] < b:
            buf = self._pad = np.zeros((b, ly.in_channels, h + 2 * p, w + 2 * p), self.dtype)
        cols = im2col(x, ly.kernel_h, ly.kernel_w, ly.stride, p, self.dtype, buf)
        acc = w2 @ cols  # (O, B*OH*OW), exact integers (float: the neuron kernels take it as is)
        if x.dtype == np.uint8 or x.dtype == np.bool_:  # spikes: cols is 0/1, so counting is a product
            # (np.count_nonzero along an axis is a Python-level != and sum: a third of a small layer's time)
            per_position = nnz.astype(self.count_dtype) @ cols  # (B*OH*OW,): integers <= fan-in * O
            synops = int(per_position.sum(dtype=np.float64))
        else:
            synops = int(np.count_nonzero(cols, axis=1) @ nnz)
        o, oh, ow = self.out_shape
        return acc.reshape(o, b, oh, ow).transpose(1, 0, 2, 3), synops  # (B, O, OH, OW), a view

    def _shifted(self, x: np.ndarray, active: np.ndarray) -> Tuple[np.ndarray, int]:
        """Stride 1: every kernel offset's weights times the input laid on the grid grown by the
        kernel, in one product ((kh*kw*O, C) @ (C, positions)), then each offset's O rows added
        to the output grid shifted by that offset's flat distance (a contiguous slice: the grid
        is wide enough that no shift wraps into the next row's outputs)."""
        ly = self.layer
        b, _, h, w = x.shape
        kh, kw, o, p = ly.kernel_h, ly.kernel_w, ly.out_channels, ly.padding
        hz, wz = h + kh - 1, w + kw - 1
        c = active.size
        wt = self.wshift if c == ly.in_channels else self.wshift[:, active]
        n = b * hz * wz
        grid = self._grid
        if grid is None or grid.size < ly.in_channels * n:  # zero margins, reused: only interiors are written
            grid = self._grid = np.zeros(ly.in_channels * n, self.dtype)
        g = grid[: c * n].reshape(c, b, hz, wz)
        g[:, :, :h, :w] = (x if c == ly.in_channels else x[:, active]).transpose(1, 0, 2, 3)
        y = wt @ g.reshape(c, n)  # (kh*kw*O, n): row k*O + o
        shifts = self.shifts(wz)
        z = np.zeros((o, n + int(shifts.max())), self.dtype)
        for k, d in enumerate(shifts.tolist()):
            z[:, d : d + n] += y[k * o : (k + 1) * o]
        _, oh, ow = self.out_shape
        fy, fx = kh - 1 - p, kw - 1 - p
        acc = z[:, :n].reshape(o, b, hz, wz)[:, :, fy : fy + oh, fx : fx + ow]
        counts = x[:, active].reshape(b, c, h * w) != 0 if c < ly.in_channels else x.reshape(b, c, h * w) != 0
        synops = int(np.einsum("bcp,pc->", counts, self.reach_t[:, active], dtype=np.int64))
        return acc.transpose(1, 0, 2, 3), synops  # (B, O, OH, OW), a view

    def event(self, x: np.ndarray) -> Tuple[np.ndarray, int]:
        """Gather, product, scatter over the occupied sites (positions with an event in any
        channel): the sites' channel vectors (n, C) times every kernel slice at once (C, kh*kw*O)
        in one BLAS product, then each kernel offset's (n, O) block is added to the output
        positions it reaches. Work grows with the number of occupied sites; within an offset the
        sites' target positions are distinct, so a plain indexed add is exact. Positions are
        on the input's grid grown by the kernel (no bounds tests); a stride keeps every s-th."""
        ly = self.layer
        batch, c, h, w = x.shape
        o = ly.out_channels
        kh, kw, s, p = ly.kernel_h, ly.kernel_w, ly.stride, ly.padding
        xcl = x.transpose(0, 2, 3, 1).reshape(-1, c)  # channel-last copy: a site's channels together
        sites = np.flatnonzero(xcl.any(axis=1))
        _, oh, ow = self.out_shape
        if sites.size == 0:
            return np.zeros((batch,) + self.out_shape, self.dtype), 0
        a = xcl[sites]  # (n, C)
        wall = self.wall
        channels = np.flatnonzero(a.any(axis=0))
        if channels.size < c:  # silent channels add nothing: drop their rows of the product
            a, wall = a[:, channels], wall[channels]
        y = (a.astype(self.dtype) @ wall).reshape(sites.size, kh * kw, o)  # exact integers
        img, pos = np.divmod(sites, h * w)
        reach = self.reach_t[pos]  # (n, C): synapses an event at this site reaches, per channel
        synops = int((reach if channels.size == c else reach[:, channels])[a != 0].sum())
        hz, wz = h + kh - 1, w + kw - 1
        py, px = np.divmod(pos, w)
        rows = (img * (hz * wz) + py * wz + px)[None, :] + self.shifts(wz)[:, None]  # (kh*kw, n)
        z = np.zeros((batch * hz * wz, o), self.dtype)
        for k in range(kh * kw):
            z[rows[k]] += y[:, k]
        fy, fx = kh - 1 - p, kw - 1 - p  # grid row and column of output (0, 0)
        z = z.reshape(batch, hz, wz, o)[:, fy : fy + (oh - 1) * s + 1 : s, fx : fx + (ow - 1) * s + 1 : s]
        return z.transpose(0, 3, 1, 2), synops  # (B, O, OH, OW), a view

    def shifts(self, wz: int) -> np.ndarray:
        """Grid offset from an input site to the output it feeds through each kernel offset
        (ky, kx): output row ``y + p - ky`` sits at grid row ``y + kh - 1 - ky``."""
        ly = self.layer
        return (ly.kernel_h - 1 - self.ky) * wz + (ly.kernel_w - 1 - self.kx)


class LinearOp:
    """The accumulation ``weight @ x`` of a ``linear_lif`` layer or the readout."""

    def __init__(self, layer: Any, peak: int) -> None:
        self.layer = layer
        exact32 = 128 * layer.n_in * peak < FLOAT32_EXACT
        self.dtype = np.float32 if exact32 else np.float64
        self.wt = np.ascontiguousarray(layer.weight.T)  # (n_in, n_out) int8: one row per input
        self.wt_f = self.wt.astype(self.dtype)
        self.nnz = np.count_nonzero(self.wt, axis=1).astype(np.int64)  # per input

    def dense(self, x: np.ndarray) -> Tuple[np.ndarray, int]:
        acc = x.astype(self.dtype) @ self.wt_f
        return acc.astype(np.int64), int(np.count_nonzero(x, axis=0) @ self.nnz)

    def event(self, x: np.ndarray) -> Tuple[np.ndarray, int]:
        """Gather the weight rows of the inputs with an event in any row of the batch and sum
        them per row (one product over the active rows only: work grows with the events)."""
        active = np.flatnonzero(x.any(axis=0))
        xa = x[:, active]
        acc = xa.astype(self.dtype) @ self.wt_f[active]
        return acc.astype(np.int64), int(np.count_nonzero(xa, axis=0) @ self.nnz[active])


def _accumulate(op: Any, x: np.ndarray, method: str) -> Tuple[np.ndarray, int]:
    if method == "auto":
        activity = np.count_nonzero(x) / max(1, x.size)
        method = "event" if activity < EVENT_MAX_ACTIVITY[op.layer.kind] else "dense"
    return op.event(x) if method == "event" else op.dense(x)


__all__: List[str] = ["ConvOp", "LinearOp", "lif_hard_step_int", "im2col", "max_pool", "sum_pool", "METHODS", "EVENT_MAX_ACTIVITY"]
