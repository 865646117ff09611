"""``spikeedge run``: inference of a bundle on inputs from an .npz file."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
import typer

from ..runtime import bundle as fmt
from ..runtime.backends import backend_of, open_model
from ..runtime.errors import DataError, SpikeedgeError
from .common import BackendOpt, JsonOpt, emit, in_range


def _read_x(path: Path, expected: str) -> np.ndarray:
    """Array ``x`` of an .npz file, float64; ``expected`` describes its shape in messages."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError("%s: not an .npz archive" % path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataError("%s: missing array 'x' (inputs, shape %s)" % (path, expected))
            return np.asarray(z["x"], np.float64)
    except FileNotFoundError:
        raise DataError("%s: no such file" % path) from None
    except (OSError, ValueError) as exc:
        raise DataError("%s: not a readable .npz (%s)" % (path, str(exc).splitlines()[0])) from None


def load_images(path: Path, shape: Tuple[int, ...]) -> np.ndarray:
    """Array ``x`` of an .npz as images (n, C, H, W); one image may be given as (C, H, W)."""
    shape = tuple(shape)
    x = _read_x(path, "(n, %s) or (%s)" % (", ".join(map(str, shape)), ", ".join(map(str, shape))))
    given = x.shape
    if x.shape == shape:
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != shape or x.shape[0] == 0:
        raise DataError("%s: 'x' has shape %s; the model takes images of shape %s" % (path, given, shape))
    if not np.all(np.isfinite(x)):
        raise DataError("%s: 'x' holds NaN or infinite values" % path)
    return x


def load_inputs(path: Path, n_inputs: int) -> np.ndarray:
    """Array ``x`` of an .npz as (batch, steps, n_inputs): (steps,) and (steps, n) are one stream."""
    x = _read_x(path, "(steps, %d) or (batch, steps, %d)" % (n_inputs, n_inputs))
    given = x.shape
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != n_inputs or x.shape[1] == 0:
        raise DataError("%s: 'x' has shape %s; the model takes %d inputs per step" % (path, given, n_inputs))
    if not np.all(np.isfinite(x)):
        raise DataError("%s: 'x' holds NaN or infinite values" % path)
    return x


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
    as_json: bool = JsonOpt,
) -> None:
    """Run the model on a runtime backend; print spikes, synaptic operations and timing.

    Example: spikeedge run model.seb --input x.npz -o y.npz
    """
    if threads < 1:
        raise SpikeedgeError("--threads: must be >= 1")
    session = open_model(model, backend, threads=threads)
    conv, shape, kind = _io(session)
    x = load_images(input, shape) if conv else load_inputs(input, shape)
    session.start(x.shape[0])
    t0 = time.perf_counter()
    result = session.run(x)
    seconds = time.perf_counter() - t0
    if output is not None:
        buf = io.BytesIO()
        counts = np.array([result.spike_counts[k] for k in sorted(result.spike_counts)])
        np.savez(buf, outputs=result.outputs, spike_counts=counts, layers=np.array(sorted(result.spike_counts)), synops=np.array(result.synops))
        fmt.write_atomic(output, buf.getvalue())
    summary = result.summary()
    summary.update({"backend": backend_of(model), "spike_counts": result.spike_counts, "synops": result.synops,
                    "seconds": round(seconds, 6), "ms_per_step": 1e3 * seconds / max(1, result.steps),
                    "ms_per_inference": 1e3 * seconds / max(1, result.batch), "output_file": str(output) if output else None})
    if kind == "last":
        summary["predictions"] = np.argmax(result.outputs[:, -1], axis=1).tolist()
    emit(summary, as_json)
