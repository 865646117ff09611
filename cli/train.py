"""``spikeedge train hrsnn``: build and train a heterogeneous recurrent SNN on a task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..runtime.errors import SpikeedgeError
from .common import JsonOpt, emit, err_console, require_offline, stages

app = typer.Typer(help="Train models. Example: spikeedge train hrsnn --task mackey-glass -o mg.ckpt.npz", no_args_is_help=True)


@app.command("hrsnn")
def train_hrsnn(
    task: str = typer.Option(..., "--task", help="mackey-glass, lorenz, rossler, digits, mnist or npz."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.ckpt.npz)."),
    neurons: int = typer.Option(500, "--neurons", help="Recurrent neurons."),
    readout: str = typer.Option("ridge", "--readout", help="ridge (readout only) or bptt (all weights)."),
    encoder: str = typer.Option("direct", "--encoder", help="direct, rate or delta."),
    epochs: int = typer.Option(10, "--epochs", help="BPTT epochs."),
    lr: float = typer.Option(2e-3, "--lr", help="BPTT learning rate."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder or the .npz file of task 'npz'."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice."),
    as_json: bool = JsonOpt,
) -> None:
    """Build a heterogeneous recurrent SNN and train it on a task.

    Example: spikeedge train hrsnn --task mackey-glass --neurons 500 -o mg.ckpt.npz
    """
    if readout not in ("ridge", "bptt"):
        raise SpikeedgeError("--readout: %r is not one of ridge, bptt" % readout)
    if encoder not in ("direct", "rate", "delta"):
        raise SpikeedgeError("--encoder: %r is not one of direct, rate, delta" % encoder)
    if neurons < 2:
        raise SpikeedgeError("--neurons: need at least 2")
    require_offline()
    from ..offline.checkpoint import save_checkpoint
    from ..offline.hrsnn import HrsnnConfig
    from ..offline.pipeline import score
    from ..offline.pipeline import train_hrsnn as run_train
    from ..offline.train import FloatStepper
    from ..tasks.registry import load_task

    spec = load_task(task, data=data, seed=seed)
    cfg = HrsnnConfig(n_neurons=neurons, encoder=encoder, seed=seed)
    if not as_json:
        err_console.print("training an HRSNN of %d neurons on %s (%s)" % (neurons, task, readout))
    with stages(epochs if readout == "bptt" else 1, quiet=as_json) as advance:
        progress = lambda done, total, msg: advance("epoch %d/%d %s" % (done, total, msg))  # noqa: E731
        model, record = run_train(spec, cfg, readout=readout, epochs=epochs, lr=lr, progress=progress)
    record["pruning"] = {"method": "none"}
    record["float_metric"] = score(FloatStepper(model), spec)
    save_checkpoint(model, output, record)
    emit({"checkpoint": str(output), "task": task, "neurons": neurons, **record}, as_json)

