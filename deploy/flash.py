"""Flash a bundle to a board, or roll it back, so that a board is never left half-installed.

Layout on the board, under ``remote_dir`` (default ``.spikeedge`` in the login's home)::

    lock/owner            held during a deploy, with who holds it (``deploy/lock.py``)
    venv/                 the spikeedge runtime, installed offline from wheels sent along
    wheelhouse/           those wheels
    releases/<sha>.partial   an upload in progress (never run)
    releases/<sha>/model.seb verified releases (sha256 of the file)
    current -> releases/<sha>  switched atomically (a new symlink renamed over the old one)
    history               one line per switch: the release it pointed to

A flash: lock, remove stale ``.partial`` uploads (no other deploy can be writing them while we
hold the lock), probe the board, make sure the runtime is installed, upload to ``.partial``,
check the sha256 on the board (a file corrupted in transit is deleted, never switched to),
rename into ``releases/<sha>/``, smoke-test it with the board's runtime (load + checksum, one
inference, one power read where the board has a meter), switch ``current``, keep the last
``keep`` releases, unlock. Any failure before the switch leaves ``current`` as it was.

Every failure on one host, whatever raised it (an ``SFTPFailure`` on a full disk, a lost
connection, a board that printed nonsense), ends as that host's one-line ``error``, never as an
exception: the fleet's other hosts and its summary must not depend on one board's luck.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..runtime.bundle import file_sha256
from ..errors import DeployError
from .install import ensure_runtime
from .lock import Lock
from .ssh import Connection, one_line

PROBE = r"""
import json, os, platform, shutil, sys, sysconfig
def read(p):
    try:
        with open(p, "rb") as f:
            return f.read().decode("utf-8", "replace").strip().strip("\x00")
    except OSError:
        return None
osr = {}
for line in (read("/etc/os-release") or "").splitlines():
    if "=" in line:
        k, v = line.split("=", 1)
        osr[k] = v.strip('"')
cc = (sysconfig.get_config_var("CC") or "cc").split()[0]  # the compiler setuptools would call, and Python.h: can it build the core?
print(json.dumps({"machine": platform.machine(), "system": platform.system(), "os": osr.get("PRETTY_NAME"),
                  "python": "%d.%d.%d" % sys.version_info[:3], "glibc": platform.libc_ver()[1] or None,
                  "model": read("/proc/device-tree/model"), "l4t": read("/etc/nv_tegra_release"),
                  "cc": shutil.which(cc), "headers": os.path.isfile(os.path.join(sysconfig.get_paths().get("include") or "", "Python.h"))}))
"""

REMOTE_SHA = "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"

SWITCH = r"""
import os, sys, time
base, release = sys.argv[1], sys.argv[2]
tmp = os.path.join(base, "current.new")
if os.path.lexists(tmp):
    os.remove(tmp)
os.symlink(os.path.join("releases", release), tmp)
os.replace(tmp, os.path.join(base, "current"))
with open(os.path.join(base, "history"), "a") as f:
    f.write("%s %d\n" % (release, int(time.time())))
"""

STATE = r"""
import json, os, sys
base = sys.argv[1]
cur = os.path.join(base, "current")
current = os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None
hist = []
try:
    hist = [l.split()[0] for l in open(os.path.join(base, "history")) if l.strip()]
except OSError:
    pass
rel = os.path.join(base, "releases")
releases = sorted(d for d in os.listdir(rel) if os.path.isdir(os.path.join(rel, d))) if os.path.isdir(rel) else []
print(json.dumps({"current": current, "history": hist, "releases": releases}))
"""

SMOKE = r"""
import json, sys
import numpy as np
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.sessions import open_session
b = fmt.load(sys.argv[1])
if getattr(b, "model", None) == "conv":
    r = open_session(b, 1).run(np.zeros((1,) + tuple(b.input_shape)))
else:
    r = open_session(b, 1).run(np.zeros((1, 1, b.n_inputs)))
out = r.outputs
print(json.dumps({"sha256": b.sha256, "finite": bool(np.all(np.isfinite(out))), "steps": r.steps}))
"""


@dataclass
class Options:
    remote_dir: str = ".spikeedge"
    keep: int = 3
    wheelhouse: Optional[Path] = None  # local folder of wheels for the board (else built/downloaded)
    fail_after_bytes: Optional[int] = None  # test hook: drop the upload midway
    after_upload: Optional[Callable[[Connection, str], Any]] = None  # test hook: runs on the uploaded .partial
    power_read: bool = True
    break_lock: bool = False  # take the board's lock even when its holder may still be running
    deploy_timeout_s: float = 3600.0  # a lock with no owner record older than this is taken over
    on_stage: Optional[Callable[[str], Any]] = None  # test hook: called after each stage (locked, probed, ...)
    build_root: Optional[str] = "auto"  # where the board's compiled core is built: "auto", "none" or a folder (deploy/boardcore.py)
    board_core: str = "auto"  # "compiled": fail unless the board gets the compiled core; "numpy": don't build it
    wheel_cache: Optional[Path] = None  # the board wheels' cache (default ~/.cache/spikeedge/wheelhouse)


@dataclass
class HostResult:
    target: str
    ok: bool
    action: str
    release: Optional[str] = None
    previous: Optional[str] = None
    probe: Dict[str, Any] = field(default_factory=dict)
    steps: List[str] = field(default_factory=list)
    smoke: Dict[str, Any] = field(default_factory=dict)
    report: Dict[str, Any] = field(default_factory=dict)  # what a remote run brought back
    core: Optional[str] = None  # the core the flashed model runs on the board: "compiled" or "numpy"
    core_note: Optional[str] = None  # how the board's runtime got its core, or why it has only numpy
    seconds: float = 0.0
    error: Optional[str] = None


CLEAN_PARTIALS = r"""
import glob, os, sys
for p in sorted(glob.glob(os.path.join(sys.argv[1], "releases", "*.partial"))):
    os.remove(p)
    print(os.path.basename(p))
"""

FREE = "import os, sys; s = os.statvfs(sys.argv[1]); print(s.f_bavail * s.f_frsize)"


def last_json(conn: Connection, text: str, what: str) -> Dict[str, Any]:
    """The JSON object on the last line a board script printed, or a one-line ``DeployError``."""
    try:
        obj = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        obj = None
    if not isinstance(obj, dict):
        raise DeployError("%s: %s printed no JSON on the board (%s)" % (conn.target.name, what, one_line(text) or "no output"))
    return obj


def host_error(name: str, exc: BaseException, doing: str) -> str:
    """One line for any failure on one host: a ``DeployError`` says it already; anything else is
    named with what was being done (``SFTPFailure`` says only "Failure" otherwise)."""
    if isinstance(exc, DeployError):
        return one_line(str(exc), 600)
    return "%s: %s failed (%s%s)" % (name, doing, type(exc).__name__, ": " + one_line(str(exc)) if one_line(str(exc)) else "")


async def probe(conn: Connection) -> Dict[str, Any]:
    r = await conn.python(PROBE, what="the probe (python %s)" % conn.target.python)
    return last_json(conn, r.stdout, "the probe")


async def state(conn: Connection, base: str) -> Dict[str, Any]:
    r = await conn.python(STATE, base, what="reading the release state")
    return last_json(conn, r.stdout, "reading the release state")


async def smoke_test(conn: Connection, base: str, model: str, opts: Options) -> Dict[str, Any]:
    """Load with checksum and schema checks, one inference, one power read (if the board has a
    meter): with the board's own runtime."""
    info = await conn.run([base + "/venv/bin/spikeedge", "info", model, "--json"], what="smoke test: spikeedge info")
    run = await conn.run([base + "/venv/bin/python", "-c", SMOKE, model], what="smoke test: one inference")
    out: Dict[str, Any] = {"info": last_json(conn, info.stdout, "smoke test: spikeedge info"),
                           "inference": last_json(conn, run.stdout, "smoke test: one inference")}
    if not out["inference"].get("finite"):
        raise DeployError("%s: smoke test: the model's outputs are not finite" % conn.target.name)
    if opts.power_read:
        p = await conn.run([base + "/venv/bin/spikeedge", "power", "watch", "--duration", "0.2", "--json"], check=False)
        try:
            out["power"] = json.loads(p.stdout) if p.exit_status == 0 else {"meter": None, "note": one_line(p.stderr) or "no meter"}
        except ValueError:
            out["power"] = {"meter": None, "note": "spikeedge power watch printed no JSON"}
    return out


async def switch(conn: Connection, base: str, release: str) -> None:
    await conn.python(SWITCH, base, release, what="switching current")


async def prune_releases(conn: Connection, base: str, keep: int) -> List[str]:
    st = await state(conn, base)
    order: List[str] = []
    for r in reversed(st["history"]):  # newest first
        if r not in order:
            order.append(r)
    keepers = set(order[:max(keep, 2)]) | {st["current"]}
    gone = [r for r in st["releases"] if r not in keepers]
    for r in gone:
        await conn.run(["rm", "-rf", "%s/releases/%s" % (base, r)])
    return gone


def _build() -> str:
    """This workstation's spikeedge build, for the lock's owner record (never fails)."""
    try:
        from .wheelhouse import build_id

        return build_id()[:12]
    except Exception:
        return "unknown"


def _stage(opts: Options, name: str) -> None:
    if opts.on_stage is not None:
        opts.on_stage(name)


async def _upload(conn: Connection, bundle: Path, partial: str, base: str, opts: Options) -> None:
    """SFTP to ``partial``; a failure says how much room the board has, since a full disk is the
    usual cause and SFTP reports it only as "Failure"."""
    try:
        await conn.put(bundle, partial, fail_after=opts.fail_after_bytes)
    except DeployError:
        raise
    except Exception as exc:
        room = ""
        try:
            free = int((await conn.python(FREE, base + "/releases", check=False)).stdout.strip())
            room = "; %d bytes free there, the bundle needs %d" % (free, bundle.stat().st_size)
        except Exception:
            pass
        raise DeployError("%s: the upload of %s to %s failed (%s: %s)%s" % (
            conn.target.name, bundle.name, partial, type(exc).__name__, one_line(str(exc)) or "no detail", room)) from None


async def flash_host(conn: Connection, bundle: Path, opts: Options) -> HostResult:
    t0 = time.time()
    base = opts.remote_dir
    res = HostResult(conn.target.name, False, "flash")
    doing = "taking the deploy lock"
    try:
        sha = file_sha256(bundle)
        res.release = sha[:16]
        async with Lock(conn, base, _build(), opts.deploy_timeout_s, opts.break_lock) as lock:
            if lock.verdict:
                res.steps.append(lock.verdict)
            _stage(opts, "locked")
            doing = "removing stale uploads"
            stale = (await conn.python(CLEAN_PARTIALS, base, what="removing stale .partial uploads")).stdout.split()
            if stale:
                res.steps.append("removed stale uploads %s" % ", ".join(stale))
            doing = "probing the board"
            res.probe = await probe(conn)
            res.steps.append("probed: %s %s, Python %s" % (res.probe.get("model") or res.probe.get("os"), res.probe.get("machine"), res.probe.get("python")))
            _stage(opts, "probed")
            doing = "installing the runtime"
            runtime = await ensure_runtime(conn, base, res.probe, opts, res.steps)
            res.core, res.core_note = runtime["core"], runtime["note"]
            _stage(opts, "runtime")
            res.previous = (await state(conn, base))["current"]
            rel_dir = "%s/releases/%s" % (base, res.release)
            partial = "%s/releases/%s.partial" % (base, res.release)
            await conn.run(["mkdir", "-p", base + "/releases"])
            doing = "uploading the bundle"
            try:
                await _upload(conn, bundle, partial, base, opts)
                _stage(opts, "uploaded")
                if opts.after_upload is not None:
                    await opts.after_upload(conn, partial)
                doing = "verifying the upload"
                got = (await conn.python(REMOTE_SHA, partial, what="sha256 of the upload")).stdout.strip()
                if got != sha:
                    raise DeployError("%s: the upload arrived corrupted (sha256 %s..., expected %s...): deleted, nothing switched" % (
                        conn.target.name, got[:12], sha[:12]))
                res.steps.append("uploaded and verified (sha256 %s...)" % sha[:12])
                await conn.run(["mkdir", "-p", rel_dir])
                await conn.run(["mv", "-f", partial, rel_dir + "/model.seb"])
            except Exception:
                try:
                    await conn.run(["rm", "-f", partial], check=False)  # under the lock: nobody else's upload
                except Exception:
                    pass  # the connection is gone: the next flash removes it under the lock
                raise
            _stage(opts, "verified")
            doing = "the smoke test"
            res.smoke = await smoke_test(conn, base, rel_dir + "/model.seb", opts)
            model_core = res.smoke["info"].get("core")
            if isinstance(model_core, dict) and model_core.get("core") in ("compiled", "numpy") and model_core["core"] != res.core:
                # the runtime's core cannot run this model (see runtime/cores.py): it runs on numpy there
                res.core, res.core_note = model_core["core"], "%s (this model: %s)" % (res.core_note, one_line(str(model_core.get("reason"))))
            res.steps.append("smoke test passed (%s core)" % res.core)
            _stage(opts, "smoke-tested")
            doing = "switching current"
            await switch(conn, base, res.release)
            res.steps.append("switched current -> %s" % res.release)
            _stage(opts, "switched")
            doing = "removing old releases"
            gone = await prune_releases(conn, base, opts.keep)
            if gone:
                res.steps.append("removed old releases %s" % ", ".join(gone))
            _stage(opts, "pruned")
        res.ok = True
    except Exception as exc:
        res.error = host_error(conn.target.name, exc, doing)
    res.seconds = round(time.time() - t0, 3)
    return res


async def rollback_host(conn: Connection, opts: Options) -> HostResult:
    t0 = time.time()
    base = opts.remote_dir
    res = HostResult(conn.target.name, False, "rollback")
    doing = "taking the deploy lock"
    try:
        async with Lock(conn, base, _build(), opts.deploy_timeout_s, opts.break_lock) as lock:
            if lock.verdict:
                res.steps.append(lock.verdict)
            doing = "rolling back"
            st = await state(conn, base)
            res.previous = st["current"]
            earlier = [r for r in reversed(st["history"]) if r != st["current"] and r in st["releases"]]
            if not earlier:
                raise DeployError("%s: no earlier release to roll back to (releases: %s)" % (conn.target.name, ", ".join(st["releases"]) or "none"))
            res.release = earlier[0]
            await switch(conn, base, res.release)
            res.steps.append("switched current -> %s (was %s)" % (res.release, res.previous))
        res.ok = True
    except Exception as exc:
        res.error = host_error(conn.target.name, exc, doing)
    res.seconds = round(time.time() - t0, 3)
    return res
