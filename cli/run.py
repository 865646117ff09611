"""``spikeedge run``: inference of a bundle on inputs from an .npz file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import typer

from ..runtime import bundle as fmt
from ..runtime.engine import Session
from ..runtime.errors import DataError, SpikeedgeError
from .common import JsonOpt, emit


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


def run(
    model: Path = typer.Argument(..., help="A bundle (.seb)."),
    input: Path = typer.Option(..., "--input", help=".npz with array x: (steps, inputs) or (batch, steps, inputs); conv models: images (n, C, H, W) or (C, H, W)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write outputs and spike counts here (.npz)."),
    backend: str = typer.Option("event", "--backend", help="event (onnx and tflite: not yet)."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the model on the event-driven runtime; print spikes and synaptic operations.

    Example: spikeedge run model.seb --input x.npz -o y.npz
    """
    if backend != "event":
        raise SpikeedgeError("--backend: %r is not available yet (this version runs 'event')" % backend)
    bundle = fmt.load(model)
    if isinstance(bundle, fmt.ConvBundle):  # T steps on each image
        x = load_images(input, bundle.input_shape)
    else:
        x = load_inputs(input, bundle.n_inputs)
    result = Session(bundle, x.shape[0]).run(x)
    if output is not None:
        buf = io.BytesIO()
        counts = np.array([result.spike_counts[k] for k in sorted(result.spike_counts)])
        np.savez(buf, outputs=result.outputs, spike_counts=counts, layers=np.array(sorted(result.spike_counts)), synops=np.array(result.synops))
        fmt.write_atomic(output, buf.getvalue())
    summary = result.summary()
    summary.update({"spike_counts": result.spike_counts, "synops": result.synops, "output_file": str(output) if output else None})
    if bundle.output == "last":
        summary["predictions"] = np.argmax(result.outputs[:, -1], axis=1).tolist()
    emit(summary, as_json)
