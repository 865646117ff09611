"""``spikeedge export``: a checkpoint to an int8 bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..runtime.errors import SpikeedgeError
from .common import JsonOpt, emit, require_offline


def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by 'spikeedge train' or 'spikeedge prune' (HRSNN or conv SNN)."),
    fmt: str = typer.Option("bundle", "--format", help="bundle (onnx and tflite: not yet)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write (.seb)."),
    input_bits: int = typer.Option(16, "--input-bits", help="Bits of real-valued (direct-current) inputs: 8 or 16."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder or .npz for calibration data."),
    as_json: bool = JsonOpt,
) -> None:
    """Quantize to int8 and write the bundle atomically.

    Example: spikeedge export mg.ckpt.npz --format bundle -o mg.seb
    """
    if fmt != "bundle":
        raise SpikeedgeError("--format: %r is not available yet (this version exports 'bundle')" % fmt)
    if input_bits not in (8, 16):
        raise SpikeedgeError("--input-bits: must be 8 or 16")
    require_offline()
    from ..offline.checkpoint import load_checkpoint
    from ..offline.pipeline import export_bundle, export_conv_bundle
    from ..tasks.registry import load_task

    model, record = load_checkpoint(checkpoint, kind="any")
    if record["model"] == "convsnn":
        if model.cfg.arch != "vgg":
            raise SpikeedgeError("%s: a %s-style conv SNN has no int8 export yet (VGG-style only)" % (checkpoint, model.cfg.arch))
        bundle = export_conv_bundle(model, record, output, data=data, input_bits=input_bits)
    else:
        task = load_task(record.get("task", "mackey-glass"), data=data)
        bundle = export_bundle(model, record, task, output, input_bits=input_bits)
    emit({"bundle": str(output), "bytes": output.stat().st_size, "sha256": bundle.sha256}, as_json)
