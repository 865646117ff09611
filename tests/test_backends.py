"""Backends: the TFLite interpreter fallback and its messages, the card of a step graph, and
malformed graph files (refused in one line, never run)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spikeedge.offline.export_onnx import export_onnx
from spikeedge.offline.export_tflite import export_tflite
from spikeedge.runtime import backends
from spikeedge.runtime import bundle as fmt
from spikeedge.errors import BundleError, MissingExtraError, SpikeedgeError
from spikeedge.runtime.tflite_meta import read_metadata


@pytest.fixture(scope="module")
def bundle() -> Any:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_exact import random_model

    from spikeedge.offline.quantize import quantize_hrsnn

    model = random_model("direct", "subtract", n=40)
    x = np.random.default_rng(0).random((200, 3))
    return fmt.loads(fmt.dumps(quantize_hrsnn(model, x)))


@pytest.fixture
def files(bundle: Any, tmp_path: Path) -> Any:
    export_onnx(bundle, tmp_path / "m.onnx")
    export_tflite(bundle, tmp_path / "m.tflite")
    return tmp_path


def _no_litert(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)


def test_tflite_falls_back_to_tflite_runtime(files: Path, monkeypatch: Any) -> None:
    from ai_edge_litert.interpreter import Interpreter as Real

    used = []

    class Fallback(Real):  # what a board with only tflite-runtime provides, same API
        def __init__(self, *a: Any, **k: Any) -> None:
            used.append(True)
            super().__init__(*a, **k)

    pkg = types.ModuleType("tflite_runtime")
    mod = types.ModuleType("tflite_runtime.interpreter")
    mod.Interpreter = Fallback  # type: ignore[attr-defined]
    _no_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tflite_runtime", pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", mod)
    x = np.random.default_rng(1).random((2, 50, 3))
    got = backends.open_model(files / "m.tflite").run(x)
    assert used, "the fallback interpreter was not used"
    monkeypatch.undo()
    ref = backends.open_model(files / "m.tflite").run(x)
    assert np.array_equal(got.outputs, ref.outputs)


def test_no_interpreter_says_what_to_install(files: Path, monkeypatch: Any) -> None:
    _no_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(MissingExtraError) as err:
        backends.open_model(files / "m.tflite")
    assert "spikeedge[tflite]" in str(err.value) and "\n" not in str(err.value)


def test_tflite_runtime_under_numpy_2_is_explained(files: Path, monkeypatch: Any) -> None:
    """tflite-runtime wheels are built for numpy < 2: importing them under numpy 2 fails."""

    class Broken(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            raise AttributeError("_ARRAY_API not found (module compiled against numpy 1.x)")

    _no_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", Broken("tflite_runtime.interpreter"))
    with pytest.raises(MissingExtraError) as err:
        backends.open_model(files / "m.tflite")
    assert "numpy < 2" in str(err.value) and np.__version__ in str(err.value)


def test_old_interpreter_rejecting_an_operator_version_is_explained(files: Path, monkeypatch: Any) -> None:
    class Old:
        def __init__(self, *a: Any, **k: Any) -> None:
            raise ValueError("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be supported.")

    monkeypatch.setattr(backends, "tflite_interpreter_class", lambda: Old)
    with pytest.raises(MissingExtraError) as err:
        backends.open_model(files / "m.tflite")
    msg = str(err.value)
    assert "m.tflite" in msg and "FULLY_CONNECTED" in msg and "ai-edge-litert" in msg


def test_tflite_metadata_reader(files: Path, bundle: Any) -> None:
    meta = read_metadata((files / "m.tflite").read_bytes())
    card = json.loads(meta["spikeedge"].decode())
    assert card["bundle_sha256"] == bundle.sha256 and card["model"] == "hrsnn"
    with pytest.raises(ValueError):
        read_metadata(b"not a flatbuffer at all")
    blob = (files / "m.tflite").read_bytes()
    with pytest.raises(ValueError):
        read_metadata(blob[:40])  # truncated


@pytest.mark.parametrize("name,content,words", [
    ("bad.onnx", b"garbage", ["bad.onnx", "onnxruntime"]),
    ("bad.tflite", b"garbage garbage garbage", ["bad.tflite", "TFLite"]),
    ("model.pt", b"x", ["model.pt", ".seb"]),
])
def test_malformed_graph_files_are_refused(tmp_path: Path, name: str, content: bytes, words: Any) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SpikeedgeError) as err:
        backends.open_model(tmp_path / name)
    for w in words:
        assert w in str(err.value)


def test_onnx_without_card_or_with_a_newer_card_is_refused(files: Path, tmp_path: Path) -> None:
    import onnx

    m = onnx.load(str(files / "m.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "nocard.onnx"))
    with pytest.raises(BundleError, match="nocard.onnx.*not a spikeedge step graph"):
        backends.open_model(tmp_path / "nocard.onnx")
    m = onnx.load(str(files / "m.onnx"))
    card = json.loads(m.metadata_props[0].value)
    card["card_version"] = 99
    m.metadata_props[0].value = json.dumps(card)
    onnx.save(m, str(tmp_path / "future.onnx"))
    with pytest.raises(BundleError, match="future.onnx.*version 99"):
        backends.open_model(tmp_path / "future.onnx")


def test_backend_must_match_the_file(files: Path) -> None:
    with pytest.raises(SpikeedgeError, match="m.onnx.*'onnx'.*not 'tflite'"):
        backends.open_model(files / "m.onnx", "tflite")
    with pytest.raises(SpikeedgeError, match="--backend"):
        backends.open_model(files / "m.onnx", "cuda")
