"""Wheels for a board, made on the workstation: boards often have no internet, so the runtime is
installed on them offline from wheels sent along.

The spikeedge wheel comes from where this package was loaded from (``spikeedge_wheel``):

- a source tree (``pyproject.toml`` beside the package, as in a checkout or an editable
  install): built with ``pip wheel --no-deps``, pure Python; the board's compiled core is made
  by ``deploy/boardcore.py`` (in a build root, or by the board from the sdist) where it can be;
- an installed distribution (a plain ``pip install spikeedge``): repacked from the installed
  files exactly as the distribution's ``RECORD`` lists them, each file's sha256 checked against
  ``RECORD`` first, with the installed ``METADATA`` and ``entry_points.txt``. Byte for byte the
  same package, no build tools, no network; the zip is written with fixed dates and order, so the
  same install always gives the same wheel (and the same ``build_id``). Only a pure-Python
  install (``py3-none-any``) is repacked: a platform wheel's compiled files are for this
  machine, not the board;
- an installed platform wheel: the same release's wheel for the board's platform, fetched by
  ``pip download --no-deps spikeedge==VERSION`` with the board's tags (or ``--wheelhouse DIR``).

Its dependencies are not listed here: ``pip download`` is given the spikeedge wheel itself and
resolves the ``Requires-Dist`` of its metadata (``pyproject.toml``'s ``dependencies``, the one
place they are written) with ``--only-binary :all:`` for the board's platform, read from the
probe (machine, glibc, Python version), e.g. an arm64 Pi with glibc 2.36 and Python 3.11 gets
``manylinux_2_36_aarch64`` ... ``manylinux2014_aarch64`` wheels for cp311. pip evaluates
environment markers against the Python running it, not the board's, so the base dependencies
carry no markers (``docs/install.md``). Cached per platform under
``~/.cache/spikeedge/wheelhouse``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import __version__
from ..errors import DeployError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# Dist-info files that describe one installation, not the package: left out of a repacked wheel.
INSTALL_ONLY = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


def platforms(info: Dict[str, Any]) -> List[str]:
    """pip ``--platform`` tags a board with ``info`` (the probe) accepts, newest first."""
    machine = {"arm64": "aarch64"}.get(info.get("machine") or "", info.get("machine") or "")
    if info.get("system") != "Linux" or not machine:
        raise DeployError("board platform %s/%s: only Linux boards are supported" % (info.get("system"), machine))
    glibc = info.get("glibc") or "2.17"
    major, minor = (int(v) for v in glibc.split(".")[:2])
    tags = ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 16, -1)]
    return tags + ["manylinux2014_%s" % machine, "linux_%s" % machine]


def source_tree() -> Optional[Path]:
    """The source tree this package was loaded from, or None for an installed distribution."""
    return PACKAGE_ROOT if (PACKAGE_ROOT / "pyproject.toml").is_file() else None


def _source_files(root: Path) -> List[Path]:
    """What a wheel built from ``root`` is made of: ``pyproject.toml``, the top-level modules and
    every file (data included) under the package folders (those with an ``__init__.py``)."""
    files = [root / "pyproject.toml"] + sorted(root.glob("*.py"))
    for pkg in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        files += [f for f in pkg.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
    return sorted(set(files))


def build_id(wheels: Any = None) -> str:
    """What identifies the runtime build sent to boards: the sha256 of the spikeedge wheel in
    ``wheels`` when given; else of this source tree's packaged files (so a changed source is
    never mistaken for the installed one, whatever its version number says); else of the wheel
    repacked from the installed distribution."""
    h = hashlib.sha256()
    if wheels is not None:
        found = sorted(Path(wheels).glob("spikeedge-*.whl"))
        if not found:
            raise DeployError("%s: no spikeedge wheel in the wheelhouse" % wheels)
        h.update(found[-1].read_bytes())
        return h.hexdigest()
    root = source_tree()
    if root is None:
        dist = installed_distribution()
        if wheel_tags(dist) == ["py3-none-any"]:
            h.update(installed_wheel()[1])  # what is sent
        else:  # the board gets this release's wheel for its platform: identified by the release here
            h.update(("platform-install\0%s\0" % dist.version).encode() + (dist.read_text("RECORD") or "").encode())
        return h.hexdigest()
    for f in _source_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installed_distribution() -> Any:
    """The installed spikeedge distribution this package was loaded from (``importlib.metadata``)."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # pragma: no cover - Python 3.8 has importlib.metadata
        raise DeployError("no importlib.metadata: give --wheelhouse DIR") from None
    try:
        dist = distribution("spikeedge")
    except PackageNotFoundError:
        raise DeployError("spikeedge is neither a source tree nor an installed distribution here: "
                          "give --wheelhouse DIR with a spikeedge wheel and its dependencies for the board") from None
    init = Path(str(dist.locate_file("spikeedge/__init__.py")))
    if not init.is_file() or init.resolve() != (PACKAGE_ROOT / "__init__.py").resolve():
        raise DeployError("the installed spikeedge distribution (%s) is not the package running here (%s): "
                          "give --wheelhouse DIR" % (init.parent, PACKAGE_ROOT))
    return dist


def wheel_tags(dist: Any) -> List[str]:
    """The installed wheel's tags, ``["py3-none-any"]`` for a pure-Python install."""
    meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Tag:")]
    return tags if "Root-Is-Purelib: true" in meta else tags + ["(not purelib)"]


def installed_wheel() -> Tuple[str, bytes]:
    """``(file name, bytes)`` of a wheel repacked from the installed, pure-Python spikeedge."""
    dist = installed_distribution()
    tags = wheel_tags(dist)
    if tags != ["py3-none-any"]:
        raise DeployError("spikeedge %s is installed from a platform wheel (%s): its compiled files are for this "
                          "machine, not the board; give --wheelhouse DIR" % (dist.version, ", ".join(tags) or "no tag"))
    members: Dict[str, bytes] = {}
    info_dir = ""
    for f in dist.files or []:
        name = str(f).replace("\\", "/")
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info"):
            info_dir = top
            if name.rsplit("/", 1)[-1] in INSTALL_ONLY:
                continue
        elif top != "spikeedge" or "__pycache__" in name or name.endswith(".pyc"):
            continue  # console scripts (made again on install), compiled caches
        data = Path(str(f.locate())).read_bytes()
        if f.hash is not None and _record_hash(data) != "%s=%s" % (f.hash.mode, f.hash.value):
            raise DeployError("%s: changed since spikeedge was installed (sha256 differs from RECORD); reinstall "
                              "spikeedge or give --wheelhouse DIR" % f.locate())
        members[name] = data
    if not info_dir or "spikeedge/__init__.py" not in members or info_dir + "/METADATA" not in members:
        raise DeployError("the installed spikeedge has no usable RECORD (an editable or incomplete install?): "
                          "give --wheelhouse DIR")
    record = "".join("%s,%s,%d\n" % (n, _record_hash(d), len(d)) for n, d in sorted(members.items()))
    members[info_dir + "/RECORD"] = (record + info_dir + "/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(members, key=lambda n: (n.startswith(info_dir), n)):  # dist-info last
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, members[name])
    return "spikeedge-%s-py3-none-any.whl" % dist.version, buf.getvalue()


def _board_pip_options(info: Dict[str, Any]) -> List[str]:
    """pip options that select wheels for the board of probe ``info``."""
    py = (info.get("python") or "").split(".")
    if len(py) < 2:
        raise DeployError("the board's Python version is unknown")
    opts = ["--only-binary", ":all:", "--python-version", "%s.%s" % (py[0], py[1]), "--implementation", "cp"]
    for t in platforms(info):
        opts += ["--platform", t]
    return opts


def _pip_failed(what: str, proc: Any) -> str:
    return "%s: %s" % (what, (proc.stderr.strip().splitlines() or ["?"])[-1])


def spikeedge_wheel(folder: Path, info: Optional[Dict[str, Any]] = None) -> Path:
    """Write the spikeedge wheel for the board of probe ``info`` into ``folder`` and return it:
    built from the source tree, repacked from a pure-Python install, or, for an install from a
    platform wheel, this release's wheel for the board's platform fetched by ``pip download``."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    root = source_tree()
    if root is not None:
        # A pure-Python wheel: a compiled core built here would be for this machine, not the
        # board's (boardcore.py builds the board's where the board's architecture runs).
        build = subprocess.run(pip + ["wheel", "--no-deps", "-w", str(folder), str(root)], capture_output=True, text=True,
                               env=dict(os.environ, SPIKEEDGE_BUILD_CORE="0"))
        if build.returncode != 0:
            raise DeployError(_pip_failed("building the spikeedge wheel failed", build))
    else:
        dist = installed_distribution()
        if wheel_tags(dist) == ["py3-none-any"]:
            name, data = installed_wheel()
            (folder / name).write_bytes(data)
            return folder / name
        if info is None:
            raise DeployError("spikeedge %s is installed from a platform wheel: the board's platform is needed to fetch its "
                              "wheel; give --wheelhouse DIR" % dist.version)
        got = subprocess.run(pip + ["download", "--no-deps", "-d", str(folder)] + _board_pip_options(info)
                             + ["spikeedge==%s" % dist.version], capture_output=True, text=True)
        if got.returncode != 0:
            raise DeployError(_pip_failed("spikeedge %s is installed from a platform wheel (%s) and no wheel of it for the board "
                                          "could be fetched (give --wheelhouse DIR)" % (dist.version, ", ".join(wheel_tags(dist))), got))
    found = sorted(folder.glob("spikeedge-*.whl"))
    if not found:
        raise DeployError("no spikeedge-*.whl in %s after making it" % folder)
    return found[-1]


COMPLETE = ".complete"  # written last: a folder without it is an interrupted make, rebuilt


def wheelhouse_for(info: Dict[str, Any], cache: Path = Path.home() / ".cache" / "spikeedge" / "wheelhouse", plan: Any = None) -> Path:
    """The board's wheels, made once per platform, build and route (``deploy/boardcore.py``):
    the spikeedge wheel and its dependencies; for the ``root`` route the spikeedge wheel is the
    one built in the build root, for ``board`` the sdist and its build requirements come too."""
    from .boardcore import Plan, build_in_root, build_requires, checked_probe, fetch_build_requires, make_sdist

    plan = plan or Plan("wheel")
    checked_probe(info)
    options = _board_pip_options(info)
    py = (info.get("python") or "").split(".")
    tags = platforms(info)
    suffix = "" if plan.route == "wheel" else "-" + plan.route
    folder = cache / ("%s-cp%s%s-%s-%s%s" % (tags[-1], py[0], py[1], __version__, build_id()[:12], suffix))
    if (folder / COMPLETE).is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    wheel = spikeedge_wheel(folder, info)
    cmd = [sys.executable, "-m", "pip", "-q", "download", "-d", str(folder)] + options
    got = subprocess.run(cmd + [str(wheel)], capture_output=True, text=True)  # its Requires-Dist, resolved for the board
    if got.returncode != 0:
        what = "fetching wheels for %s (Python %s.%s) failed; or give --wheelhouse DIR" % (tags[-1], py[0], py[1])
        raise DeployError(_pip_failed(what, got))
    tree = source_tree()
    if plan.route in ("root", "board") and tree is not None:
        if plan.route == "board":  # the board's pip builds it; the pure wheel stays as its fallback
            make_sdist(tree, _source_files(tree), folder)
            fetch_build_requires(tree, options, folder)
        else:
            with tempfile.TemporaryDirectory(prefix="spikeedge-sdist-") as tmp:
                sdist = make_sdist(tree, _source_files(tree), Path(tmp))
                fetch_build_requires(tree, options, Path(tmp) / "requires")
                build_in_root(plan.root, sdist, Path(tmp) / "requires", build_requires(tree), folder)
            wheel.unlink()  # one spikeedge wheel in the folder: the compiled one
    (folder / COMPLETE).write_text("%s\n" % plan.route)
    return folder
