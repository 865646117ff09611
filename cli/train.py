"""``spikeedge train hrsnn``: build and train a heterogeneous recurrent SNN on a task."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import SpikeedgeError
from .common import (
    TASKS_HELP,
    DataOpt,
    JsonOpt,
    LayoutOpt,
    Seed,
    TauOpt,
    WindowShiftOpt,
    WindowsOpt,
    WindowTestOpt,
    WindowTrainOpt,
    emit,
    err_console,
    in_range,
    one_thread_pool,
    require_offline,
    stages,
    task_of,
)

DeviceOpt = typer.Option("cpu", "--device", help="cpu or cuda (under torchrun: one GPU per process, cuda:LOCAL_RANK).")

app = typer.Typer(help="Train models. Example: spikeedge train hrsnn --task mackey-glass -o mg.ckpt.npz", no_args_is_help=True)


@app.command("hrsnn")
def train_hrsnn(
    task: str = typer.Option(..., "--task", help=TASKS_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.ckpt.npz)."),
    start: Optional[Path] = typer.Option(None, "--from", help="Train this HRSNN checkpoint (e.g. one 'spikeedge prune lnp' wrote) instead of building a new one; its inputs and readout are fitted to the task."),
    neurons: int = typer.Option(500, "--neurons", callback=in_range(2, 100000), help="Recurrent neurons. A new network only (--from keeps the checkpoint's)."),
    readout: str = typer.Option("ridge", "--readout", help="ridge (readout only), reservoir (readout only, through delayed trace taps, with taps, input gain and lambda chosen on held-out training data; runs on the numpy core) or bptt (all weights)."),
    encoder: str = typer.Option("direct", "--encoder", help="direct, rate or delta (a new network; not with --from)."),
    epochs: int = typer.Option(30, "--epochs", callback=in_range(1, 10000), help="Most BPTT epochs (it stops early when the validation loss stops improving)."),
    lr: float = typer.Option(2e-3, "--lr", callback=in_range(0, 10, lo_open=True), help="BPTT learning rate."),
    data: Optional[str] = DataOpt,
    layout: Optional[str] = LayoutOpt,
    tau: int = TauOpt,
    windows: Optional[int] = WindowsOpt,
    window_train: Optional[int] = WindowTrainOpt,
    window_test: Optional[int] = WindowTestOpt,
    window_shift: Optional[float] = WindowShiftOpt,
    seed: int = Seed(),
    as_json: bool = JsonOpt,
) -> None:
    """Build a heterogeneous recurrent SNN (or take a pruned one with --from) and train it on a task.

    Example: spikeedge train hrsnn --task mackey-glass --neurons 500 -o mg.ckpt.npz

    Example: spikeedge train hrsnn --from lnp.ckpt.npz --task digits --readout bptt -o digits.ckpt.npz
    """
    if readout not in ("ridge", "reservoir", "bptt"):
        raise SpikeedgeError("--readout: %r is not one of ridge, reservoir, bptt" % readout)
    if encoder not in ("direct", "rate", "delta"):
        raise SpikeedgeError("--encoder: %r is not one of direct, rate, delta" % encoder)
    if start is not None and not start.is_file():
        raise SpikeedgeError("--from %s: no such checkpoint" % start)
    require_offline()
    from ..offline.checkpoint import load_checkpoint, save_checkpoint
    from ..offline.hrsnn import HrsnnConfig
    from ..offline.pipeline import score, train_model
    from ..offline.pipeline import train_hrsnn as run_train
    from ..offline.train import FloatStepper

    one_thread_pool()
    spec = task_of(task, data=data, seed=seed, layout=layout, tau=tau, windows=windows, window_train=window_train,
                   window_test=window_test, window_shift=window_shift)
    parent = None
    if start is not None:
        model, parent = load_checkpoint(start)
        model.cfg.seed = seed
    if not as_json:
        err_console.print("training %s on %s (%s)" % ("%s (%d neurons)" % (start, model.cfg.n_neurons) if start else "an HRSNN of %d neurons" % neurons, task, readout), markup=False, highlight=False)
    with stages(epochs if readout == "bptt" else 1, quiet=as_json) as advance:
        progress = lambda done, total, msg: advance("epoch %d/%d %s" % (done, total, msg))  # noqa: E731
        if start is not None:
            model, record = train_model(model, spec, readout=readout, epochs=epochs, lr=lr, progress=progress)
        else:
            model, record = run_train(spec, HrsnnConfig(n_neurons=neurons, encoder=encoder, seed=seed), readout=readout, epochs=epochs, lr=lr, progress=progress)
    record["pruning"] = (parent or {}).get("pruning") or {"method": "none"}
    if start is not None:
        record["parent"] = {"checkpoint": start.name}
    record["float_metric"] = score(FloatStepper(model), spec)
    save_checkpoint(model, output, record)
    emit({"checkpoint": str(output), "task": task, "neurons": model.cfg.n_neurons, **record}, as_json)


@app.command("convsnn")
def train_convsnn(
    task: str = typer.Option(..., "--task", help="mnist, digits or mnist-clutter (MNIST with distractor fragments, generated)."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (.ckpt.npz)."),
    arch: str = typer.Option("vgg", "--arch", help="vgg or resnet (pre-activation)."),
    width: float = typer.Option(1.0, "--width", callback=in_range(0, 64, lo_open=True), help="Width multiplier of the default channel plan."),
    time_steps: int = typer.Option(4, "--time-steps", callback=in_range(1, 10000), help="Time steps T per image (direct encoding)."),
    neuron: str = typer.Option("lif", "--neuron", help="lif (decay 1 - 1/tau) or if (no leak)."),
    epochs: int = typer.Option(3, "--epochs", callback=in_range(1, 10000), help="Training epochs (BPTT)."),
    lr: float = typer.Option(2e-3, "--lr", callback=in_range(0, 10, lo_open=True), help="Adam learning rate (cosine decay)."),
    batch_size: int = typer.Option(64, "--batch-size", callback=in_range(1, 100000), help="Mini-batch size (global: under torchrun split over the processes)."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder (default: ../shared/data/mnist)."),
    seed: int = Seed("Seed for the weights and the batch order (the data split is fixed)."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Build a convolutional SNN (conv -> BatchNorm -> LIF) and train it with BPTT. Under
    'torchrun --nproc-per-node N -m spikeedge train convsnn ...' N processes train it with
    DistributedDataParallel; rank 0 prints and writes the checkpoint.

    Example: spikeedge train convsnn --task mnist --arch vgg --epochs 3 -o vgg.ckpt.npz
    """
    if arch not in ("vgg", "resnet"):
        raise SpikeedgeError("--arch: %r is not one of vgg, resnet" % arch)
    if neuron not in ("lif", "if"):
        raise SpikeedgeError("--neuron: %r is not one of lif, if" % neuron)
    if task not in ("mnist", "digits", "mnist-clutter"):
        raise SpikeedgeError("--task: %r is not one of mnist, digits, mnist-clutter" % task)
    if not width > 0 or time_steps < 1 or epochs < 1 or batch_size < 1:
        raise SpikeedgeError("--width must be > 0; --time-steps, --epochs and --batch-size at least 1")
    if output.is_dir():
        raise SpikeedgeError("--output: %s is a folder, not a file" % output)
    if device not in ("cpu", "cuda"):
        raise SpikeedgeError("--device: %r is not one of cpu, cuda" % device)
    require_offline()
    from ..offline import distributed
    from ..offline.checkpoint import save_checkpoint
    from ..offline.convsnn import describe
    from ..offline.convtrain import config_for, load_images
    from ..offline.convtrain import train_convsnn as run_train

    with distributed.session(device) as ctx:  # torchrun: one process group; rank 0 prints and writes
        images = load_images(task, data)
        cfg = config_for(images, arch=arch, width=width, time_steps=time_steps, neuron=neuron, seed=seed)
        with stages(epochs, quiet=as_json or not ctx.main) as advance:
            progress = lambda done, total, msg: advance("epoch %d/%d %s" % (done, total, msg))  # noqa: E731
            model, record = run_train(images, cfg, epochs=epochs, lr=lr, batch_size=batch_size, progress=progress, device=ctx.device)
        if ctx.main:
            if not as_json:
                err_console.print("trained %s on %s" % (describe(model), task), markup=False, highlight=False)
            record["pruning"] = {"method": "none"}
            save_checkpoint(model, output, record)
            emit({"checkpoint": str(output), "task": task, "arch": arch, "config": cfg.to_dict(), **record}, as_json)
