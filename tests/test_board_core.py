"""Which core ``spikeedge flash`` gives a board (``deploy/boardcore.py``), over real SSH to an
OpenSSH server on 127.0.0.1 (``tests/sshd.py``) whose "board" is this machine's Python:

- a board with a C compiler and the Python headers, and no build root: the sdist and its build
  requirements are sent and the board's pip builds the compiled core (offline);
- a board without a compiler (its Python started with a PATH that has none), and a build root
  that cannot be used: the pure wheel, the numpy core, and a note naming both reasons;
  ``--board-core compiled`` then fails before anything is switched.

The arm64 build root route is ``tests/test_arm64_board.py``'s. The planning and the checks of
what a board printed are tested without SSH below.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from spikeedge import __version__
from spikeedge.deploy import boardcore
from spikeedge.errors import DeployError

ROOT = Path(__file__).resolve().parent.parent
BOARD_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the board's python3, outside our venv


# ---------------------------------------------------------------------------- without SSH


def test_plan_takes_the_first_route_that_can_work(tmp_path: Path) -> None:
    info = {"machine": "aarch64", "system": "Linux", "python": "3.11.2", "glibc": "2.36", "cc": "/usr/bin/gcc", "headers": True}
    p = boardcore.plan(info, str(tmp_path), "auto", from_source=True)  # a folder that is no root
    assert p.route == "board" and "no usr/bin/python3" in p.notes[0]
    p = boardcore.plan(dict(info, headers=False), "none", "auto", from_source=True)
    assert p.route == "wheel" and any("no build root" in n for n in p.notes) and any("no C compiler" in n for n in p.notes)
    assert boardcore.plan(info, "none", "numpy", from_source=True).route == "wheel"
    assert boardcore.plan(info, "none", "auto", from_source=False).route == "wheel"  # an installed distribution has no C source
    with pytest.raises(DeployError, match="--board-core"):
        boardcore.plan(info, "none", "fast", from_source=True)


@pytest.mark.parametrize("key,value", [("machine", "../../etc"), ("python", "3.11; rm -rf ~"), ("glibc", ["2", "36"]),
                                       ("machine", "x" * 200)])
def test_a_probe_value_that_is_no_plain_name_is_refused(key: str, value: Any) -> None:
    info = {"machine": "aarch64", "system": "Linux", "python": "3.11.2", "glibc": "2.36"}
    info[key] = value
    with pytest.raises(DeployError, match="unusable %s" % key):
        boardcore.checked_probe(info)


def test_the_core_check_of_a_board_is_checked() -> None:
    assert boardcore.core_report({"core": "compiled", "why": None}) == {"core": "compiled", "why": None}
    assert boardcore.core_report({"core": "numpy", "why": "no\x1b[31m module"})["why"] == "no?[31m module"
    for junk in ({"core": "fast"}, ["compiled"], None, {"why": "x"}):
        with pytest.raises(DeployError):
            boardcore.core_report(junk)


def test_the_sdist_is_reproducible_and_carries_the_c_source(tmp_path: Path) -> None:
    from spikeedge.deploy.wheelhouse import _source_files

    files = _source_files(ROOT)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = boardcore.make_sdist(ROOT, files, tmp_path / "a"), boardcore.make_sdist(ROOT, files, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(a.read_bytes()))) as tar:
        names = set(tar.getnames())
    top = "spikeedge-%s/" % __version__
    for need in ("setup.py", "pyproject.toml", "PKG-INFO", "README.md", "runtime/_core.c", "runtime/cores.py", "tasks/data/digits.csv.gz"):
        assert top + need in names, need
    assert not any(n.endswith((".so", ".pyc")) for n in names)
    assert boardcore.build_requires(ROOT) and all(isinstance(r, str) for r in boardcore.build_requires(ROOT))

    # a build is judged by setup.py's own list of extensions: every one must be in the wheel
    import zipfile

    def wheel(*names: str) -> Path:
        path = tmp_path / ("w%d.whl" % len(names))
        with zipfile.ZipFile(path, "w") as z:
            for n in ("spikeedge/__init__.py",) + names:
                z.writestr(n, b"")
        return path

    declared = boardcore.missing_extensions(wheel(), a)  # an empty wheel lacks every one
    assert "spikeedge.runtime._core" in declared
    built = ["spikeedge/runtime/%s.cpython-311-aarch64-linux-gnu.so" % name.rsplit(".", 1)[1] for name in declared]
    assert boardcore.missing_extensions(wheel(*built), a) == []
    assert boardcore.missing_extensions(wheel(*built[1:]), a) == declared[:1]  # one missing is named


# ---------------------------------------------------------------------------- over SSH


def _bundle(path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_exact import random_model

    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt

    fmt.save(quantize_hrsnn(random_model("direct", "subtract", n=40, n_inputs=1, seed=4), np.random.default_rng(4).random((100, 1))), path)
    return path


@pytest.fixture(scope="module")
def host(tmp_path_factory: Any) -> Dict[str, Any]:
    pytest.importorskip("asyncssh", reason="deploying needs asyncssh (the deploy extra)")
    pytest.importorskip("torch", reason="making the bundle needs torch (the offline extra)")
    from sshd import Sshd

    from spikeedge.deploy.ssh import connect
    from spikeedge.deploy.targets import Target

    root = tmp_path_factory.mktemp("board-core")
    server = Sshd(root / "sshd")
    # a Python whose PATH has no compiler: the probe must see a board that cannot build the core
    bare = root / "python-no-cc"
    bare.write_text('#!/bin/sh\nPATH=/nonexistent exec %s "$@"\n' % BOARD_PYTHON)
    bare.chmod(0o755)
    known = root / "known_hosts"

    async def first_contact() -> None:
        conn = await connect(Target("b", "127.0.0.1", server.port, server.user, str(server.client_key), BOARD_PYTHON), known, accept_new=True)
        await conn.close()

    asyncio.run(first_contact())
    yield {"server": server, "known": known, "root": root, "bare": str(bare), "model": _bundle(root / "m.seb"),
           "cache": tmp_path_factory.getbasetemp() / "wheel-cache-core"}
    server.stop()


def _flash(host: Dict[str, Any], python: str, base: Path, **kw: Any) -> Any:
    from spikeedge.deploy.flash import Options
    from spikeedge.deploy.fleet import Access, run_fleet
    from spikeedge.deploy.targets import Target

    s = host["server"]
    target = Target("board", "127.0.0.1", s.port, s.user, str(s.client_key), python)
    [r] = run_fleet([target], "flash", host["model"], Options(remote_dir=str(base), wheel_cache=host["cache"], power_read=False, **kw),
                    Access(host["known"], timeout=60))
    if not r.ok and "fetching" in (r.error or ""):
        pytest.skip("no wheels for the board: %s" % r.error)
    return r


@pytest.mark.slow
def test_a_board_with_a_compiler_builds_the_core_from_the_sdist(host: Dict[str, Any]) -> None:
    base = host["root"] / "with-cc"
    r = _flash(host, BOARD_PYTHON, base, build_root="none")
    assert r.ok, (r.error, r.steps)
    assert r.probe["cc"] and r.probe["headers"] is True
    assert r.core == "compiled" and "built on the board" in r.core_note, (r.core, r.core_note)
    assert r.smoke["info"]["core"]["core"] == "compiled"  # the board's own `spikeedge info`
    sent = sorted(p.name for p in (base / "wheelhouse").glob("spikeedge-*"))
    assert sent == ["spikeedge-%s-py3-none-any.whl" % __version__, "spikeedge-%s.tar.gz" % __version__]  # sdist + fallback
    assert any((base / "venv").rglob("_core.cpython-*.so"))  # built there, not sent


@pytest.mark.slow
def test_a_board_without_a_compiler_gets_the_numpy_core_with_the_reasons(host: Dict[str, Any], capsys: Any) -> None:
    base = host["root"] / "no-cc"
    not_a_root = host["root"] / "not-a-root"
    not_a_root.mkdir()
    r = _flash(host, host["bare"], base, build_root=str(not_a_root))
    assert r.ok, (r.error, r.steps)
    assert not r.probe["cc"]
    assert r.core == "numpy", r.core_note
    assert "no usr/bin/python3" in r.core_note and "no C compiler" in r.core_note, r.core_note
    assert r.smoke["info"]["core"]["core"] == "numpy"
    assert not any((base / "venv").rglob("_core.cpython-*.so"))
    release = os.readlink(base / "current")

    # asked for the compiled core, the same board fails in one line, before anything is switched;
    # what the board's record says is shown printable (here: an escape sequence planted in it)
    record = base / "venv" / "spikeedge-core.json"
    rec = json.loads(record.read_text())
    record.write_text(json.dumps(dict(rec, note=rec["note"] + " \x1b[2J")) + "\n")
    r2 = _flash(host, host["bare"], base, build_root="none", board_core="compiled")
    assert not r2.ok and "--board-core compiled" in r2.error and "no C compiler" in r2.error, r2.error
    assert "\x1b" not in r2.error and "?[2J" in r2.error and "\n" not in r2.error, r2.error
    assert os.readlink(base / "current") == release
    assert not (base / "lock").exists()

    # the command line: --build-root/--board-core, and `core`/`core_note` in --json
    from cli_helpers import call, one_json

    s = host["server"]
    inv = host["root"] / "boards.yml"
    inv.write_text("all:\n  hosts:\n    pi-1:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n      ansible_user: %s\n"
                   "      ansible_ssh_private_key_file: %s\n      ansible_python_interpreter: %s\n" % (s.port, s.user, s.client_key, host["bare"]))
    common = ["--inventory", inv, "--known-hosts", host["known"], "--remote-dir", base, "--build-root", "none", "--json"]
    rc, out, err = call(capsys, "flash", host["model"], *common, "--board-core", "compiled")
    assert rc == 1 and one_json(out)["failed"] == 1 and "--board-core compiled" in one_json(out)["hosts"][0]["error"], (out, err)
    rc, out, err = call(capsys, "flash", host["model"], *common)
    assert rc == 0, (out, err)
    [h] = one_json(out)["hosts"]
    assert h["core"] == "numpy" and "no C compiler" in h["core_note"] and "runtime present" in " ".join(h["steps"]), h
    rc, out, err = call(capsys, "flash", host["model"], *common, "--board-core", "fast")
    assert rc == 2 and "--board-core" in err and out == "", (rc, out, err)
