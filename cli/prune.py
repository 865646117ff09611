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

from ..runtime.errors import SpikeedgeError
from .common import JsonOpt, emit, err_console, out_console, require_offline, stages

app = typer.Typer(help="Prune models. Example: spikeedge prune lnp --neurons 500 -o lnp.ckpt.npz", no_args_is_help=True)


def _fraction(option: str, value: float) -> float:
    if not (0.0 < value <= 1.0):  # NaN fails too
        raise SpikeedgeError("%s: %s is not a kept fraction in (0, 1]" % (option, value))
    return value


@app.command("lnp")
def prune_lnp(
    ckpt: Optional[Path] = typer.Argument(None, help="Untrained HRSNN checkpoint to prune (or build one with --neurons)."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (the .npz checkpoint format, whatever the suffix)."),
    neurons: Optional[int] = typer.Option(None, "--neurons", help="Build a new HRSNN of this many neurons (default config) instead of reading CKPT."),
    inputs: int = typer.Option(1, "--inputs", help="Input channels of the HRSNN that --neurons builds."),
    target_synapses: float = typer.Option(0.5, "--target-synapses", help="Kept fraction of the recurrent synapses, in (0, 1]."),
    target_neurons: float = typer.Option(0.5, "--target-neurons", help="Kept fraction of the neurons, in (0, 1]."),
    max_iterations: int = typer.Option(100, "--max-iterations", help="Most LNP iterations (it stops earlier once settled)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for lnp_record.json and the plot lnp.png."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice (and for the network --neurons builds)."),
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
    _fraction("--target-synapses", target_synapses)
    _fraction("--target-neurons", target_neurons)
    if max_iterations < 1:
        raise SpikeedgeError("--max-iterations: need at least 1")
    if ckpt is not None and not ckpt.is_file():
        raise SpikeedgeError("%s: no such checkpoint" % ckpt)
    if output.is_dir():
        raise SpikeedgeError("--output: %s is a folder, not a file" % output)
    if report is not None and report.exists() and not report.is_dir():
        raise SpikeedgeError("--report: %s is a file, not a folder" % report)

    require_offline()
    from ..offline import lnp
    from ..offline.checkpoint import load_checkpoint, save_checkpoint
    from ..offline.hrsnn import HRSNN, HrsnnConfig
    from ..offline.lnp.report import clean, write_report

    warnings: List[str] = []
    if ckpt is not None:
        model, _ = load_checkpoint(ckpt)
        if bool((model.readout.weight != 0).any()) or bool((model.readout.bias != 0).any()):
            warnings.append("%s has a trained readout: LNP is meant for untrained networks; retrain the readout after pruning" % ckpt)
    else:
        model = HRSNN(HrsnnConfig(n_inputs=inputs, n_neurons=neurons, seed=seed))
    for line in warnings:
        err_console.print("warning: %s" % line, style="yellow", markup=False, highlight=False)

    cfg = lnp.LnpConfig(target_neurons=target_neurons, target_synapses=target_synapses, max_iterations=max_iterations, seed=seed)
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
