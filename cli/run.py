"""``spikeedge run``: inference of a bundle on inputs from an .npz file."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import typer

from ..runtime import bundle as fmt
from ..runtime.backends import backend_of, open_model
from ..errors import DataError, SpikeedgeError
from ..tasks.npz_stream import NpzArray
from .common import BackendOpt, JsonOpt, emit, in_range


def _declared(path: Path, conv: bool, shape: Any) -> Tuple[NpzArray, bool]:
    """Array ``x`` of an .npz, its declared shape checked against the model before any data is
    read: (the array, True when it is one stream or one image rather than a batch)."""
    if conv:
        shape = tuple(shape)
        expected = "(n, %s) or (%s)" % (", ".join(map(str, shape)), ", ".join(map(str, shape)))
    else:
        expected = "(steps, %d) or (batch, steps, %d)" % (shape, shape)
    x = NpzArray(path, "x", "inputs, shape %s" % expected)
    given = x.shape
    if conv:
        single = given == shape
        if not single and (len(given) != 4 or given[1:] != shape):
            raise DataError("%s: 'x' has shape %s; the model takes images of shape %s" % (path, given, shape))
    else:
        single = len(given) in (1, 2)
        full = given + (1,) if len(given) == 1 else given
        if len(full) not in (2, 3) or full[-1] != shape or full[-2] == 0:
            raise DataError("%s: 'x' has shape %s; the model takes %d inputs per step" % (path, given, shape))
    if not single and given[0] == 0:
        raise DataError("%s: 'x' has shape %s: a batch of no inputs" % (path, given))
    return x, single


def _finite(path: Path, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError("%s: 'x' holds NaN or infinite values" % path)
    return x


def input_batches(path: Path, conv: bool, shape: Any, batch_size: int) -> Iterator[np.ndarray]:
    """The inputs in pieces of at most ``batch_size`` streams or images, each as the session
    takes them (float64): read from the archive piece by piece, never whole."""
    x, single = _declared(path, conv, shape)
    if single:
        whole = _finite(path, x.read())
        yield whole[None] if conv else whole.reshape(1, whole.shape[0], -1)
        return
    for chunk in x.chunks(batch_size):
        yield _finite(path, chunk)


def load_images(path: Path, shape: Tuple[int, ...]) -> np.ndarray:
    """Array ``x`` of an .npz as images (n, C, H, W); one image may be given as (C, H, W)."""
    return np.concatenate(list(input_batches(path, True, shape, 1 << 30)))


def load_inputs(path: Path, n_inputs: int) -> np.ndarray:
    """Array ``x`` of an .npz as (batch, steps, n_inputs): (steps,) and (steps, n) are one stream."""
    return np.concatenate(list(input_batches(path, False, n_inputs, 1 << 30)))


def _io(session: Any) -> Tuple[bool, Any, str]:
    """(conv?, input shape or input count, output kind) of any backend's session."""
    card = getattr(session, "card", None)
    if card is not None:
        conv = card["model"] == "conv"
        return conv, tuple(card["input_shape"]) if conv else int(card["n_inputs"]), card["output"]
    bundle = session.bundle
    if isinstance(bundle, fmt.ConvBundle):
        return True, tuple(bundle.input_shape), bundle.output
    return False, bundle.n_inputs, bundle.output


def run(
    model: Path = typer.Argument(..., help="A bundle (.seb) or a step graph (.onnx, .tflite)."),
    input: Path = typer.Option(..., "--input", help=".npz with array x: (steps, inputs) or (batch, steps, inputs); conv models: images (n, C, H, W) or (C, H, W)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write outputs and spike counts here (.npz)."),
    backend: str = BackendOpt,
    threads: int = typer.Option(1, "--threads", callback=in_range(1, 256), help="Interpreter threads (onnx, tflite)."),
    batch_size: int = typer.Option(32, "--batch-size", callback=in_range(1, 1 << 20), help="Streams or images run at once; the input file is read this many at a time."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the model on a runtime backend; print spikes, synaptic operations and timing.

    Example: spikeedge run model.seb --input x.npz -o y.npz
    """
    if threads < 1:
        raise SpikeedgeError("--threads: must be >= 1")
    if batch_size < 1:
        raise SpikeedgeError("--batch-size: must be >= 1")
    session = open_model(model, backend, threads=threads)
    conv, shape, kind = _io(session)
    seconds = 0.0
    result: Any = None
    outputs: List[np.ndarray] = []
    predictions: List[int] = []
    for x in input_batches(input, conv, shape, batch_size):
        session.start(x.shape[0])
        t0 = time.perf_counter()
        part = session.run(x)
        seconds += time.perf_counter() - t0
        if output is not None:
            outputs.append(part.outputs)
        if kind == "last":
            predictions += np.argmax(part.outputs[:, -1], axis=1).tolist()
        result = part if result is None else _merged(result, part)
    if output is not None:
        buf = io.BytesIO()
        counts = np.array([result.spike_counts[k] for k in sorted(result.spike_counts)])
        np.savez(buf, outputs=np.concatenate(outputs), spike_counts=counts, layers=np.array(sorted(result.spike_counts)), synops=np.array(result.synops))
        fmt.write_atomic(output, buf.getvalue())
    summary = result.summary()
    summary.update({"backend": backend_of(model), "spike_counts": result.spike_counts, "synops": result.synops,
                    "seconds": round(seconds, 6), "ms_per_step": 1e3 * seconds / max(1, result.steps),
                    "ms_per_inference": 1e3 * seconds / max(1, result.batch), "output_file": str(output) if output else None})
    if kind == "last":
        summary["predictions"] = predictions
    emit(summary, as_json)


def _merged(a: Any, b: Any) -> Any:
    """Two batches' results as one: counts and operations summed, streams added up."""
    counts = {k: a.spike_counts[k] + b.spike_counts[k] for k in a.spike_counts}
    return dataclasses.replace(a, outputs=a.outputs[:0], spike_counts=counts, synops=a.synops + b.synops, batch=a.batch + b.batch)
