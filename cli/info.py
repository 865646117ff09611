"""``spikeedge info``: what a bundle holds."""

from __future__ import annotations

from pathlib import Path

import typer

from ..runtime import bundle as fmt
from ..measure.summary import describe
from .common import JsonOpt, emit


def info(model: Path = typer.Argument(..., help="A bundle (.seb)."), as_json: bool = JsonOpt) -> None:
    """Layers, neurons, synapses, sparsity, footprint, schema version, checksum.

    Example: spikeedge info model.seb --json
    """
    emit(describe(fmt.load(model), model), as_json)
