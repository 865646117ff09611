"""``spikeedge prune lnp``: Lyapunov Noise Pruning of an untrained HRSNN.

Nothing is written until pruning has finished: the report (``--report``) and then the checkpoint
are each written atomically, so Ctrl-C leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from ..errors import SpikeedgeError
from .common import JsonOpt, Seed, emit, err_console, in_range, one_thread_pool, out_console, require_offline, stages
from .train import DeviceOpt

app = typer.Typer(help="Prune models. Example: spikeedge prune lnp --neurons 500 -o lnp.ckpt.npz", no_args_is_help=True)


def _fraction(option: str, value: float) -> float:
    if not (0.0 < value <= 1.0):  # NaN fails too
        raise SpikeedgeError("%s: %s is not a kept fraction in (0, 1]" % (option, value))
    return value


@app.command("lnp")
def prune_lnp(
    ckpt: Optional[Path] = typer.Argument(None, help="Untrained HRSNN checkpoint to prune (or build one with --neurons)."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (the .npz checkpoint format, whatever the suffix)."),
    neurons: Optional[int] = typer.Option(None, "--neurons", callback=in_range(2, 100000), help="Build a new HRSNN of this many neurons (default config) instead of reading CKPT."),
    inputs: int = typer.Option(1, "--inputs", callback=in_range(1, 100000), help="Input channels of the HRSNN that --neurons builds."),
    regime: str = typer.Option("default", "--regime", help="Starting regime of the HRSNN that --neurons builds: default (HrsnnConfig's defaults, strongly contracting) or edge (recurrently driven, at the edge of chaos; docs/lnp.md)."),
    subgraph: bool = typer.Option(False, "--subgraph", help="No Kron fill-in and no regrowth: the pruned network is a subgraph of the start."),
    target_synapses: float = typer.Option(0.5, "--target-synapses", callback=in_range(0, 1, lo_open=True), help="Kept fraction of the recurrent synapses, in (0, 1]."),
    target_neurons: float = typer.Option(0.5, "--target-neurons", callback=in_range(0, 1, lo_open=True), help="Kept fraction of the neurons, in (0, 1]."),
    max_iterations: int = typer.Option(100, "--max-iterations", callback=in_range(1, 100000), help="Most LNP iterations (it stops earlier once settled)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for lnp_record.json and the plot lnp.png."),
    seed: int = Seed("Seed for every random choice (and for the network --neurons builds)."),
    as_json: bool = JsonOpt,
) -> None:
    """Lyapunov Noise Pruning of an untrained heterogeneous recurrent SNN: removes neurons and
    synapses down to the kept fractions while keeping the dynamics at the edge of chaos, then
    tunes the time constants. Train the pruned network afterwards.

    Example: spikeedge prune lnp --neurons 500 --target-synapses 0.5 --target-neurons 0.5 -o lnp.ckpt.npz
    """
    if (ckpt is None) == (neurons is None):
        raise SpikeedgeError("give either a checkpoint to prune or --neurons N to build a new HRSNN, not %s" % ("both" if neurons is not None else "neither"))
    if neurons is not None and neurons < 2:
        raise SpikeedgeError("--neurons: need at least 2")
    if inputs < 1:
        raise SpikeedgeError("--inputs: need at least 1")
    if ckpt is not None and inputs != 1:
        raise SpikeedgeError("--inputs: only with --neurons (a checkpoint keeps its own inputs)")
    if regime not in ("default", "edge"):
        raise SpikeedgeError("--regime: %r is not one of default, edge" % regime)
    if ckpt is not None and regime != "default":
        raise SpikeedgeError("--regime: only with --neurons (a checkpoint keeps its own parameters)")
    _fraction("--target-synapses", target_synapses)
    _fraction("--target-neurons", target_neurons)
    if max_iterations < 1:
        raise SpikeedgeError("--max-iterations: need at least 1")
    _check_paths(ckpt, output, report)

    require_offline()
    from ..offline import lnp
    from ..offline.checkpoint import load_checkpoint, save_checkpoint
    from ..offline.hrsnn import HRSNN
    from ..offline.lnp.regime import regime_config
    from ..offline.lnp.report import clean, write_report

    one_thread_pool()
    warnings: List[str] = []
    if ckpt is not None:
        model, _ = load_checkpoint(ckpt)
        if bool((model.readout.weight != 0).any()) or bool((model.readout.bias != 0).any()):
            warnings.append("%s has a trained readout: LNP is meant for untrained networks; retrain the readout after pruning" % ckpt)
    else:
        model = HRSNN(regime_config(regime, n_inputs=inputs, n_neurons=neurons, seed=seed))
    for line in warnings:
        err_console.print("warning: %s" % line, style="yellow", markup=False, highlight=False)

    cfg = lnp.LnpConfig(target_neurons=target_neurons, target_synapses=target_synapses, max_iterations=max_iterations, seed=seed, subgraph=subgraph)
    if not as_json:
        err_console.print("LNP: %d neurons, keeping %g of the neurons and %g of the synapses" % (model.cfg.n_neurons, target_neurons, target_synapses))

    # whatever the pruning libraries print (bayes_opt prints notes) is a log: it goes to stderr,
    # stdout holds only the result (with --json, exactly one JSON object)
    with stages(max_iterations, quiet=as_json) as advance, contextlib.redirect_stdout(sys.stderr):
        result = lnp.lnp_prune(model, cfg, progress=_progress(advance))

    summary = result.summary()
    files = {k: str(v) for k, v in write_report(result, report).items()} if report is not None else None
    record = clean({"pruning": {"method": "lnp", **summary}, "lnp_record": result.record})
    save_checkpoint(result.model, output, record)
    emit(
        clean({
            "output": str(output),
            "input": str(ckpt) if ckpt is not None else None,
            "neurons": summary["neurons"],
            "synapses": summary["synapses"],
            "start": summary["start"],
            "kept_neurons": summary["kept_neurons"],
            "kept_synapses": summary["kept_synapses"],
            "target_neurons": target_neurons,
            "target_synapses": target_synapses,
            "iterations": summary["iterations"],
            "stopped": summary["stopped"],
            "seconds": summary["seconds"],
            "phase_seconds": summary["phase_seconds"],
            "lyapunov_max": summary["lyapunov_max"],
            "spectral_radius": summary["spectral_radius"],
            "ipr": summary["ipr"],
            "seed": seed,
            "regime": regime if ckpt is None else None,
            "subgraph": subgraph,
            "report": files,
            "warnings": warnings,
        }),
        as_json,
        human=_show,
    )


def _progress(advance: Any) -> Any:
    def progress(iteration: int, total: int, row: Dict[str, Any]) -> None:
        lyap = row.get("lyapunov_max")
        lyap_text = "%.3f" % lyap if isinstance(lyap, (int, float)) and math.isfinite(lyap) else "?"
        advance("iteration %d/%d: %s neurons, %s synapses, lambda_max %s" % (iteration, total, row.get("neurons"), row.get("synapses"), lyap_text))

    return progress


def _show(s: Dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    def num(value: Any, fmt: str = "%.4g") -> str:
        return "-" if value is None else fmt % value

    table = Table(title=escape("LNP: %s" % s["output"]), show_header=True)
    for col in ("", "start", "kept", "fraction", "target"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("neurons", str(s["start"]["neurons"]), str(s["neurons"]), num(s["kept_neurons"], "%.3f"), "%g" % s["target_neurons"])
    table.add_row("synapses", str(s["start"]["synapses"]), str(s["synapses"]), num(s["kept_synapses"], "%.3f"), "%g" % s["target_synapses"])
    out_console.print(table)
    out_console.print(
        "iterations %d (%s), largest Lyapunov exponent %s, spectral radius %s, %.1f s"
        % (s["iterations"], s["stopped"], num(s["lyapunov_max"]), num(s["spectral_radius"]), s["seconds"] or 0.0),
        highlight=False,
    )
    if s["report"]:
        out_console.print("report: %s, %s" % (s["report"]["record"], s["report"]["plot"]), highlight=False, markup=False)


@app.command("sca")
def prune_sca(
    ckpt: Optional[Path] = typer.Argument(None, help="Convolutional SNN checkpoint ('spikeedge train convsnn'); or --task builds a new one."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint of the shrunk network to write."),
    density: float = typer.Option(0.25, "--density", callback=in_range(0, 1, lo_open=True), help="Kept fraction of the prunable channels, in (0, 1]."),
    epochs: int = typer.Option(4, "--epochs", callback=in_range(1, 10000), help="Training epochs with pruning (the density ramps down over the first 2/3)."),
    finetune_epochs: int = typer.Option(8, "--finetune-epochs", callback=in_range(0, 10000), help="Fine-tuning epochs of the shrunk network."),
    prunes_per_epoch: int = typer.Option(2, "--prunes-per-epoch", callback=in_range(1, 1000), help="Prune events per epoch."),
    min_fraction: float = typer.Option(0.125, "--min-fraction", callback=in_range(0, 1, lo_open=True), help="Per-layer minimum: at least this fraction of a layer's channels (and 2) stays."),
    task: Optional[str] = typer.Option(None, "--task", help="Instead of CKPT: build an untrained network for mnist, digits or mnist-clutter and prune it while training from scratch."),
    arch: str = typer.Option("vgg", "--arch", help="Architecture of the network --task builds: vgg or resnet."),
    width: float = typer.Option(1.0, "--width", callback=in_range(0, 64, lo_open=True), help="Width multiplier of the network --task builds."),
    method: str = typer.Option("sca", "--method", help="sca, or a baseline: bn-scale (|gamma|, Network Slimming) or random."),
    l1: float = typer.Option(1e-3, "--l1", callback=in_range(0, 10), help="bn-scale: L1 strength on the BatchNorm gammas during its sparsity training (the --epochs)."),
    batch_size: int = typer.Option(64, "--batch-size", callback=in_range(1, 100000), help="Mini-batch size (global: under torchrun split over the processes)."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder (default: ../shared/data/mnist)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for sca_record.json and sca_report.md (per-layer table)."),
    seed: int = Seed("Seed for every random choice."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Spiking Channel Activity pruning of a trained convolutional SNN during training: channels
    with the lowest spiking activity are masked (some regrow by |dL/dgamma|), then the network is
    shrunk physically to a narrower dense one and fine-tuned. Under 'torchrun --nproc-per-node N
    -m spikeedge prune sca ...' N processes train with DistributedDataParallel and prune the
    same channels; rank 0 prints and writes.

    Example: spikeedge prune sca vgg.ckpt.npz --density 0.25 -o vgg-sca.ckpt.npz --report sca-report
    """
    _fraction("--density", density)
    if not 0.0 <= min_fraction <= 1.0:
        raise SpikeedgeError("--min-fraction: %r is not in [0, 1]" % min_fraction)
    if epochs < 1 or finetune_epochs < 0 or prunes_per_epoch < 1 or batch_size < 1:
        raise SpikeedgeError("--epochs, --prunes-per-epoch and --batch-size need at least 1, --finetune-epochs at least 0")
    if method not in ("sca", "bn-scale", "random"):
        raise SpikeedgeError("--method: %r is not one of sca, bn-scale, random" % method)
    if not l1 >= 0.0:
        raise SpikeedgeError("--l1: %r is negative" % l1)
    if (ckpt is None) == (task is None):
        raise SpikeedgeError("give either a checkpoint to prune or --task T to build a new network, not %s" % ("both" if task is not None else "neither"))
    if task is not None and task not in ("mnist", "digits", "mnist-clutter"):
        raise SpikeedgeError("--task: %r is not one of mnist, digits, mnist-clutter" % task)
    if arch not in ("vgg", "resnet"):
        raise SpikeedgeError("--arch: %r is not one of vgg, resnet" % arch)
    if not width > 0:
        raise SpikeedgeError("--width: must be > 0")
    if device not in ("cpu", "cuda"):
        raise SpikeedgeError("--device: %r is not one of cpu, cuda" % device)
    _check_paths(ckpt, output, report)
    require_offline()
    from ..offline import distributed

    with distributed.session(device) as ctx:  # torchrun: one process group; rank 0 prints and writes
        _prune_sca(ckpt, output, density, epochs, finetune_epochs, prunes_per_epoch, min_fraction, task, arch, width, method, l1,
                   batch_size, data, report, seed, as_json, ctx)


def _prune_sca(ckpt: Optional[Path], output: Path, density: float, epochs: int, finetune_epochs: int, prunes_per_epoch: int,
               min_fraction: float, task: Optional[str], arch: str, width: float, method: str, l1: float, batch_size: int,
               data: Optional[str], report: Optional[Path], seed: int, as_json: bool, ctx: Any) -> None:
    import copy
    import json

    from ..offline import sca
    from ..offline.checkpoint import load_checkpoint, save_checkpoint
    from ..offline.convsnn import ConvSNN
    from ..offline.convtrain import config_for, load_images
    from ..runtime.bundle import write_atomic

    if ckpt is not None:
        model, base = load_checkpoint(ckpt, kind="convsnn")
        images = load_images(base.get("task", "mnist"), data)
        if images.shape != (model.cfg.in_channels, model.cfg.in_size, model.cfg.in_size):
            raise SpikeedgeError("%s: model input %s does not match task %s" % (ckpt, model.cfg.in_size, images.name))
    else:
        images = load_images(str(task), data)
        model = ConvSNN(config_for(images, arch=arch, width=width, seed=seed))
    source = str(ckpt) if ckpt is not None else "a new %s (%s)" % (arch, task)
    dense = copy.deepcopy(model)
    model.to(ctx.device)
    cfg = sca.ScaConfig(density=density, epochs=epochs, finetune_epochs=finetune_epochs, prunes_per_epoch=prunes_per_epoch, min_fraction=min_fraction,
                        batch_size=batch_size, seed=seed, l1=l1)
    if not as_json and ctx.main:
        err_console.print("%s pruning to %g of the channels over %d epochs" % (method, density, epochs), markup=False, highlight=False)
    with stages(epochs + finetune_epochs, quiet=as_json or not ctx.main) as advance:
        progress = lambda done, total, msg: advance("epoch %d/%d %s" % (done, total, msg))  # noqa: E731
        small, rec = sca.prune_channels(model, images, cfg, method=method, progress=progress)
    if not ctx.main:
        return
    small = small.cpu()
    layers = sca.layer_report(dense, small, images.x_test)
    files = None
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        files = {"record": str(report / "sca_record.json"), "table": str(report / "sca_report.md")}
        write_atomic(report / "sca_record.json", json.dumps({**rec, "layers": layers}, indent=1).encode("utf-8"))
        write_atomic(report / "sca_report.md", sca.report_markdown(layers, "%s pruning of %s (density %g)" % (method, source, density)).encode("utf-8"))
    record = {"task": images.name, "pruning": {k: v for k, v in rec.items() if k not in ("training", "finetune")},
              "training": {"pruning": rec["training"], "finetune": rec["finetune"]}, "parent": source,
              "float_metric": {"accuracy": rec["accuracy"]["final"]}, "parameters": small.n_parameters()}
    save_checkpoint(small, output, record)
    emit({"output": str(output), "input": source, "method": method, "density": density, "channels": rec["channels"],
          "accuracy": rec["accuracy"], "shrink_exact": rec["shrink_exact"], "layers": layers["layers"], "total": layers["total"],
          "seconds": rec["seconds"], "seed": seed, "report": files}, as_json, human=_show_sca)


def _show_sca(s: Dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape("%s: %s -> %s" % (s["method"], s["input"], s["output"])), show_header=True)
    for col in ("layer", "channels", "parameters", "dense MACs", "synaptic ops"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in s["layers"] + [{"layer": "total", "channels": ["", ""], **s["total"]}]:
        table.add_row(escape(r["layer"]), "%s/%s" % tuple(r["channels"]), "%s/%s" % tuple(r["params"]), "%s/%s" % tuple(r["macs"]),
                      "%.0f/%.0f" % tuple(r["synops"]))
    out_console.print(table)
    a = s["accuracy"]
    out_console.print("accuracy: dense %.4f, masked %.4f, shrunk %.4f, fine-tuned %.4f; kept %d of %d channels; %.1f s"
                      % (a["dense"], a["masked"], a["shrunk"], a["final"], s["channels"]["kept"], s["channels"]["total"], s["seconds"]),
                      highlight=False)
    if s["report"]:
        out_console.print("report: %s, %s" % (s["report"]["record"], s["report"]["table"]), highlight=False, markup=False)


def _check_paths(ckpt: Optional[Path], output: Path, report: Optional[Path]) -> None:
    """The input checkpoint exists, the output is not a folder, the report is not a file."""
    if ckpt is not None and not ckpt.is_file():
        raise SpikeedgeError("%s: no such checkpoint" % ckpt)
    if output.is_dir():
        raise SpikeedgeError("--output: %s is a folder, not a file" % output)
    if report is not None and report.exists() and not report.is_dir():
        raise SpikeedgeError("--report: %s is a file, not a folder" % report)
