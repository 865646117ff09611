"""End to end on an emulated arm64 Raspberry Pi OS board (``tests/arm64_board.py``): Debian 12
arm64 under qemu-user-static (a Cortex-A72, a Pi 4 core), sshd running inside it. A pruned HRSNN
bundle is flashed to it with ``spikeedge flash``'s fleet code, which installs the runtime there
offline from aarch64 cp311 wheels; the board then profiles the model and its spike rates,
synaptic operations and spikes per step must equal this machine's run exactly (the integer
runtime is deterministic across architectures). Timings differ, and are only reported.

Skipped, with the reason, where this machine cannot run arm64 code (no binfmt_misc, no
qemu-user-static or debootstrap, no root) or cannot build the root or fetch the wheels (no
network). The first run builds the cached root (about 5 minutes); later runs take about a
minute or two.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from required import skip_unless_required  # noqa: E402
from arm64_board import QEMU_CPU, Unavailable, build_root, remote_uname, start_board  # noqa: E402

pytest.importorskip("asyncssh", reason="deploying needs asyncssh (the deploy extra)")
pytest.importorskip("torch", reason="making the bundle needs torch (the offline extra)")

from spikeedge.deploy.flash import Options, probe  # noqa: E402
from spikeedge.deploy.fleet import Access, run_fleet  # noqa: E402
from spikeedge.deploy.ssh import connect  # noqa: E402
from spikeedge.deploy.targets import Target  # noqa: E402
from spikeedge import __version__  # noqa: E402

pytestmark = pytest.mark.slow

REMOTE_DIR = "/root/spikeedge-test"
SAMPLES = 2  # qemu runs numpy some 10-50x slower than this machine: keep the profile small


def make_pruned_bundle(path: Path, seed: int = 0) -> Path:
    """A small HRSNN for one input (Mackey-Glass), magnitude-pruned from 40 to 30 neurons, int8."""
    from test_runtime_exact import random_model

    from spikeedge.offline.baselines import prune_magnitude
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt

    dense = random_model("direct", "subtract", n=40, n_inputs=1, seed=seed)
    pruned, record = prune_magnitude(dense, 30, 300)
    calib = np.random.default_rng(seed).random((100, 1))
    fmt.save(quantize_hrsnn(pruned, calib, provenance={"pruning": record}), path)
    return path


@pytest.fixture(scope="module")
def board(tmp_path_factory: Any) -> Any:
    """The cached arm64 root (with gcc and the Python headers: it is also the build root of the
    board's compiled core), sshd started inside it, its host key recorded once."""
    t0 = time.time()
    work = tmp_path_factory.mktemp("arm64")
    try:
        root = build_root()
        built = time.time() - t0
        # the root is cached, not what a test leaves in it: a fresh flash installs this tree's runtime
        shutil.rmtree(root / REMOTE_DIR.lstrip("/"), ignore_errors=True)
        server = start_board(root, work / "keys")
    except Unavailable as exc:
        skip_unless_required("no emulated arm64 board: %s" % exc)
    known = work / "known_hosts"
    target = Target("pi-emulated", "127.0.0.1", server.port, server.user, str(server.client_key), "/usr/bin/python3")
    try:
        machine = remote_uname(server, known)  # records the host key (trust on first use, explicit)
        info = asyncio.run(_probe(target, known))
        yield {"server": server, "target": target, "known": known, "machine": machine, "info": info, "root": root,
               "work": work, "root_seconds": built, "started": time.time() - t0}
    finally:
        server.stop()
        shutil.rmtree(root / REMOTE_DIR.lstrip("/"), ignore_errors=True)


async def _probe(target: Target, known: Path) -> Dict[str, Any]:
    conn = await connect(target, known, timeout=60)
    try:
        return await probe(conn)
    finally:
        await conn.close()


async def _remote(target: Target, known: Path, argv: Any) -> Any:
    conn = await connect(target, known, timeout=60)
    try:
        return await conn.run(argv, check=False)
    finally:
        await conn.close()


def local_profile(model: Path, samples: int) -> Dict[str, Any]:
    """This machine's profile on the inputs ``spikeedge profile --task mackey-glass --samples N`` uses."""
    from spikeedge.runtime.backends import open_model
    from spikeedge.measure.profile import profile_model
    from spikeedge.tasks.registry import load_task

    spec = load_task("mackey-glass", repeats=max(1, min(samples, 30)))
    xs = np.stack([w.train_x for w in spec.windows]).reshape(len(spec.windows), -1, 1)[:samples]
    return profile_model(open_model(model, "auto"), xs)


def test_board_is_an_arm64_debian_12_with_python_3_11(board: Any) -> None:
    assert board["machine"] == "aarch64"  # uname -m over ssh: the sshd and shell are arm64 code
    info = board["info"]
    assert info["machine"] == "aarch64" and info["system"] == "Linux"
    assert info["python"].startswith("3.11.") and "bookworm" in (info["os"] or "")
    assert info["cc"] and info["headers"] is True  # gcc and python3-dev: the probe sees a board that can build the core
    env = asyncio.run(_remote(board["target"], board["known"], ["sh", "-c", "echo $QEMU_CPU"]))
    assert env.stdout.strip() == QEMU_CPU  # every remote program on the same emulated core


def test_flash_builds_the_compiled_core_and_the_remote_profile_equals_the_local_one(board: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """``flash`` builds the board's wheel (runtime/_core.c) in the arm64 root under qemu, the
    board loads it (``core: compiled`` in its own ``info`` and ``profile``), and its profile
    equals this machine's."""
    model = make_pruned_bundle(tmp_path / "pruned.seb")
    t0 = time.time()
    opts = Options(remote_dir=REMOTE_DIR, build_root=str(board["root"]), board_core="compiled", wheel_cache=board["work"] / "wheels",
                   power_read=False)
    [r] = run_fleet([board["target"]], "flash", model, opts, Access(board["known"], timeout=60))
    flash_s = time.time() - t0
    if not r.ok and "fetching wheels" in (r.error or ""):  # no network to the package index here: environmental
        skip_unless_required("no wheels for the emulated arm64 board: %s" % r.error)
    assert r.ok, "flash to the arm64 board failed: %s (steps: %s)" % (r.error, r.steps)
    assert r.probe["machine"] == "aarch64" and r.probe["python"].startswith("3.11."), r.probe
    assert r.smoke["inference"]["finite"]
    assert r.core == "compiled" and "built in the build root" in (r.core_note or ""), (r.core, r.core_note)
    assert r.smoke["info"]["core"]["core"] == "compiled", r.smoke["info"]["core"]  # the board's own `spikeedge info`
    wheels = sorted((board["root"] / REMOTE_DIR.lstrip("/") / "wheelhouse").glob("spikeedge-*"))
    assert [w.name for w in wheels] == ["spikeedge-%s-cp311-cp311-linux_aarch64.whl" % __version__], wheels
    assert list((board["root"] / REMOTE_DIR.lstrip("/") / "venv").rglob("_core.cpython-311-aarch64-linux-gnu.so"))

    argv = [REMOTE_DIR + "/venv/bin/spikeedge", "profile", REMOTE_DIR + "/current/model.seb", "--task", "mackey-glass",
            "--samples", str(SAMPLES), "--meter", "none", "--json"]
    t1 = time.time()
    res = asyncio.run(_remote(board["target"], board["known"], argv))
    remote_s = time.time() - t1
    assert res.exit_status == 0, "remote `%s` failed (%d): %s" % (" ".join(map(shlex.quote, argv)), res.exit_status, res.stderr[-2000:])
    remote = json.loads(res.stdout.strip().splitlines()[-1])
    local = local_profile(model, SAMPLES)
    monkeypatch.setenv("SPIKEEDGE_CORE", "numpy")
    numpy_here = local_profile(model, SAMPLES)  # the reference core, on this machine
    monkeypatch.delenv("SPIKEEDGE_CORE")

    timing = ("timings: root %.1f s (cached unless first run), board up %.1f s; flash %.1f s (%s); remote profile %.1f s wall, %.3f ms per inference on the emulated board vs "
              "%.3f ms here on the %s core (qemu speed, not a Pi's)" % (board["root_seconds"], board["started"], flash_s, "; ".join(r.steps), remote_s,
                                                                          remote["ms_per_inference"], local["ms_per_inference"], local.get("core")))
    print(timing)
    assert remote["core"] == "compiled", timing  # the board's profile ran on the compiled core
    assert remote["inferences"] == local["inferences"] == SAMPLES, timing
    assert remote["steps_per_inference"] == local["steps_per_inference"], timing
    assert remote["spike_rate"] == local["spike_rate"], timing
    assert remote["synops_per_inference"] == local["synops_per_inference"], timing
    assert remote["spikes_per_step"] == local["spikes_per_step"], timing
    assert remote.get("synops_per_layer") == local.get("synops_per_layer"), timing
    assert 0 < sum(local["spike_rate"].values()) and local["synops_per_inference"] > 0, "a silent network proves little"
    assert numpy_here["core"] == "numpy" and all(remote.get(k) == numpy_here.get(k) for k in ("spike_rate", "spikes_per_step", "synops_per_layer")), timing

    # a second flash of another model keeps the runtime: nothing rebuilt, the core still reported
    [again] = run_fleet([board["target"]], "flash", make_pruned_bundle(tmp_path / "other.seb", seed=1), opts, Access(board["known"], timeout=60))
    assert again.ok, again.error
    assert any(s.startswith("runtime present") and "compiled core" in s for s in again.steps), again.steps
    assert again.core == "compiled"
