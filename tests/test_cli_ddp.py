"""``spikeedge train convsnn`` and ``spikeedge prune sca`` under ``torchrun --nproc-per-node 2``
(gloo, CPU): rank 0 alone prints and writes, the record says how it was trained, and the
losses are those of one process on the same global batches to 2e-3.

Why not the weights: one process and two agree to float rounding per step (the sums are split
into per-rank parts), but Adam and the spike threshold amplify rounding: here the first step
already moves one weight whose true gradient is ~0 (8e-9 vs 4e-9: Adam divides by |g| + 1e-8)
by 3e-4 differently, a few steps later spikes flip and the weights differ by ~4e-3 after
an epoch (losses by 1.2e-4 relative). The exact, per-event comparison of SCA's masks is the
short run of ``tests/test_sca_ddp.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import call, one_json

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

COMMON = ["--task", "digits", "--width", "0.5", "--epochs", "1", "--batch-size", "128", "--seed", "3"]


def torchrun(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "spikeedge", *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_train_convsnn_on_two_processes(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    proc = torchrun(tmp_path, "train", "convsnn", *COMMON, "-o", "two.ckpt.npz")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("trained vgg") == 1  # rank 0 alone reports
    assert proc.stdout.count("two.ckpt.npz") == 1
    monkeypatch.chdir(tmp_path)
    rc, out, err = call(capsys, "train", "convsnn", *COMMON, "-o", "one.ckpt.npz", "--json")
    assert rc == 0, err
    from spikeedge.offline.checkpoint import load_checkpoint

    _, rec = load_checkpoint(tmp_path / "two.ckpt.npz", kind="convsnn")
    assert rec["training"]["data_parallel"] == {"processes": 2, "backend": "gloo", "device": "cpu"}
    np.testing.assert_allclose(rec["training"]["losses"], one_json(out)["training"]["losses"], rtol=2e-3)


def test_prune_sca_on_two_processes(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    args = ["prune", "sca", *COMMON, "--density", "0.25", "--finetune-epochs", "1", "--json"]
    proc = torchrun(tmp_path, *args, "-o", "two.ckpt.npz", "--report", "rep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = one_json(proc.stdout)  # one JSON document: rank 1 printed nothing
    assert (tmp_path / "rep" / "sca_record.json").is_file()
    monkeypatch.chdir(tmp_path)
    rc, out, err = call(capsys, *args, "-o", "one.ckpt.npz")
    assert rc == 0, err
    one = one_json(out)
    assert two["channels"]["kept"] == one["channels"]["kept"] == 20
    from spikeedge.offline.checkpoint import load_checkpoint

    model, rec = load_checkpoint(tmp_path / "two.ckpt.npz", kind="convsnn")
    assert rec["training"]["pruning"]["data_parallel"]["processes"] == 2
    assert rec["training"]["finetune"]["data_parallel"]["processes"] == 2
    assert model.cfg.plan[0] == 8 and sum(model.cfg.plan[i] for i in (1, 3, 4)) == 20  # shrunk widths; the stem is never pruned
    _, rec1 = load_checkpoint(tmp_path / "one.ckpt.npz", kind="convsnn")
    np.testing.assert_allclose(rec["training"]["pruning"]["losses"], rec1["training"]["pruning"]["losses"], rtol=2e-3)


def test_device_is_checked(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = call(capsys, "train", "convsnn", *COMMON, "-o", "x.ckpt.npz", "--device", "tpu")
    assert rc == 2 and "--device" in err and not (tmp_path / "x.ckpt.npz").exists()
    import torch

    if not torch.cuda.is_available():
        rc, out, err = call(capsys, "train", "convsnn", *COMMON, "-o", "x.ckpt.npz", "--device", "cuda")
        assert rc == 2 and "no CUDA GPU" in err and not (tmp_path / "x.ckpt.npz").exists()
