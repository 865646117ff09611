"""Runtime backends behind one interface: the event-driven numpy runtime (``.seb`` bundles),
onnxruntime (``.onnx`` step graphs) and TFLite (``.tflite`` step graphs, on ``ai-edge-litert``
or, where that is all a board has, ``tflite-runtime``).

``open_model(path, backend)`` returns an object with the ``Session`` interface (``start``,
``step``, ``run`` -> ``RunResult``, ``spike_counts``, ``synops``); the interpreters are
imported only when asked for, so the base install (numpy) never needs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import BundleError, MissingExtraError, SpikeedgeError
from .graph_session import GraphSession
from .stepgraph import CARD_KEY, check_card

BACKENDS = ("event", "onnx", "tflite")
SUFFIX = {".seb": "event", ".onnx": "onnx", ".tflite": "tflite"}


class BackendUnavailable(MissingExtraError):
    """The interpreter a backend needs is not installed or cannot run this model."""


def backend_of(path: Path) -> str:
    """The backend a model file is for, by its suffix."""
    kind = SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise SpikeedgeError("%s: unknown model file type %r (expected .seb, .onnx or .tflite)" % (path, path.suffix))
    return kind


def open_model(path: Any, backend: str = "auto", batch: int = 1, threads: int = 1, record_spikes: bool = False) -> Any:
    """A ready session for the model file ``path`` on ``backend`` ("auto": by file type)."""
    path = Path(path)
    if backend not in BACKENDS + ("auto",):
        raise SpikeedgeError("--backend: %r is not one of %s" % (backend, ", ".join(BACKENDS)))
    if not path.is_file():
        raise SpikeedgeError("%s: no such file" % path)
    kind = backend_of(path)
    if backend != "auto" and backend != kind:
        raise SpikeedgeError("%s: a %s file runs on backend %r, not %r (export it with --format %s)" % (
            path, path.suffix, kind, backend, "bundle" if backend == "event" else backend))
    if kind == "event":
        from . import bundle as fmt
        from .sessions import open_session

        return open_session(fmt.load(path), batch, record_spikes=record_spikes)
    graph = OnnxGraph(path, threads) if kind == "onnx" else TfliteGraph(path, threads)
    return GraphSession(graph, graph.card, batch, record_spikes=record_spikes)


# ----------------------------------------------------------------------------- onnxruntime


class OnnxGraph:
    """An ONNX step graph on onnxruntime's CPU provider."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("backend onnx needs onnxruntime: pip install 'spikeedge[onnx]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError("%s: onnxruntime cannot load it (%s)" % (path, str(exc).splitlines()[0][:200])) from None
        meta = self.sess.get_modelmeta().custom_metadata_map
        if CARD_KEY not in meta:
            raise BundleError("%s: not a spikeedge step graph (no %r metadata)" % (path, CARD_KEY))
        try:
            self.card = check_card(json.loads(meta[CARD_KEY]), str(path))
        except (ValueError, json.JSONDecodeError) as exc:
            raise BundleError(str(exc) if str(path) in str(exc) else "%s: %s" % (path, exc)) from None
        self.inputs = [i.name for i in self.sess.get_inputs()]
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.path = path

    def prepare(self, batch: int) -> None:
        pass

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        values = self.sess.run(self.outputs, {k: feeds[k] for k in self.inputs})
        return dict(zip(self.outputs, values))


# ----------------------------------------------------------------------------- TFLite


def tflite_interpreter_class() -> Any:
    """``Interpreter`` of ai-edge-litert, else of tflite-runtime (older boards), with a clear
    message when neither can be imported (tflite-runtime needs numpy < 2)."""
    errors: List[str] = []
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        errors.append("ai-edge-litert: %s" % exc)
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError as exc:
        msg = str(exc)
        if "numpy" in msg.lower() or int(np.__version__.split(".")[0]) >= 2:
            errors.append("tflite-runtime: %s (tflite-runtime is built for numpy < 2; this is numpy %s)" % (msg.splitlines()[0], np.__version__))
        else:
            errors.append("tflite-runtime: %s" % msg.splitlines()[0])
    except Exception as exc:  # tflite-runtime under numpy 2 fails with AttributeError/SystemError
        errors.append("tflite-runtime failed to load (%s; it is built for numpy < 2, this is numpy %s)" % (str(exc).splitlines()[0], np.__version__))
    raise BackendUnavailable("backend tflite needs an interpreter: pip install 'spikeedge[tflite]' (%s)" % "; ".join(errors))


class TfliteGraph:
    """A TFLite step graph; the card is read from the model's metadata."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from .tflite_meta import read_metadata

        blob = path.read_bytes()
        try:
            meta = read_metadata(blob)
        except ValueError as exc:
            raise BundleError("%s: not a TFLite model (%s)" % (path, exc)) from None
        if CARD_KEY not in meta:
            raise BundleError("%s: not a spikeedge step graph (no %r metadata)" % (path, CARD_KEY))
        try:
            self.card = check_card(json.loads(meta[CARD_KEY].decode("utf-8")), str(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(str(exc) if str(path) in str(exc) else "%s: %s" % (path, exc)) from None
        Interpreter = tflite_interpreter_class()
        try:
            self.interp = Interpreter(model_content=blob, num_threads=threads)
        except Exception as exc:
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            hint = " (an older TFLite interpreter may lack an operator version this file uses; use ai-edge-litert)" if "version" in text.lower() or "op" in text.lower() else ""
            raise BackendUnavailable("%s: the TFLite interpreter cannot load it: %s%s" % (path, text, hint)) from None
        self.path = path
        self.batch: Optional[int] = None
        self.in_idx = {d["name"]: d["index"] for d in self.interp.get_input_details()}
        self.out_idx = {d["name"]: d["index"] for d in self.interp.get_output_details()}

    def prepare(self, batch: int) -> None:
        if batch == self.batch:
            return
        for d in self.interp.get_input_details():
            shape = list(d["shape"])
            shape[0] = batch
            self.interp.resize_tensor_input(d["index"], shape, strict=False)
        self.interp.allocate_tensors()
        self.batch = batch

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name, idx in self.in_idx.items():
            self.interp.set_tensor(idx, np.ascontiguousarray(feeds[name], np.float32))
        self.interp.invoke()
        return {name: self.interp.get_tensor(idx) for name, idx in self.out_idx.items()}
