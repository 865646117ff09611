"""``spikeedge import``: a NIR graph (what snnTorch, Norse and other peers write) to a checkpoint
that ``export`` quantizes like any other (``offline/nir_import.py`` maps it; ``docs/interop.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import typer

from .common import JsonOpt, emit, in_range, one_thread_pool, require_offline


def import_model(
    model: Path = typer.Argument(..., help="A NIR graph (.nir), as snnTorch's export_to_nir or Norse's to_nir write it."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.npz), for 'spikeedge export'."),
    dt: Optional[float] = typer.Option(None, "--dt", callback=in_range(0, 1e3, lo_open=True), help="Time step in the file's time unit (seconds for snnTorch: 1e-4; Norse: 1e-3); default: the file's metadata 'dt'."),
    time_steps: Optional[int] = typer.Option(None, "--time-steps", callback=in_range(1, 10000), help="Conv / feed-forward imports: the steps each input is shown for (NIR has none; default: the file's metadata, else 10)."),
    input_peak: float = typer.Option(1.0, "--input-peak", callback=in_range(0, 1e9, lo_open=True), help="Largest |input| the model will see: sets the int8 export's input step."),
    as_json: bool = JsonOpt,
) -> None:
    """Map a NIR graph onto spikeedge's models and write a checkpoint; each difference is listed.

    What cannot be mapped exactly is refused in one line naming the node and why.

    Example: spikeedge import snntorch_net.nir --dt 1e-4 -o net.ckpt.npz
    """
    require_offline()
    from ..offline.checkpoint import save_checkpoint
    from ..offline.nir_import import import_nir

    one_thread_pool()
    imported = import_nir(model, dt=dt, time_steps=time_steps, input_peak=input_peak)
    save_checkpoint(imported.model, output, imported.record)
    result: Dict[str, Any] = {"checkpoint": str(output), "model": imported.kind, "dt": imported.record["training"]["dt"],
                              "nodes": imported.record["training"]["nodes"], "differences": imported.notes}
    if imported.kind == "folded":
        result["time_steps"] = imported.model.time_steps
    else:
        result["neurons"] = imported.model.cfg.n_neurons
    emit(result, as_json)
