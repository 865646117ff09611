"""Wheels for a board, built on the workstation: boards often have no internet, so the runtime is
installed on them offline from wheels sent along.

The spikeedge wheel is built from this source tree (cached per platform and per source digest,
so a changed source is rebuilt) (``pip wheel --no-deps``); its dependencies
(numpy, typer, rich and theirs) are fetched by ``pip download --only-binary :all:`` for the
board's platform, read from the probe (machine, glibc, Python version), e.g. an arm64 Pi with
glibc 2.36 and Python 3.11 gets ``manylinux_2_36_aarch64`` ... ``manylinux2014_aarch64``
wheels for cp311. Cached per platform under ``~/.cache/spikeedge/wheelhouse``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from .. import __version__
from ..runtime.errors import DeployError

DEPENDENCIES = ["numpy>=1.20", "typer>=0.9", "rich>=12"]


def platforms(info: Dict[str, Any]) -> List[str]:
    """pip ``--platform`` tags a board with ``info`` (the probe) accepts, newest first."""
    machine = {"arm64": "aarch64"}.get(info.get("machine") or "", info.get("machine") or "")
    if info.get("system") != "Linux" or not machine:
        raise DeployError("board platform %s/%s: only Linux boards are supported" % (info.get("system"), machine))
    glibc = info.get("glibc") or "2.17"
    major, minor = (int(v) for v in glibc.split(".")[:2])
    tags = ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 16, -1)]
    return tags + ["manylinux2014_%s" % machine, "linux_%s" % machine]


def source_tree() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise DeployError("no spikeedge source tree next to the installed package: give --wheelhouse DIR with a spikeedge wheel and its dependencies for the board")
    return root


PACKAGED = ("cli", "runtime", "tasks", "offline", "deploy", "boards", "results")


def build_id(wheels: Any = None) -> str:
    """What identifies the runtime build sent to boards: the sha256 of the spikeedge wheel in
    ``wheels`` when given, else of this source tree's packaged files (so a changed source is
    never mistaken for the installed one, whatever its version number says)."""
    h = hashlib.sha256()
    if wheels is not None:
        found = sorted(Path(wheels).glob("spikeedge-*.whl"))
        if not found:
            raise DeployError("%s: no spikeedge wheel in the wheelhouse" % wheels)
        h.update(found[-1].read_bytes())
        return h.hexdigest()
    root = source_tree()
    files = [root / "pyproject.toml", root / "__init__.py"]
    for pkg in PACKAGED:
        files += [f for f in (root / pkg).rglob("*") if f.suffix in (".py", ".json") and "__pycache__" not in f.parts]
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def wheelhouse_for(info: Dict[str, Any], cache: Path = Path.home() / ".cache" / "spikeedge" / "wheelhouse") -> Path:
    py = (info.get("python") or "").split(".")
    if len(py) < 2:
        raise DeployError("the board's Python version is unknown")
    tags = platforms(info)
    folder = cache / ("%s-cp%s%s-%s-%s" % (tags[-1], py[0], py[1], __version__, build_id()[:12]))
    if any(folder.glob("spikeedge-*.whl")) and any(folder.glob("numpy-*.whl")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    # A pure-Python wheel: the compiled core built here would be for this machine, not the board's
    # (the board runs the numpy core; runtime/cores.py says so in `info`).
    build = subprocess.run(pip + ["wheel", "--no-deps", "-w", str(folder), str(source_tree())], capture_output=True, text=True,
                           env=dict(os.environ, SPIKEEDGE_BUILD_CORE="0"))
    if build.returncode != 0:
        raise DeployError("building the spikeedge wheel failed: %s" % (build.stderr.strip().splitlines() or ["?"])[-1])
    cmd = pip + ["download", "--only-binary", ":all:", "--python-version", "%s.%s" % (py[0], py[1]), "--implementation", "cp",
                 "-d", str(folder)]
    for t in tags:
        cmd += ["--platform", t]
    got = subprocess.run(cmd + DEPENDENCIES, capture_output=True, text=True)
    if got.returncode != 0:
        raise DeployError("fetching wheels for %s (Python %s.%s) failed: %s; or give --wheelhouse DIR" % (
            tags[-1], py[0], py[1], (got.stderr.strip().splitlines() or ["?"])[-1]))
    return folder
