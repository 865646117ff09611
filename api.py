"""spikeedge's Python API for notebooks and scripts: ``import spikeedge.api as se``.

Thin functions over the library the ``spikeedge`` commands use (nothing is re-implemented here),
named after the commands: ``build_hrsnn``/``build_convsnn`` (what ``prune lnp --neurons`` and
``train convsnn`` build), ``prune_lnp``/``prune_sca`` (``prune lnp``/``prune sca``),
``train_readout``/``train_bptt``/``train_convsnn`` (``train``), ``quantize`` + ``save``
(``export --format bundle``), ``export_graph`` (``export --format onnx|tflite``), ``load`` +
``open_session`` (what ``run``, ``eval`` and ``bench`` open), ``evaluate`` (``eval``).
A runnable walk-through: ``docs/api.md`` (``tests/test_api.py`` runs its code blocks).

Every transform returns ``(model, record)``: the new model and a JSON-able record of what was done
so far (task, pruning, training). Pass the record on to the next step; ``quantize`` writes it into
the bundle's provenance and ``save_checkpoint`` into the checkpoint, as the commands do.

Board or workstation: importing this module needs numpy only. ``load``, ``open_session``,
``load_task`` and ``evaluate`` of a bundle work on a board (``pip install spikeedge``); building,
pruning, training, quantizing and exporting import torch when called (the ``offline`` extra) and
raise ``MissingExtraError`` in one line where it is missing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .errors import MissingExtraError, ModelError
from .runtime import bundle as _fmt
from .runtime.sessions import AnySession
from .runtime.sessions import open_session as _open_session
from .tasks.registry import load_task as _load_task

Record = Dict[str, Any]
PathLike = Union[str, Path]

__all__ = [
    "load_task", "load_images", "build_hrsnn", "build_convsnn", "prune_lnp", "prune_sca", "train_readout", "train_bptt",
    "train_convsnn", "evaluate", "quantize", "save", "load", "export_graph", "open_session", "save_checkpoint",
    "load_checkpoint", "identity",
]


def _offline(what: str) -> None:
    """torch is the ``offline`` extra: refuse in one line where it is missing (as the CLI does)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("%s needs the offline extra (torch): pip install 'spikeedge[offline]'" % what) from None


# ----------------------------------------------------------------------------- data


def load_task(name: str, **options: Any) -> Any:
    """A task by its CLI name (``mackey-glass``, ``lorenz``, ``rossler``, ``digits``, ``mnist``,
    ``npz``): a ``ForecastTask`` (``.windows``) or a ``ClassifyTask`` (``.x_train`` ... as
    sequences). ``options``: ``repeats`` (forecast windows; NeuroBench scores 30), ``steps`` (time
    steps per image), ``tau`` (Mackey-Glass delay), ``data`` (MNIST folder or ``.npz``), ``seed``.
    Torch-free: works on a board."""
    return _load_task(name, **options)


def load_images(task: str = "digits", data: Optional[str] = None, limit: Optional[int] = None) -> Any:
    """The fixed split of an image task (``digits`` or ``mnist``) as tensors (``ImageData``), what
    conv SNNs train and prune on. ``limit``: keep the first ``limit`` training and test images
    (the split is in file order) for a quick run in a notebook."""
    _offline("load_images")
    from .offline.convtrain import load_images as _load

    images = _load(task, data)
    if limit is not None:
        images.x_train, images.y_train = images.x_train[:limit], images.y_train[:limit]
        images.x_test, images.y_test = images.x_test[:limit], images.y_test[:limit]
    return images


# ----------------------------------------------------------------------------- build


def build_hrsnn(neurons: int = 500, inputs: int = 1, outputs: int = 1, seed: int = 0, **config: Any) -> Any:
    """A random, untrained heterogeneous recurrent SNN (``offline.hrsnn.HRSNN``). ``config``: any
    other ``HrsnnConfig`` field (``encoder``, ``tau_mem_mean`` ... time constants in time steps,
    decay ``exp(-1/tau)``). The training functions fit the input and readout sizes to the task,
    so ``inputs``/``outputs`` matter only when you step the float model yourself."""
    _offline("build_hrsnn")
    from .offline.hrsnn import HRSNN, HrsnnConfig

    if neurons < 2:
        raise ModelError("build_hrsnn: need at least 2 neurons, got %d" % neurons)
    return HRSNN(HrsnnConfig(n_neurons=neurons, n_inputs=inputs, n_outputs=outputs, seed=seed, **config))


def build_convsnn(images: Any, arch: str = "vgg", width: float = 1.0, time_steps: int = 4, neuron: str = "lif",
                  seed: int = 0, **config: Any) -> Any:
    """An untrained convolutional SNN (``offline.convsnn.ConvSNN``) sized for ``images`` (from
    ``load_images``): ``arch`` vgg or resnet, ``width`` multiplies the default channel plan,
    ``time_steps`` per image. ``config``: any other ``ConvConfig`` field (its ``tau`` decays by
    ``1 - 1/tau`` per step, not the HRSNN's ``exp(-1/tau)``)."""
    _offline("build_convsnn")
    from .offline.convsnn import ConvSNN
    from .offline.convtrain import config_for

    return ConvSNN(config_for(images, arch=arch, width=width, time_steps=time_steps, neuron=neuron, seed=seed, **config))


# ----------------------------------------------------------------------------- prune


def prune_lnp(model: Any, target_neurons: float = 0.5, target_synapses: float = 0.5, record: Optional[Record] = None,
              progress: Any = None, **config: Any) -> Tuple[Any, Record]:
    """Lyapunov Noise Pruning of an *untrained* HRSNN (no task data; ``docs/lnp.md``): keeps the
    given fractions of neurons and recurrent synapses. ``config``: any other ``LnpConfig`` field
    (``max_iterations``, ``bo_evaluations``, ``seed``, the ablation switches). ``model`` is not
    changed. Returns (pruned model, record with ``pruning`` and ``lnp_record``); train after."""
    _offline("prune_lnp")
    from .offline.lnp import LnpConfig, lnp_prune
    from .offline.lnp.report import clean

    for name, value in (("target_neurons", target_neurons), ("target_synapses", target_synapses)):
        if not 0.0 < value <= 1.0:
            raise ModelError("prune_lnp: %s %r is not a kept fraction in (0, 1]" % (name, value))
    result = lnp_prune(model, LnpConfig(target_neurons=target_neurons, target_synapses=target_synapses, **config), progress=progress)
    out = dict(record or {})
    out.update(clean({"pruning": {"method": "lnp", **result.summary()}, "lnp_record": result.record}))
    return result.model, out


def prune_sca(model: Any, images: Any, density: float = 0.25, method: str = "sca", record: Optional[Record] = None,
              progress: Any = None, **config: Any) -> Tuple[Any, Record]:
    """Spiking Channel Activity pruning of a (trained) conv SNN while it trains on ``images``,
    then the physical shrink and fine-tuning (``docs/sca.md``). ``density``: kept fraction of the
    prunable channels; ``method``: sca, bn-scale or random (the baselines). ``config``: any other
    ``ScaConfig`` field (``epochs``, ``finetune_epochs``, ``batch_size``, ``seed`` ...). ``model``
    is not changed (a copy is pruned). Returns (shrunk model, record), the record as ``prune sca``
    writes it."""
    _offline("prune_sca")
    from .offline import sca

    cfg = sca.ScaConfig(density=density, **config)
    small, rec = sca.prune_channels(copy.deepcopy(model), images, cfg, method=method, progress=progress)
    out = dict(record or {})
    out.update({"task": images.name, "pruning": {k: v for k, v in rec.items() if k not in ("training", "finetune")},
                "training": {"pruning": rec["training"], "finetune": rec["finetune"]},
                "float_metric": {"accuracy": rec["accuracy"]["final"]}, "parameters": small.n_parameters()})
    return small, out


# ----------------------------------------------------------------------------- train


def _train_hrsnn(model: Any, task: Any, readout: str, record: Optional[Record], **options: Any) -> Tuple[Any, Record]:
    from .offline.pipeline import train_model

    trained, rec = train_model(copy.deepcopy(model), task, readout=readout, **options)
    out = dict(record or {})
    out.update(rec)
    out.setdefault("pruning", {"method": "none"})
    return trained, out


def train_readout(model: Any, task: Any, record: Optional[Record] = None) -> Tuple[Any, Record]:
    """Fit the HRSNN's readout by ridge regression on ``task`` (the recurrent weights stay as
    built or pruned: the reservoir recipe, ``train hrsnn --readout ridge``). The input and readout
    sizes are fitted to the task first. ``model`` is not changed. Returns (model, record)."""
    _offline("train_readout")
    return _train_hrsnn(model, task, "ridge", record)


def train_bptt(model: Any, task: Any, epochs: int = 10, lr: float = 2e-3, record: Optional[Record] = None,
               progress: Any = None) -> Tuple[Any, Record]:
    """Train every HRSNN weight through time with the surrogate gradient (``train hrsnn
    --readout bptt``), the sparsity mask fixed; starts from the ridge readout on forecasts.
    ``model`` is not changed. Returns (model, record)."""
    _offline("train_bptt")
    return _train_hrsnn(model, task, "bptt", record, epochs=epochs, lr=lr, progress=progress)


def train_convsnn(model: Any, images: Any, epochs: int = 3, lr: float = 2e-3, batch_size: int = 64,
                  record: Optional[Record] = None, progress: Any = None) -> Tuple[Any, Record]:
    """Train a conv SNN with BPTT (Adam, cosine decay; ``train convsnn``). ``model`` is not
    changed. Returns (model, record with the test accuracy as ``float_metric``)."""
    _offline("train_convsnn")
    from .offline.convtrain import accuracy, fit

    trained = copy.deepcopy(model)
    training = fit(trained, images, epochs, lr=lr, batch_size=batch_size, seed=trained.cfg.seed, progress=progress)
    out = dict(record or {})
    out.update({"task": images.name, "training": training, "parameters": trained.n_parameters(),
                "float_metric": {"accuracy": accuracy(trained, images.x_test, images.y_test)}})
    out.setdefault("pruning", {"method": "none"})
    return trained, out


# ----------------------------------------------------------------------------- score


def evaluate(model: Any, task: Any) -> Dict[str, Any]:
    """The task metric (what ``eval`` prints) of a float model, a bundle or an open session:
    sMAPE over the forecast windows, accuracy on a classification task or an ``ImageData``."""
    if isinstance(model, (_fmt.Bundle, _fmt.ConvBundle)):
        model = _open_session(model)
    if hasattr(task, "x_train") and not isinstance(task.x_test, np.ndarray):  # ImageData: a conv SNN's test images
        x, y = task.x_test.numpy(), task.y_test.numpy()
        if hasattr(model, "infer_images"):
            logits = np.concatenate([model.infer_images(x[i:i + 256]) for i in range(0, len(x), 256)])
            return {"accuracy": float(np.mean(logits.argmax(1) == y))}
        from .offline.convtrain import accuracy

        return {"accuracy": accuracy(model, task.x_test, task.y_test)}
    if not hasattr(model, "start"):  # a float HRSNN: its torch stepper
        _offline("evaluate of a float model")
        from .offline.train import FloatStepper

        model = FloatStepper(model)
    from .tasks.protocols import classify, forecast_smape

    if task.kind == "forecast":
        return forecast_smape(model, task.windows)
    return classify(model, task.x_test, task.y_test)


# ----------------------------------------------------------------------------- quantize, save, open


def quantize(model: Any, calibration: Any, record: Optional[Record] = None, input_bits: int = 16) -> Any:
    """Post-training int8 quantization to a bundle (in memory; ``save`` writes it), as ``export
    --format bundle`` does (``docs/quantization.md``). ``calibration``: the task (its training
    inputs set the input scale: a task, an ``ImageData``) or an array of raw inputs. ``record``
    goes into the bundle's provenance."""
    _offline("quantize")
    from . import __version__
    from .offline.hrsnn import HRSNN

    rec = record or {}
    prov = {"task": rec.get("task"), "training": rec.get("training"), "pruning": rec.get("pruning"), "spikeedge": __version__}
    if isinstance(model, HRSNN):
        from .offline.pipeline import calibration_inputs
        from .offline.quantize import quantize_hrsnn

        x = calibration_inputs(calibration) if hasattr(calibration, "kind") else np.asarray(calibration)
        output = getattr(calibration, "output", "sequence")
        return quantize_hrsnn(model, x, input_bits=input_bits, output=output, provenance=prov)
    from .offline.convsnn import fold
    from .offline.quantize_conv import quantize_folded

    x = calibration.x_train[:500].numpy() if hasattr(calibration, "x_train") else np.asarray(calibration)
    return quantize_folded(fold(model), x, input_bits=input_bits, provenance=dict(prov, parent=rec.get("parent")))


def save(bundle: Any, path: PathLike) -> Any:
    """Write ``bundle`` to ``path`` (``.seb``) atomically and return it as loaded back, so its
    ``sha256`` (the model's identity in ``info``, ``bench`` and the results store) is set."""
    _fmt.save(bundle, Path(path))
    return _fmt.load(Path(path))


def load(path: PathLike) -> Any:
    """Read a ``.seb`` bundle, checking magic, checksum, schema and every record (``BundleError``
    in one line otherwise). Torch-free."""
    return _fmt.load(Path(path))


def open_session(bundle: Any, batch: int = 1, **options: Any) -> AnySession:
    """A runtime session of a bundle (or of a ``.seb`` path) with ``batch`` streams: ``start(batch)``,
    ``step(x)`` ((batch, n_inputs) -> (batch, n_outputs)), ``run(xs)``, counters
    (``docs/runtime.md``). Torch-free: the same object runs on the board."""
    if isinstance(bundle, (str, Path)):
        bundle = load(bundle)
    return _open_session(bundle, batch, **options)


def export_graph(bundle: Any, path: PathLike, float_weights: bool = False) -> Dict[str, Any]:
    """One time step of ``bundle`` as an int8 ONNX (``.onnx``) or TFLite (``.tflite``) graph, by
    the file's suffix (``export --format onnx|tflite``; the export-onnx / export-tflite extras).
    Returns the exporter's summary."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".onnx", ".tflite"):
        raise ModelError("export_graph: %s should end in .onnx or .tflite" % path)
    name = suffix[1:]
    try:
        if name == "onnx":
            from .offline.export_onnx import export_onnx as run
        else:
            from .offline.export_tflite import export_tflite as run
        return run(bundle, path, float_weights=float_weights)
    except ImportError as exc:
        raise MissingExtraError("export_graph to %s needs the export-%s extra: pip install 'spikeedge[export-%s]' (%s)"
                                % (name, name, name, exc)) from None


def save_checkpoint(model: Any, path: PathLike, record: Optional[Record] = None) -> None:
    """Write a float model and its record as a checkpoint (``.ckpt.npz``, no pickle): what every
    CLI command reads (``export``, ``prune``, ``eval``)."""
    _offline("save_checkpoint")
    from .offline.checkpoint import save_checkpoint as _save

    _save(model, path, record or {})


def load_checkpoint(path: PathLike) -> Tuple[Any, Record]:
    """Rebuild a checkpoint's model (HRSNN or conv SNN) and its record."""
    _offline("load_checkpoint")
    from .offline.checkpoint import load_checkpoint as _load

    return _load(path, kind="any")


def identity(path: PathLike) -> Dict[str, Any]:
    """What names a model file: ``file_sha256``, the sha256 of the file itself (for a bundle its
    identity: ``info``, ``bench``, the results store and ``flash`` call it by this), and
    ``bundle_sha256``, the bundle the file holds (a bundle: the same digest; an ``.onnx`` or
    ``.tflite`` step graph: its card's source bundle). Torch-free."""
    from .runtime.backends import backend_of, open_model

    path = Path(path)
    if backend_of(path) == "event":
        bundle_digest = load(path).sha256
    else:
        bundle_digest = open_model(path).card.get("bundle_sha256")
    return {"path": str(path), "bundle_sha256": bundle_digest, "file_sha256": _fmt.file_sha256(path)}
