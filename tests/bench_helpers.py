"""What the bench tests share (tests/test_bench.py, tests/test_bench_board.py,
tests/test_bench_remote.py): the small Mackey-Glass model in its three forms, sessions with a
hook inside chosen inferences, private copies of the board fixture trees, atomic sensor writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict

from spikeedge.runtime import backends
from spikeedge.runtime import bundle as fmt


HERE = Path(__file__).resolve().parent
BOARDS = HERE / "fixtures" / "boards"


def mackey_glass_files(folder: Path) -> Dict[str, Path]:
    """A small recurrent SNN trained on Mackey-Glass (one input, one output: it can forecast
    autoregressively), as a bundle, an ONNX and a TFLite file in ``folder``."""
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.offline.export_tflite import export_tflite
    from spikeedge.offline.hrsnn import HrsnnConfig
    from spikeedge.offline.pipeline import calibration_inputs, train_hrsnn
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass", repeats=3)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=40, seed=0))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, calibration_inputs(task), output=task.output)))
    fmt.save(bundle, folder / "m.seb")
    export_onnx(bundle, folder / "m.onnx")
    export_tflite(bundle, folder / "m.tflite")
    return {"event": folder / "m.seb", "onnx": folder / "m.onnx", "tflite": folder / "m.tflite"}


class Wrapped:
    """A real session, with something done at chosen ``start()`` calls (one per inference):
    ``hooks[k]()`` runs inside the k-th inference (counted from 1, warm-up included)."""

    def __init__(self, session: Any, hooks: Dict[int, Any]) -> None:
        self.__dict__["_s"] = session
        self.__dict__["_hooks"] = hooks
        self.__dict__["starts"] = 0

    def start(self, *a: Any, **kw: Any) -> None:
        self.__dict__["starts"] += 1
        self._s.start(*a, **kw)
        hook = self._hooks.get(self.starts)
        if hook is not None:
            hook()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._s, name, value)


def wrap_sessions(monkeypatch: Any, hooks: Dict[int, Any]) -> None:
    real = backends.open_model
    monkeypatch.setattr(backends, "open_model", lambda *a, **kw: Wrapped(real(*a, **kw), hooks))


def board_tree(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(str(BOARDS / name), str(tmp_path / name)))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(str(tmp), str(path))
