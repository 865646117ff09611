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
    bundle = fmt.load(model)
    result = describe(bundle, model)
    from ..runtime.cores import CoreUnavailable, choose

    try:  # which core `run`/`profile`/`bench` would use here (SPIKEEDGE_CORE honoured), and why
        core, why = choose(bundle)
    except CoreUnavailable as exc:
        core, why = None, str(exc)
    result["core"] = {"core": core, "reason": why}
    emit(result, as_json)
