"""The session of a convolutional bundle: step-by-step and layer-by-layer loops over ``conv_ops``.

The integer model and the two accumulation paths are described in ``runtime/conv_ops.py``; this
module holds the state (membranes, the readout sum, the residual streams) and the loops that
drive the layers in order: one time step through every layer (``step``), or every time step of
one layer before the next (``run`` when the input is the same image each step; that loop is in
``conv_layer_major.py``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import DataError
from .bundle import SPIKING_KINDS, ConvBundle, LinearReadout
from .bundle.limits import LAYER_MAJOR_MAX_VALUES
from .conv_layer_major import run_layer_major
from .conv_ops import METHODS, ROUTING_KINDS, ConvOp, LinearOp, _accumulate, _route, lif_hard_step_int
from .encoders import encode_direct
from .engine import RunResult
from .fixedpoint import rshift_round, saturate32
from .kernels import HardResetKernel


class ConvSession:
    """A loaded ``ConvBundle`` ready to classify a batch of images; the same use as ``Session``.

    ``run(images)`` runs ``time_steps`` steps on (batch, C, H, W) images; ``start(batch)`` and
    ``step(x)`` advance one step at a time (``x``: (batch, C*H*W) or (batch, C, H, W), the same
    image every step for the model's semantics). Each step returns the readout's running
    average, so after ``time_steps`` steps it is the logits. ``method``: "auto", "event" or
    "dense" (the accumulation path of every layer; results are identical).
    """

    core = "numpy"  # which core runs the session ("compiled": runtime.conv_compiled)

    def __init__(self, bundle: ConvBundle, batch: int = 1, record_spikes: bool = False, method: str = "auto") -> None:
        if method not in METHODS:
            raise ValueError("method must be one of %s" % (METHODS,))
        self.bundle = bundle
        self.record_spikes = record_spikes
        self.method = method
        self.shapes = bundle.shapes()
        peak = (1 << (bundle.encoder.bits - 1)) - 1  # largest |input| of the layer: the image's, 1 for spikes
        self.ops: List[Any] = []
        self._max_acc: Dict[str, float] = {}  # bound on |acc| of each spiking layer: max over outputs of sum |w| x largest input
        for layer, shape in zip(bundle.layers, self.shapes):
            if layer.kind in ("conv_lif", "conv_stream"):
                self.ops.append(ConvOp(layer, shape, peak))
            elif layer.kind == "linear_lif":
                self.ops.append(LinearOp(layer, peak))
            else:
                self.ops.append(None)
            if layer.kind in ("conv_lif", "linear_lif"):
                w = np.abs(layer.weight.astype(np.int64)).reshape(layer.weight.shape[0], -1).sum(axis=1)
                self._max_acc[layer.name] = float(w.max()) * peak
            elif layer.kind == "stream_lif":
                self._max_acc[layer.name] = float(1 << 31)  # the stream is an int32
            if layer.kind in SPIKING_KINDS:
                peak = 1
            elif layer.kind == "global_sum_pool":
                peak = shape[1] * shape[2]  # spike counts over H x W
            elif layer.kind == "sum_pool":
                peak *= layer.kernel_h * layer.kernel_w  # window sums
        self.readout_op = LinearOp(bundle.readout, peak)
        self._consts = [self._neuron_consts(layer) for layer in bundle.layers]
        self._kernel_cache: Dict[int, Dict[str, Any]] = {}  # per batch size: made once, reused by every start
        self.start(batch)

    @staticmethod
    def _neuron_consts(layer: Any) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(m, bias) of a spiking layer, or (m, shift) of a stream conv, shaped to broadcast."""
        if layer.kind == "conv_stream":
            return layer.m.reshape(-1, 1, 1), layer.shift
        if layer.kind in ("conv_lif", "stream_lif"):
            return layer.m.reshape(-1, 1, 1), layer.bias.astype(np.int64).reshape(-1, 1, 1)
        if layer.kind == "linear_lif":
            return layer.m, layer.bias.astype(np.int64)
        return None

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        """Resting state for ``batch`` images and zeroed counters (``first_frame`` is unused:
        the direct encoder has no state; it is accepted for the ``Session`` interface)."""
        self.batch = batch
        self.mem = {}
        fresh = batch not in self._kernel_cache
        self._kernels = self._kernel_cache.setdefault(batch, {})
        for i, (layer, shape) in enumerate(zip(self.bundle.layers, self.shapes[1:])):
            if layer.kind in SPIKING_KINDS:
                state = (batch,) + tuple(shape)
                if fresh:
                    m, bias = self._consts[i]
                    kernel = HardResetKernel(state, layer.decay, m, layer.shift, bias, self._max_acc[layer.name])
                    if kernel.exact or kernel.current_exact:  # in-place float64 (runtime.kernels); else the integer step
                        self._kernels[layer.name] = kernel
                elif layer.name in self._kernels:
                    self._kernels[layer.name].reset()
                self.mem[layer.name] = np.zeros(state, np.float64 if layer.name in self._kernels else np.int32)
        self.total = np.zeros((batch, self.bundle.readout.n_out), np.int64)
        self.spike_counts = {name: 0 for name in self.mem}
        self.layer_synops: Dict[str, int] = {layer.name: 0 for layer in self.bundle.layers if layer.kind in ("conv_lif", "linear_lif", "conv_stream")}
        self.layer_synops[self.bundle.readout.name] = 0
        self.spike_history: List[List[np.ndarray]] = [[] for _ in self.mem]
        self.synops = 0
        self.steps = 0
        self._first: Optional[Tuple[np.ndarray, int]] = None  # cached first accumulation (run)
        self._first_current: Optional[np.ndarray] = None  # and its requantised current

    @property
    def steps_per_inference(self) -> int:
        """T: each image is shown for the bundle's time steps (``tasks.protocols.classify``)."""
        return int(self.bundle.time_steps)

    @property
    def neurons(self) -> Dict[str, int]:
        return {name: int(np.prod(mem.shape[1:])) for name, mem in self.mem.items()}

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Images (batch, C, H, W) or (batch, C*H*W) -> input integers (batch, C, H, W)."""
        x = np.asarray(x, np.float64)
        if x.size != self.batch * self.bundle.n_inputs:
            raise DataError("the input has %d values per image; the model takes %d (%s)" % (
                x.size // max(1, self.batch), self.bundle.n_inputs, "x".join(map(str, self.bundle.input_shape))))
        x = x.reshape((self.batch,) + tuple(self.bundle.input_shape))
        return encode_direct(x, self.bundle.encoder.scale, self.bundle.encoder.bits)

    clock: Any = None  # a ``measure.profile.PhaseClock`` while profiling: time per phase

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step: images in, the readout's running average (batch, n_out) out."""
        if self.clock is not None:
            self.clock.start()
        events = self.encode(x)
        if self.clock is not None:
            self.clock.lap("encode")
        return self._advance(events, reuse_first=False)

    def _advance(self, events: np.ndarray, reuse_first: bool) -> np.ndarray:
        clock = self.clock
        if clock is not None:
            clock.start()
        x: np.ndarray = events
        first = True
        k = 0
        stream: Optional[np.ndarray] = None  # a ResNet's residual stream (int64 holding int32 values)
        for i, (layer, op) in enumerate(zip(self.bundle.layers, self.ops)):
            if layer.kind in ROUTING_KINDS:
                x = _route(layer, x)
                if clock is not None and layer.kind in ("maxpool", "sum_pool"):
                    clock.lap("accumulate")  # pooling: part of moving spikes to the next layer
                continue
            if layer.kind == "stream_lif":
                acc = x  # the stream
            else:
                acc, synops = self._weighted(op, x, first and reuse_first)
                first = False
                self.synops += synops
                self.layer_synops[layer.name] += synops
                if clock is not None:
                    clock.lap("accumulate")
            if layer.kind == "conv_stream":
                x = stream = self._stream(i, acc, None if layer.mode == "set" else stream)
                continue
            spikes = self._neuron(i, k, layer, acc, reuse_first)
            self.spike_counts[layer.name] += int(np.count_nonzero(spikes))
            if self.record_spikes:
                self.spike_history[k].append(spikes.copy())
            k += 1
            x = spikes.view(np.uint8) if spikes.dtype == np.bool_ else spikes
            if clock is not None:
                clock.lap("neuron")
        acc, synops = self._weighted(self.readout_op, x.reshape(x.shape[0], -1), first and reuse_first)
        self.synops += synops
        self.layer_synops[self.bundle.readout.name] += synops
        self.total += acc
        self.steps += 1
        out = self.readout_values()
        if clock is not None:
            clock.lap("readout")
        return out

    def _neuron(self, i: int, k: int, layer: Any, acc: np.ndarray, reuse_first: bool) -> np.ndarray:
        """The neuron update of spiking layer ``k`` (bundle layer ``i``) from its accumulation."""
        kernel = self._kernels.get(layer.name)
        if kernel is not None and kernel.exact:
            return kernel.step(acc, self.mem[layer.name])
        if kernel is not None:  # the current in int64 (once per run for the image layer), the rest in place
            current = self._first_current if (k == 0 and reuse_first and self._first_current is not None) else None
            if current is None:
                m, _ = self._consts[i]
                current = rshift_round(acc.astype(np.int64, copy=False) * m, layer.shift).astype(np.float64)
                if k == 0 and reuse_first:
                    self._first_current = current
            return kernel.step_current(current, self.mem[layer.name])
        m, bias = self._consts[i]
        spikes, self.mem[layer.name] = lif_hard_step_int(acc.astype(np.int64, copy=False), self.mem[layer.name], m, layer.shift, bias, layer.decay)
        return spikes

    def _stream(self, i: int, acc: np.ndarray, base: Optional[np.ndarray]) -> np.ndarray:
        """Stream conv ``i``'s output on the residual stream: ``sat32(rs(acc * m, shift))``, plus
        ``base`` (the stream so far) for an "add" conv."""
        m, shift = self._consts[i]
        y = rshift_round(acc.astype(np.int64, copy=False) * m, shift)
        return saturate32(y if base is None else base + y)

    def _weighted(self, op: Any, x: np.ndarray, reuse: bool) -> Tuple[np.ndarray, int]:
        """The layer's accumulation; the first layer's is computed once per ``run`` (the same
        image enters every step) and its synaptic operations are counted every step."""
        if reuse and self._first is not None:
            return self._first
        out = _accumulate(op, x, self.method)
        if reuse:
            self._first = out
        return out

    def get_state(self) -> Dict[str, np.ndarray]:
        """Membranes ``mem<k>`` of the spiking layers (NCHW, int64) and the readout's running
        sum ``total``: the step graphs' state, by their names."""
        out = {"mem%d" % k: m.astype(np.int64) for k, m in enumerate(self.mem.values())}
        out["total"] = self.total.copy()
        return out

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        for k, name in enumerate(self.mem):
            loaded = np.asarray(state["mem%d" % k]).astype(np.int32)
            if name in self._kernels:
                self.mem[name] = loaded.astype(np.float64)
                self._kernels[name].check_loaded(self.mem[name])
            else:
                self.mem[name] = loaded
        self.total = np.asarray(state["total"]).astype(np.int64).copy()

    def readout_values(self) -> np.ndarray:
        """The readout's currents averaged over the steps so far: (batch, n_out) float64."""
        ro: LinearReadout = self.bundle.readout
        return self.total.astype(np.float64) * ro.acc_scale / max(1, self.steps) + ro.bias

    def image_batch(self, images: np.ndarray) -> np.ndarray:
        """``images`` as a float64 batch (batch, C, H, W): one image (C, H, W) or flat rows
        (batch, C*H*W) are accepted too; any other shape is refused."""
        images = np.asarray(images, np.float64)
        shape = tuple(self.bundle.input_shape)
        if images.shape == shape:
            images = images[None]
        if images.ndim == 2 and images.shape[1] == self.bundle.n_inputs:
            images = images.reshape((images.shape[0],) + shape)
        if images.shape[1:] != shape:
            raise ValueError("images have shape %s; the model takes (batch,) + %s" % (images.shape, shape))
        return images

    def run(self, images: np.ndarray, steps: Optional[int] = None) -> RunResult:
        """Classify images (batch, C, H, W) or (C, H, W) over ``time_steps`` steps (or ``steps``);
        ``outputs`` (batch, steps, n_out) holds the running average, ``[:, -1]`` the logits."""
        images = self.image_batch(images)
        self.start(images.shape[0])
        events = self.encode(images)
        n = self.bundle.time_steps if steps is None else steps
        if n * self.batch * max(int(np.prod(s)) for s in self.shapes) <= LAYER_MAJOR_MAX_VALUES:
            return self.result(run_layer_major(self, events, n))
        outputs = np.empty((self.batch, n, self.bundle.n_outputs))  # too large to keep every step: step by step
        for t in range(n):
            outputs[:, t] = self._advance(events, reuse_first=True)
        return self.result(outputs)

    def infer_images(self, images: np.ndarray) -> np.ndarray:
        """The logits of a batch of images, (batch, n_out): ``run`` over the bundle's time steps
        (``tasks.protocols.classify`` uses it for static images)."""
        return self.run(images).outputs[:, -1]

    def result(self, outputs: np.ndarray) -> RunResult:
        return RunResult(
            outputs=outputs,
            spike_counts=dict(self.spike_counts),
            synops=self.synops,
            steps=self.steps,
            batch=self.batch,
            neurons=self.neurons,
        )


__all__: List[str] = ["ConvSession"]
