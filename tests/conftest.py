"""Fixtures shared by several test modules."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine two threads spin and run many times slower.
    Modules that train or run torch models use it (``pytestmark``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: Any) -> Dict[str, Any]:
    """``spikeedge demo --quick --json --out DIR`` once per session (the CLI tests, test_cli.py and
    test_cli_contract.py, start from its model): its exit code, streams and folder."""
    from spikeedge.cli.app import main

    base = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    mp = pytest.MonkeyPatch()
    mp.chdir(base)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["demo", "--quick", "--json", "--out", "run"])
    finally:
        mp.undo()
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "dir": base / "run"}


@pytest.fixture
def demo_work(tmp_path: Path, monkeypatch: Any, demo: Dict[str, Any]) -> Path:
    """A fresh folder (the current directory) holding copies of the demo's model.seb and
    checkpoint, and a few input files, good and bad."""
    assert demo["rc"] == 0, demo["stderr"]
    monkeypatch.chdir(tmp_path)
    shutil.copy(demo["dir"] / "model.seb", "model.seb")
    shutil.copy(demo["dir"] / "hrsnn.ckpt.npz", "mg.ckpt.npz")
    x = 0.9 + 0.2 * np.sin(np.arange(50) / 5.0)
    np.savez("in.npz", x=x)
    np.savez("wide.npz", x=np.zeros((50, 3)))
    np.savez("nox.npz", y=x)
    np.savez("nan.npz", x=np.full(50, np.nan))
    Path("text.npz").write_text("not an npz archive\n")
    Path("fake.onnx").write_text("not an onnx model\n")
    Path("fake.tflite").write_bytes(b"not a tflite model at all")
    from spikeedge.offline.export_onnx import export_onnx
    from spikeedge.runtime import bundle as fmt

    export_onnx(fmt.load("model.seb"), "model.onnx")
    from results_records import make_record

    from spikeedge.results.store import Store

    with Store(tmp_path / "runs.sqlite") as store:  # two runs of one model, the second no worse
        store.add_runs([make_record(seed=1), make_record(seed=2)])
    return tmp_path


@pytest.fixture
def one_thread_pool() -> Iterator[None]:
    """Torch and numpy's BLAS on one thread each, as the CLI runs its offline commands
    (``cli.common.one_thread_pool``): on a busy two-core machine the full demo takes about a
    minute so, and several minutes with threads spinning against each other."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
