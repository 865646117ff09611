"""Which core a board gets from ``spikeedge flash``: the compiled one (every extension
``setup.py`` declares, today ``runtime/_core.c``) built for the board's architecture, or the
numpy core with the reason said plainly. A wheel built here would be for this machine, so the
board's build happens where the board's architecture runs:

1. ``root``: in a **build root**, a root file system of the board's architecture, Python
   (major.minor) and a glibc no newer than the board's, with a C compiler and the Python
   headers, run through ``qemu-user-static`` with ``chroot`` (root only). The tests' emulated
   Pi (``tests/arm64_board.py build``: Debian 12 arm64 with gcc, libc6-dev, python3-dev) is one
   and is found at ``~/.cache/spikeedge/arm64-bookworm``; ``--build-root DIR`` names another.
   pip builds this tree's sdist there, offline, with the build requirements sent in: the
   result is a ``cpXY-cpXY-linux_<arch>`` wheel, cached with the board's other wheels.
2. ``board``: when the board's Python has its headers and a C compiler (the probe says), the
   sdist and its build requirements travel with the wheels and the board's pip builds it.
3. ``wheel``: the pure-Python wheel (or a release's wheel after a plain ``pip install``): the
   board runs the numpy core, and the flash result says why no route above was taken.

``deploy/install.py`` installs what the plan made. The board is asked afterwards which core
loads (``CORE_CHECK``): an extension that built but
cannot load there (an older glibc, a broken toolchain) is reported as numpy with its reason,
never assumed. Nothing is downloaded on the board: the build requirements come from this
machine's ``pip download``, like the other wheels.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import __version__
from ..errors import DeployError

ROUTES = ("root", "board", "wheel", "given")
BOARD_CORES = ("auto", "compiled", "numpy")
DEFAULT_ROOT = Path.home() / ".cache" / "spikeedge" / "arm64-bookworm"
BUILD_TIMEOUT_S = 3600.0  # gcc -O3 under qemu: minutes, not hours
PLAIN = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")  # a probe value that may go into a path or a pip option

# Asked of a Python (the board's, or a build root's): can it build a C extension? Its compiler
# (sysconfig's CC, the one setuptools calls) on PATH and its headers (Python.h) present.
COMPILER = r"""
import json, os, platform, shutil, sys, sysconfig
cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
inc = sysconfig.get_paths().get("include") or ""
print(json.dumps({"machine": platform.machine(), "python": "%d.%d.%d" % sys.version_info[:3],
                  "glibc": platform.libc_ver()[1] or None, "cc": shutil.which(cc),
                  "headers": os.path.isfile(os.path.join(inc, "Python.h"))}))
"""

# Run with the board's venv: which core this runtime loads (runtime/cores.py), and why not.
CORE_CHECK = r"""
import json
from spikeedge.runtime import cores
print(json.dumps({"core": "numpy" if cores.LOAD_ERROR else "compiled", "why": cores.LOAD_ERROR}))
"""


@dataclass
class Plan:
    """How the board's runtime is made: ``route`` (one of ``ROUTES``), the build root for
    ``root``, and ``notes``: why earlier routes were not taken (they end up in the flash result)."""

    route: str
    root: Optional[Path] = None
    notes: List[str] = field(default_factory=list)


def _machine(m: Optional[str]) -> str:
    return {"arm64": "aarch64"}.get(m or "", m or "")


def _version(v: Optional[str], n: int) -> Optional[Tuple[int, ...]]:
    try:
        return tuple(int(x) for x in str(v).split(".")[:n])
    except ValueError:
        return None


def checked_probe(info: Dict[str, Any]) -> Dict[str, Any]:
    """The probe's values this module uses, refused in one line when a board printed something
    that is not a plain name or version (they become cache paths and pip options)."""
    for key in ("machine", "python", "glibc"):
        v = info.get(key)
        if v is not None and (not isinstance(v, str) or not PLAIN.match(v)):
            raise DeployError("the board's probe gave an unusable %s: %r" % (key, str(v)[:40]))
    return info


def board_can_build(info: Dict[str, Any]) -> bool:
    """Whether the probe found a C compiler and the Python headers on the board."""
    return bool(info.get("cc")) and info.get("headers") is True


def resolve_root(build_root: Optional[str]) -> Optional[Path]:
    """``--build-root``: ``auto`` (``$SPIKEEDGE_BUILD_ROOT``, else the emulated Pi's root when it
    exists), ``none``, or a folder."""
    if build_root in (None, "", "none"):
        return None
    if build_root == "auto":
        env = os.environ.get("SPIKEEDGE_BUILD_ROOT", "")
        if env:
            return None if env == "none" else Path(env).expanduser()
        return DEFAULT_ROOT if DEFAULT_ROOT.is_dir() else None
    return Path(build_root).expanduser()


def _chroot(root: Path, script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """``sh -c script args`` inside ``root`` with a clean environment (this machine's pip
    settings must not leak into the board's build)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run(["chroot", str(root), "/bin/sh", "-c", script, "sh", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def root_unusable(root: Path, info: Dict[str, Any]) -> Optional[str]:
    """Why ``root`` cannot build the board's core (None: it can)."""
    if not (root / "usr" / "bin" / "python3").exists():
        return "build root %s: no usr/bin/python3 there" % root
    if os.geteuid() != 0:
        return "build root %s: building in it needs root (chroot)" % root
    try:
        r = _chroot(root, 'exec python3 -c "$1"', COMPILER, timeout=300)
        got = json.loads(r.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "build root %s: its python3 does not run here (qemu-user-static and binfmt_misc set up?)" % root
    want_m, have_m = _machine(info.get("machine")), _machine(got.get("machine"))
    if want_m != have_m:
        return "build root %s is %s, the board %s" % (root, have_m, want_m)
    if _version(got.get("python"), 2) != _version(info.get("python"), 2):
        return "build root %s has Python %s, the board %s" % (root, got.get("python"), info.get("python"))
    board_glibc, root_glibc = _version(info.get("glibc"), 2), _version(got.get("glibc"), 2)
    if board_glibc is None or root_glibc is None or root_glibc > board_glibc:
        return "build root %s has glibc %s, the board %s (a wheel built there needs at least the root's)" % (
            root, got.get("glibc"), info.get("glibc"))
    if not (got.get("cc") and got.get("headers")):
        return "build root %s has no C compiler or no Python headers (gcc, libc6-dev, python3-dev)" % root
    return None


def plan(info: Dict[str, Any], build_root: Optional[str], board_core: str, from_source: bool) -> Plan:
    """The route for a board of probe ``info``: cheap (a build root is only probed, nothing is
    built), so ``flash`` can tell whether the runtime on the board was made the same way."""
    if board_core not in BOARD_CORES:
        raise DeployError("--board-core %r: expected one of %s" % (board_core, ", ".join(BOARD_CORES)))
    if board_core == "numpy":
        return Plan("wheel", notes=["the numpy core was asked for (--board-core numpy)"])
    if not from_source:
        return Plan("wheel", notes=["spikeedge runs here from an installed distribution: no C source to build the board's core from"])
    notes: List[str] = []
    root = resolve_root(build_root)
    if root is None:
        notes.append("no build root for the board's architecture (--build-root)")
    else:
        why = root_unusable(root, info)
        if why is None:
            return Plan("root", root=root)
        notes.append(why)
    if board_can_build(info):
        return Plan("board", notes=notes)
    notes.append("the board has no C compiler and Python headers")
    return Plan("wheel", notes=notes)


def build_requires(tree: Path) -> List[str]:
    """``[build-system] requires`` of ``tree``'s pyproject.toml (the requirements pip installs
    to build the sdist)."""
    text = (tree / "pyproject.toml").read_text()
    try:
        import tomllib  # type: ignore[import-not-found]  # novermin (guarded: Python < 3.11 reads it below)

        return list(tomllib.loads(text).get("build-system", {}).get("requires", []))
    except ImportError:  # Python < 3.11: the one list we need, read plainly
        section = re.search(r"^\[build-system\](.*?)(?=^\[|\Z)", text, re.S | re.M)
        found = re.search(r"requires\s*=\s*\[(.*?)\]", section.group(1), re.S) if section else None
        return re.findall(r"[\"']([^\"']+)[\"']", found.group(1)) if found else []


def make_sdist(tree: Path, files: List[Path], folder: Path) -> Path:
    """A source distribution of ``tree`` (``spikeedge-V.tar.gz``): ``files`` plus the README and
    licence files pyproject may name. Fixed dates, owners and order: the same tree, the same bytes."""
    name = "spikeedge-%s" % __version__
    extra = [p for pat in ("README*", "LICENSE*", "setup.cfg", "MANIFEST.in") for p in tree.glob(pat) if p.is_file()]
    members = sorted({f for f in files + extra if f.suffix not in (".so", ".pyd", ".dll", ".dylib", ".o")})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        pkg_info = ("Metadata-Version: 2.1\nName: spikeedge\nVersion: %s\n" % __version__).encode()
        for rel, data in [("PKG-INFO", pkg_info)] + [(str(f.relative_to(tree)), f.read_bytes()) for f in members]:
            entry = tarfile.TarInfo("%s/%s" % (name, rel))
            entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
            tar.addfile(entry, io.BytesIO(data))
    out = folder / (name + ".tar.gz")
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out


def fetch_build_requires(tree: Path, pip_options: List[str], folder: Path) -> None:
    """The build requirements' wheels (and theirs) for the board's Python, into ``folder``."""
    reqs = build_requires(tree)
    if not reqs:
        return
    got = subprocess.run([sys.executable, "-m", "pip", "-q", "download", "-d", str(folder)] + pip_options + reqs,
                         capture_output=True, text=True)
    if got.returncode != 0:
        raise DeployError("fetching the build requirements (%s) for the board failed: %s" % (
            ", ".join(reqs), (got.stderr.strip().splitlines() or ["?"])[-1]))


BUILD_VENV = "/var/cache/spikeedge-build/venv"  # inside a build root: made once, reused by every build


def build_in_root(root: Path, sdist: Path, requires: Path, reqs: List[str], out: Path) -> Path:
    """pip builds ``sdist`` inside ``root`` (offline: the build requirements ``reqs`` from the
    wheels in ``requires``), in a venv kept in the root (``BUILD_VENV``: making one costs about a
    minute under qemu; ``.ready`` marks it complete) and one build at a time (a lock file beside
    it). The platform wheel lands in ``out``. A wheel with no compiled module (the extension is
    optional, so a failed compile still gives one) is an error here, not a silent numpy core."""
    import fcntl

    tmp = root / "tmp"
    for stale in tmp.glob("spikeedge-build-*"):  # left by a build that was killed
        if time.time() - stale.stat().st_mtime > BUILD_TIMEOUT_S:
            shutil.rmtree(stale, ignore_errors=True)
    work = tmp / ("spikeedge-build-" + uuid.uuid4().hex[:12])
    lock_path = root / BUILD_VENV.lstrip("/").rsplit("/", 1)[0] / "lock"
    try:
        (work / "wh").mkdir(parents=True)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        for w in requires.glob("*.whl"):
            shutil.copy2(w, work / "wh" / w.name)
        shutil.copy2(sdist, work / sdist.name)
        script = ('set -e; cd "$1"; sdist="$2"; v="$3"; shift 3; '
                  'if [ ! -f "$v/.ready" ]; then rm -rf "$v"; python3 -m venv "$v"; touch "$v/.ready"; fi; '
                  'if [ $# -gt 0 ]; then "$v/bin/python" -m pip -q install --no-index --find-links wh "$@"; fi; '
                  'exec "$v/bin/python" -m pip -q wheel --no-deps --no-build-isolation --no-index -w out "./$sdist"')
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                r = _chroot(root, script, "/tmp/" + work.name, sdist.name, BUILD_VENV, *reqs, timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise DeployError("building the core in %s took over %.0f s" % (root, BUILD_TIMEOUT_S)) from None
        if r.returncode != 0:
            raise DeployError("pip could not build spikeedge in %s: %s" % (root, (r.stderr.strip().splitlines() or ["?"])[-1][:300]))
        built = sorted((work / "out").glob("spikeedge-*.whl"))
        missing = missing_extensions(built[-1], sdist) if built else ["all"]
        if missing:
            raise DeployError("the C extension %s did not compile in %s (pip made %s)" % (
                ", ".join(missing), root, built[-1].name if built else "no wheel"))
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built[-1], out / built[-1].name))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def missing_extensions(wheel: Path, sdist: Path) -> List[str]:
    """The extension modules ``setup.py`` in ``sdist`` declares (``Extension("dotted.name", ...)``)
    that ``wheel`` holds no compiled file of."""
    import zipfile

    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/setup.py") and m.name.count("/") == 1)
        text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    declared = re.findall(r"Extension\(\s*[\"']([\w.]+)[\"']", text)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    return [d for d in declared if not any(n.startswith(d.replace(".", "/") + ".") and n.endswith((".so", ".pyd")) for n in names)]


def core_report(obj: Any) -> Dict[str, Optional[str]]:
    """``CORE_CHECK``'s JSON from the board, checked: ``{"core": "compiled"|"numpy", "why": ...}``."""
    if not isinstance(obj, dict) or obj.get("core") not in ("compiled", "numpy"):
        raise DeployError("the board's core check printed %s" % str(obj)[:80])
    why = obj.get("why")
    return {"core": obj["core"], "why": "".join(c if c.isprintable() else "?" for c in str(why))[:300] if why else None}
