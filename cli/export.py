"""``spikeedge export``: a checkpoint (or a bundle) to an int8 bundle, ONNX or TFLite step graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..runtime.bundle import GRAPHLESS_KINDS, STREAM_KINDS
from ..errors import SpikeedgeError
from .common import JsonOpt, LayoutOpt, emit, in_range, one_thread_pool, require_offline, task_of, warn

FORMATS = {"bundle": ".seb", "onnx": ".onnx", "tflite": ".tflite", "nir": ".nir"}


def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by 'spikeedge train' or 'spikeedge prune' (HRSNN or conv SNN), or a bundle (.seb) for --format onnx/tflite."),
    fmt_name: str = typer.Option("bundle", "--format", help="bundle (.seb, the event-driven runtime), onnx or tflite (one time step as a graph), or nir (the float model as a NIR graph, for snnTorch, Norse and other peers)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write (.seb, .onnx or .tflite)."),
    as_float: bool = typer.Option(False, "--float", help="onnx/tflite: float32 weight tensors (the int8 values dequantized) instead of int8 ones."),
    input_bits: int = typer.Option(16, "--input-bits", callback=in_range(8, 16), help="Bits of real-valued (direct-current) inputs: 8 or 16."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST folder, or an .npz to calibrate on instead of the statistics the checkpoint keeps of its training data."),
    layout: Optional[str] = LayoutOpt,
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Export a checkpoint that was never trained (straight out of 'spikeedge prune lnp'); refused otherwise."),
    dt: float = typer.Option(1e-4, "--dt", callback=in_range(0, 1e3, lo_open=True), help="--format nir: the time step the NIR neurons are written for (snnTorch's importer assumes 1e-4; Norse's from_nir takes dt)."),
    as_json: bool = JsonOpt,
) -> None:
    """Quantize to int8 and write the bundle or step graph atomically.

    Example: spikeedge export mg.ckpt.npz --format onnx -o mg.onnx (or --format nir -o mg.nir)
    """
    if fmt_name not in FORMATS:
        raise SpikeedgeError("--format: %r is not one of %s" % (fmt_name, ", ".join(FORMATS)))
    if as_float and fmt_name == "bundle":
        raise SpikeedgeError("--float: a bundle is int8 by design; --float applies to --format onnx or tflite")
    if input_bits not in (8, 16):
        raise SpikeedgeError("--input-bits: must be 8 or 16")
    if output.suffix.lower() != FORMATS[fmt_name]:
        raise SpikeedgeError("-o %s: a %s file should end in %s" % (output, fmt_name, FORMATS[fmt_name]))
    if not checkpoint.is_file():
        raise SpikeedgeError("%s: no such file" % checkpoint)
    if fmt_name == "nir":
        emit(_export_nir(checkpoint, output, dt), as_json)
        return
    if checkpoint.suffix == ".seb":
        if fmt_name == "bundle":
            raise SpikeedgeError("%s is already a bundle: --format onnx or tflite turns it into a step graph" % checkpoint)
        from ..runtime import bundle as fmt

        bundle: Any = fmt.load(checkpoint)
    else:
        bundle = _bundle_of_checkpoint(checkpoint, output if fmt_name == "bundle" else None, data, layout, input_bits, allow_untrained, fmt_name)
    if fmt_name == "bundle":
        emit({"bundle": str(output), "format": "bundle", "bytes": output.stat().st_size, "sha256": bundle.sha256}, as_json)
        return
    if getattr(bundle, "model", None) == "conv" and any(layer.kind in GRAPHLESS_KINDS for layer in bundle.layers):
        _no_graph(checkpoint, fmt_name, bundle)
    summary = _export_graph(bundle, fmt_name, output, as_float)
    emit({"output": str(output), "bundle_sha256": bundle.sha256, **summary}, as_json)


def _export_nir(checkpoint: Path, output: Path, dt: float) -> Any:
    """The float checkpoint as NIR (``offline/nir_export.py``); a bundle is int8 and is refused."""
    if checkpoint.suffix == ".seb":
        raise SpikeedgeError("%s: a bundle holds int8 weights; --format nir writes the float model: give its checkpoint" % checkpoint)
    require_offline()
    from ..offline.checkpoint import load_checkpoint
    from ..offline.nir_export import export_nir

    try:
        import nir  # noqa: F401
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("--format nir needs the peers extra: pip install 'spikeedge[peers]' (nir, h5py)") from None
    one_thread_pool()
    model, _ = load_checkpoint(checkpoint, kind="any")
    return export_nir(model, output, dt=dt)


def _no_resnet_graph(checkpoint: Path, fmt_name: str) -> None:
    raise SpikeedgeError("%s: a ResNet (residual-stream layers) has no %s step graph yet; export it as a bundle and run it on the event runtime"
                         % (checkpoint, "ONNX" if fmt_name == "onnx" else "TFLite"))


def _no_graph(checkpoint: Path, fmt_name: str, bundle: Any) -> None:
    if any(layer.kind in STREAM_KINDS for layer in bundle.layers):
        _no_resnet_graph(checkpoint, fmt_name)
    raise SpikeedgeError("%s: sum / average pooling (layer kind sum_pool) has no %s step graph yet; export it as a bundle and run it on "
                         "the event runtime" % (checkpoint, "ONNX" if fmt_name == "onnx" else "TFLite"))


def _bundle_of_checkpoint(checkpoint: Path, path: Optional[Path], data: Optional[str], layout: Optional[str], input_bits: int,
                          allow_untrained: bool, fmt_name: str = "bundle") -> Any:
    """Quantize a checkpoint; written to ``path`` when given (else only in memory). An HRSNN
    calibrates on the statistics its record keeps of its training data unless --data names a
    file (older checkpoints, which keep none, need it)."""
    import tempfile

    require_offline()
    from ..offline.checkpoint import load_checkpoint
    from ..offline.pipeline import export_bundle, export_conv_bundle, export_folded_bundle, is_trained

    one_thread_pool()
    model, record = load_checkpoint(checkpoint, kind="any")
    if fmt_name != "bundle" and record["model"] == "convsnn" and record["config"].get("arch") == "resnet":
        _no_resnet_graph(checkpoint, fmt_name)  # what can never be exported comes before what needs training first
    if not is_trained(record):
        if not allow_untrained:
            raise SpikeedgeError("%s was never trained (its readout would answer at chance): train it first "
                                 "('spikeedge train hrsnn --from %s'), or pass --allow-untrained" % (checkpoint, checkpoint))
        warn("%s was never trained; exporting it anyway (--allow-untrained)" % checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        target = path or Path(tmp) / "model.seb"
        if record["model"] == "convsnn":
            return export_conv_bundle(model, record, target, data=data, input_bits=input_bits)
        if record["model"] == "folded":  # imported from NIR: calibrated on the input peak it was imported with
            return export_folded_bundle(model, record, target, input_bits=input_bits)
        task = None
        if data is not None or "calibration" not in record:
            saved = record.get("data") or {}
            task = task_of(record.get("task", "mackey-glass"), data=data, layout=layout or saved.get("layout"), tau=saved.get("tau", 17))
        return export_bundle(model, record, task, target, input_bits=input_bits)


def _export_graph(bundle: Any, fmt_name: str, output: Path, as_float: bool) -> Any:
    from ..errors import MissingExtraError

    try:
        if fmt_name == "onnx":
            import onnx  # noqa: F401

            from ..offline.export_onnx import export_onnx

            return export_onnx(bundle, output, float_weights=as_float)
        import ai_edge_litert  # noqa: F401
        import flatbuffers  # noqa: F401

        from ..offline.export_tflite import export_tflite

        return export_tflite(bundle, output, float_weights=as_float)
    except ImportError as exc:
        raise MissingExtraError("--format %s needs the export-%s extra: pip install 'spikeedge[export-%s]' (%s)" % (fmt_name, fmt_name, fmt_name, exc)) from None
