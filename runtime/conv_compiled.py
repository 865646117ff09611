"""The session that runs a convolutional bundle on the compiled conv core (``runtime/_conv_core.c``;
``runtime.cores`` chooses, as for recurrent bundles).

``conv_session.ConvSession`` (numpy) is the reference and the fallback; this session computes the
same integers with one C call per ``run`` (every step of every image) and one per ``step``. At
batch 1 a 28x28 network's numpy inference is a few dozen calls whose overhead exceeds the work,
so pruning's savings hid behind it (``docs/results/sca.md``); in C the cost follows the work.

State lives in numpy arrays made here once per batch size (membranes, readout sums, counters);
the C object holds their buffers and checks every length and the whole layer geometry itself.
The C core keeps maps channel-last (H, W, C): membranes and spike records are transposed to the
numpy session's (C, H, W) by ``get_state``/``set_state`` and the spike history, and the weight
rows of a linear layer after a flatten are permuted to that order here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import DataError
from .bundle import SPIKING_KINDS, ConvBundle
from .conv_ops import METHODS
from .conv_session import ConvSession
from .cores import _conv_core

KINDS = {"conv_lif": 0, "conv_stream": 1, "linear_lif": 2, "stream_lif": 3, "maxpool": 4, "flatten": 5, "global_sum_pool": 6}
WEIGHTED = ("conv_lif", "conv_stream", "linear_lif")
# Input activity (non-zero fraction) above which ``auto`` takes the dense path in C, per kind;
# measured with ``benchmarks/conv_runtime.py --compiled`` (docs/results/conv_runtime.md): on convs
# the dense path wins from 30-50% activity; on linear layers the event path still won at 70% on
# every size measured, so ``auto`` never takes the dense one there (1.0).
DENSE_MIN_ACTIVITY = {"conv_lif": 0.4, "conv_stream": 0.4, "linear_lif": 1.0, "linear_readout": 1.0}


def _hwc_rows(weight: np.ndarray, flat_from: Optional[Tuple[int, int, int]]) -> np.ndarray:
    """A linear weight (n_out, n_in) as rows per input (n_in, n_out) int8, inputs in the C core's
    order: (H, W, C) when the input is a flattened (C, H, W) map."""
    w = np.asarray(weight, np.int8)
    if flat_from is not None:
        c, h, wd = flat_from
        w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    return np.ascontiguousarray(w.T)


class CompiledConvSession(ConvSession):
    """``ConvSession`` on the compiled conv core: the same interface, counters and results.

    ``method``: "auto" (dense path above ``DENSE_MIN_ACTIVITY``), "event" or "dense" (every
    weighted layer and the readout), as for the numpy session; results are identical.
    """

    core = "compiled"

    def __init__(self, bundle: ConvBundle, batch: int = 1, record_spikes: bool = False, method: str = "auto") -> None:
        if method not in METHODS:
            raise ValueError("method must be one of %s" % (METHODS,))
        self.bundle = bundle
        self.record_spikes = record_spikes
        self.method = method
        self.shapes = bundle.shapes()
        self._spiking = [i for i, layer in enumerate(bundle.layers) if layer.kind in SPIKING_KINDS]
        self._batch_built: Optional[int] = None
        self.start(batch)

    # ------------------------------------------------------------------ the C object and its buffers

    def _build(self, batch: int) -> None:
        b = self.bundle
        c, h, w = b.input_shape
        self._mem = [np.zeros(batch * int(np.prod(self.shapes[i + 1])), np.int32) for i in self._spiking]
        mems = dict(zip(self._spiking, self._mem))
        self._counters = np.zeros(2 + 4 * (len(b.layers) + 1), np.int64)
        self._total = np.zeros(batch * b.readout.n_out, np.int64)
        layers: List[Dict[str, Any]] = []
        flat_from: Optional[Tuple[int, int, int]] = None
        for i, (layer, shape) in enumerate(zip(b.layers, self.shapes)):
            d: Dict[str, Any] = {"kind": KINDS[layer.kind]}
            if layer.kind in ("conv_lif", "conv_stream"):
                d.update(in_channels=layer.in_channels, out_channels=layer.out_channels, kernel_h=layer.kernel_h, kernel_w=layer.kernel_w,
                         stride=layer.stride, padding=layer.padding, weight=np.ascontiguousarray(layer.weight.transpose(2, 3, 1, 0), np.int8))
            elif layer.kind == "linear_lif":
                d.update(n_in=layer.n_in, n_out=layer.n_out, weight=_hwc_rows(layer.weight, flat_from))
            elif layer.kind == "stream_lif":
                d.update(channels=layer.channels)
            elif layer.kind == "maxpool":
                d.update(size=layer.size)
            if layer.kind in WEIGHTED or layer.kind == "stream_lif":
                d.update(shift=int(layer.shift), m=np.ascontiguousarray(layer.m, np.int64))
            if layer.kind in SPIKING_KINDS:
                d.update(decay=int(layer.decay), bias=np.ascontiguousarray(layer.bias, np.int32), mem=mems[i])
            elif layer.kind == "conv_stream":
                d.update(add=int(layer.mode == "add"))
            flat_from = tuple(shape) if layer.kind == "flatten" else None  # type: ignore[assignment]
            layers.append(d)
        ro = b.readout
        spec = dict(batch=batch, in_c=c, in_h=h, in_w=w, scale=float(b.encoder.scale), qmax=(1 << (b.encoder.bits - 1)) - 1,
                    layers=layers, counters=self._counters,
                    readout=dict(n_in=ro.n_in, n_out=ro.n_out, weight=_hwc_rows(ro.weight, flat_from), total=self._total,
                                 acc_scale=np.ascontiguousarray(ro.acc_scale, np.float64), bias=np.ascontiguousarray(ro.bias, np.float64)))
        self._spec = spec  # kept for the tests of the C side's checks
        self._c = _conv_core.Conv(spec)
        self._batch_built = batch
        self._set_switches()

    def _set_switches(self) -> None:
        """Per weighted layer and the readout: dense when more inputs than the switch are non-zero."""
        entries = [(i, layer.kind, int(np.prod(shape))) for i, (layer, shape) in enumerate(zip(self.bundle.layers, self.shapes)) if layer.kind in WEIGHTED]
        entries.append((len(self.bundle.layers), "linear_readout", self.bundle.readout.n_in))
        self.switch_k: Dict[str, int] = {}
        for i, kind, n_in in entries:
            if self.method == "event":
                k = n_in
            elif self.method == "dense":
                k = -1
            else:
                k = int(DENSE_MIN_ACTIVITY[kind] * n_in)
            self._c.set_switch(i, k)
            self.switch_k[self.bundle.layers[i].name if i < len(self.bundle.layers) else self.bundle.readout.name] = k

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        """Resting state for ``batch`` images and zeroed counters (``first_frame`` unused, as in
        ``ConvSession``); the C object is rebuilt only when the batch size changes."""
        self.batch = batch
        if self._batch_built != batch:
            self._build(batch)
        for m in self._mem:
            m.fill(0)
        self._total.fill(0)
        self._counters.fill(0)
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self._spiking]

    # ------------------------------------------------------------------ counters and state, as ConvSession's

    steps = property(lambda self: int(self._counters[0]))

    @property
    def synops(self) -> int:
        return int(self._counters[2::4].sum())

    @property
    def layer_synops(self) -> Dict[str, int]:
        out = {layer.name: int(self._counters[2 + 4 * i]) for i, layer in enumerate(self.bundle.layers) if layer.kind in WEIGHTED}
        out[self.bundle.readout.name] = int(self._counters[2 + 4 * len(self.bundle.layers)])
        return out

    @property
    def spike_counts(self) -> Dict[str, int]:
        return {self.bundle.layers[i].name: int(self._counters[3 + 4 * i]) for i in self._spiking}

    def path_steps(self) -> Dict[str, Dict[str, int]]:
        """Per weighted layer and the readout: layer-steps on the event and on the dense path."""
        names = [(i, layer.name) for i, layer in enumerate(self.bundle.layers) if layer.kind in WEIGHTED]
        names.append((len(self.bundle.layers), self.bundle.readout.name))
        return {name: {"event": int(self._counters[4 + 4 * i]), "dense": int(self._counters[5 + 4 * i])} for i, name in names}

    def accumulation_report(self) -> Dict[str, Any]:
        """Per weighted layer and the readout (``spikeedge profile``'s "accumulation"): the switch
        point (dense above ``switch_k`` non-zero inputs) and the layer-steps taken on each path."""
        steps = self.path_steps()
        n_in = {layer.name: int(np.prod(shape)) for layer, shape in zip(self.bundle.layers, self.shapes) if layer.kind in WEIGHTED}
        n_in[self.bundle.readout.name] = self.bundle.readout.n_in
        return {name: {"path": {"core": "compiled", "inputs": n_in[name], "switch_k": k, "forced": None if self.method == "auto" else self.method,
                                "switch_activity": None if k >= n_in[name] else max(0, k) / n_in[name], "steps": steps[name]}}
                for name, k in self.switch_k.items()}

    @property
    def total(self) -> np.ndarray:
        return self._total.reshape(self.batch, -1)

    @property
    def mem(self) -> Dict[str, np.ndarray]:
        """Membranes per spiking layer, (batch,) + shape in the numpy session's order (copies)."""
        return {self.bundle.layers[i].name: self._to_chw(m, i) for i, m in zip(self._spiking, self._mem)}

    def _to_chw(self, flat: np.ndarray, i: int, lead: Tuple[int, ...] = ()) -> np.ndarray:
        shape = tuple(self.shapes[i + 1])
        lead = lead or (self.batch,)
        if len(shape) == 1:
            return flat.reshape(lead + shape)
        c, h, w = shape
        return flat.reshape(lead + (h, w, c)).transpose(tuple(range(len(lead))) + (len(lead) + 2, len(lead), len(lead) + 1))

    def _from_chw(self, arr: np.ndarray, i: int) -> np.ndarray:
        shape = tuple(self.shapes[i + 1])
        arr = np.asarray(arr).reshape((self.batch,) + shape)
        return (arr if len(shape) == 1 else arr.transpose(0, 2, 3, 1)).reshape(-1)

    def get_state(self) -> Dict[str, np.ndarray]:
        out = {"mem%d" % k: self._to_chw(m, i).astype(np.int64) for k, (i, m) in enumerate(zip(self._spiking, self._mem))}
        out["total"] = self.total.copy()
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        for k, (i, m) in enumerate(zip(self._spiking, self._mem)):
            m[...] = self._from_chw(np.asarray(state["mem%d" % k]).astype(np.int32), i)
        self._total[...] = np.asarray(state["total"]).astype(np.int64).reshape(-1)

    # ------------------------------------------------------------------ stepping

    def _images(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float64)
        if x.size != self.batch * self.bundle.n_inputs:
            raise DataError("the input has %d values per image; the model takes %d (%s)" % (
                x.size // max(1, self.batch), self.bundle.n_inputs, "x".join(map(str, self.bundle.input_shape))))
        return x.reshape(self.batch, -1)

    def _record(self, steps: int) -> Optional[Tuple[Optional[np.ndarray], ...]]:
        if not self.record_spikes:
            return None
        return tuple(np.zeros((steps, self.batch, int(np.prod(self.shapes[i + 1]))), np.uint8) if i in self._spiking else None
                     for i in range(len(self.bundle.layers)))

    def _keep(self, record: Optional[Tuple[Optional[np.ndarray], ...]], steps: int) -> None:
        if record is None:
            return
        for k, i in enumerate(self._spiking):
            chw = self._to_chw(record[i], i, (steps, self.batch)).astype(bool)
            self.spike_history[k].extend(chw)

    PHASES = ("encode", "accumulate", "neuron", "readout")

    def _call(self, fn: Any, *args: Any) -> None:
        """``fn`` with the C core timing its phases while profiling (the numpy session's phases)."""
        clock = self.clock
        if clock is None:
            fn(*args)
            return
        phases = np.zeros(4)
        self._c.set_phases(phases)
        try:
            fn(*args)
        finally:
            self._c.set_phases(None)
        for name, sec in zip(self.PHASES, phases):
            clock.seconds[name] = clock.seconds.get(name, 0.0) + float(sec)

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step: images in, the readout's running average (batch, n_out) out."""
        x = self._images(x)
        out = np.empty((self.batch, self.bundle.n_outputs))
        record = self._record(1)
        self._call(self._c.step, x, out, record)
        self._keep(record, 1)
        return out

    def run(self, images: np.ndarray, steps: Optional[int] = None) -> Any:
        """Classify images (batch, C, H, W) or (C, H, W) over ``time_steps`` steps (or ``steps``),
        from rest, in one C call; as ``ConvSession.run``."""
        images = self.image_batch(images)
        self.start(images.shape[0])
        n = self.bundle.time_steps if steps is None else steps
        outputs = np.empty((self.batch, n, self.bundle.n_outputs))
        record = self._record(n)
        self._call(self._c.run, self._images(images), outputs, record)
        self._keep(record, n)
        return self.result(outputs)

    @property
    def neurons(self) -> Dict[str, int]:
        return {self.bundle.layers[i].name: int(np.prod(self.shapes[i + 1])) for i in self._spiking}


__all__ = ["CompiledConvSession", "DENSE_MIN_ACTIVITY"]
