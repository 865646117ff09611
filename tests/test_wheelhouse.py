"""``flash`` from a plain ``pip install spikeedge``: the board's wheel is repacked from the
installed distribution (deploy/wheelhouse.py), and the dependency list is read from the wheel's
own metadata, never written a second time.

The installed distribution is real: the wheel built from this tree, installed with
``pip install --no-deps --target``. The child Pythons run with ``-S`` (no site processing, so no
editable-install finder can hand them this source tree) and the installed folder first on
``sys.path``; numpy and typer come from this environment's site-packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

from spikeedge.deploy import wheelhouse

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [sys.argv[1]]
    sys.path += json.loads(sys.argv[2])
    from pathlib import Path
    import spikeedge
    from spikeedge.deploy import wheelhouse
    from spikeedge.errors import DeployError
    out, info = Path(sys.argv[3]), json.loads(sys.argv[4])
    report = {"package": spikeedge.__file__, "source_tree": str(wheelhouse.source_tree())}
    try:
        first = wheelhouse.spikeedge_wheel(out / "a", info)
        second = wheelhouse.spikeedge_wheel(out / "b", info)
        report.update(wheel=str(first), again=str(second), build_id=wheelhouse.build_id(), wheels_id=wheelhouse.build_id(out / "a"))
    except DeployError as exc:
        report["error"] = str(exc)
    sys.stdout.write(json.dumps(report) + "\\n")
    """
)


def _site_dirs() -> List[str]:
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def _child(code: str, *args: str, cwd: Path, **extra_env: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra_env)
    proc = subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pip(*args: str, check: bool = True) -> bool:
    proc = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc.returncode == 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory: Any) -> Path:
    """This tree's wheel, installed as a plain (non-editable) distribution into a folder."""
    tmp = tmp_path_factory.mktemp("plain-install")
    src = tmp / "src"  # a copy, so that building leaves nothing in the checkout
    ignore = ("tests", "docs", "benchmarks", "tools", "build", "dist", "out", ".git", "__pycache__", "*.egg-info", ".venv",
              ".pytest_cache", ".hypothesis")
    import shutil

    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*ignore))
    # with this environment's setuptools when it can build (offline); else pip's isolated build;
    # without the compiled core (SPIKEEDGE_BUILD_CORE=0): the pure-Python wheel a board-side or
    # compiler-less install makes (a platform install is the next tests' case)
    os.environ["SPIKEEDGE_BUILD_CORE"] = "0"
    try:
        if not _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src), check=False):
            _pip("wheel", "--no-deps", "-w", str(tmp / "dist"), str(src))
    finally:
        del os.environ["SPIKEEDGE_BUILD_CORE"]
    [built] = (tmp / "dist").glob("spikeedge-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(tmp / "site"), str(built))
    return tmp / "site"


def _installed_files(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in (folder / "spikeedge").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_flash_wheel_from_a_plain_install(installed: Path, tmp_path: Path) -> None:
    report = _child(CHILD, str(installed), json.dumps(_site_dirs()), str(tmp_path), "null", cwd=tmp_path)
    assert report.get("error") is None, report["error"]
    assert report["package"] == str(installed / "spikeedge" / "__init__.py")   # really the installed copy
    assert report["source_tree"] == "None"
    wheel, again = Path(report["wheel"]), Path(report["again"])
    assert wheel.name == "spikeedge-%s-py3-none-any.whl" % wheelhouse.__version__
    assert wheel.read_bytes() == again.read_bytes()                              # reproducible
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert report["build_id"] == report["wheels_id"] == digest                   # the board records this

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert z.testzip() is None
        meta = z.read("spikeedge-%s.dist-info/METADATA" % wheelhouse.__version__).decode()
        assert "spikeedge.cli.app:console_main" in z.read("spikeedge-%s.dist-info/entry_points.txt" % wheelhouse.__version__).decode()
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "spikeedge/tasks/data/digits.csv.gz" in names and "spikeedge/tasks/data/mackey_glass_tau17.npy" in names
    assert "Requires-Dist: numpy" in meta and "Requires-Dist: typer" in meta

    # the board side: pip installs the repacked wheel, and gets the very same files, which run
    _pip("install", "--no-deps", "--no-index", "--target", str(tmp_path / "board"), str(wheel))
    assert _installed_files(tmp_path / "board") == _installed_files(installed)
    ran = _child(textwrap.dedent("""
        import contextlib, io, json, sys
        sys.path[:0] = [sys.argv[1]]
        sys.path += json.loads(sys.argv[2])
        import spikeedge
        from spikeedge.cli.app import main
        from spikeedge.tasks.registry import load_task
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["--version"])
        task = load_task("digits")
        print(json.dumps({"rc": rc, "version": out.getvalue().strip(), "file": spikeedge.__file__, "test": len(task.y_test)}))
        """), str(tmp_path / "board"), json.dumps(_site_dirs()), cwd=tmp_path)
    assert ran == {"rc": 0, "version": wheelhouse.__version__, "file": str(tmp_path / "board" / "spikeedge" / "__init__.py"),
                   "test": 451}


@pytest.mark.slow
def test_a_changed_installed_file_is_refused(installed: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(installed, copy)
    target = copy / "spikeedge" / "runtime" / "kernels.py"
    target.write_bytes(target.read_bytes() + b"\n# edited after install\n")
    report = _child(CHILD, str(copy), json.dumps(_site_dirs()), str(tmp_path), "null", cwd=tmp_path)
    assert "kernels.py: changed since spikeedge was installed" in report["error"]


BOARD = {"system": "Linux", "machine": "aarch64", "glibc": "2.31", "python": "3.8.10"}


@pytest.mark.slow
def test_a_platform_install_sends_the_boards_own_wheel(installed: Path, tmp_path: Path) -> None:
    """Installed from a platform wheel (a C extension built for this machine): nothing is
    repacked; the same release's wheel for the board's platform is fetched (here from a local
    folder standing in for the index: PIP_NO_INDEX, PIP_FIND_LINKS)."""
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(installed, copy)
    wheel_file = next(copy.glob("spikeedge-*.dist-info")) / "WHEEL"
    wheel_file.write_text(wheel_file.read_text().replace("Root-Is-Purelib: true", "Root-Is-Purelib: false")
                          .replace("Tag: py3-none-any", "Tag: cp311-cp311-linux_x86_64"))
    index = tmp_path / "index"
    index.mkdir()
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index), "PIP_CONFIG_FILE": os.devnull}
    report = _child(CHILD, str(copy), json.dumps(_site_dirs()), str(tmp_path / "none"), json.dumps(BOARD), cwd=tmp_path, **offline)
    assert "installed from a platform wheel (cp311-cp311-linux_x86_64, (not purelib)) and no wheel of it for the board" in report["error"]
    assert "--wheelhouse DIR" in report["error"]
    report = _child(CHILD, str(copy), json.dumps(_site_dirs()), str(tmp_path / "none"), "null", cwd=tmp_path, **offline)
    assert "the board's platform is needed" in report["error"]

    # the release's wheels for other platforms, as an index holds them; only the board's is taken
    v = wheelhouse.__version__
    built = next((installed.parent / "dist").glob("spikeedge-*.whl")).read_bytes()
    for tag in ("cp38-cp38-manylinux2014_aarch64", "cp38-cp38-manylinux2014_x86_64", "cp311-cp311-manylinux2014_aarch64"):
        (index / ("spikeedge-%s-%s.whl" % (v, tag))).write_bytes(built)
    report = _child(CHILD, str(copy), json.dumps(_site_dirs()), str(tmp_path / "got"), json.dumps(BOARD), cwd=tmp_path, **offline)
    assert report.get("error") is None, report["error"]
    assert Path(report["wheel"]).name == "spikeedge-%s-cp38-cp38-manylinux2014_aarch64.whl" % v
    assert report["wheels_id"] == hashlib.sha256(built).hexdigest()
    assert len(report["build_id"]) == 64 and report["build_id"] != report["wheels_id"]  # the release installed here


def test_wheelhouse_resolves_the_wheels_own_dependencies(tmp_path: Path, monkeypatch: Any) -> None:
    """The dependency list is written once (pyproject.toml): pip download is handed the spikeedge
    wheel, and no requirement string of its own."""
    assert not hasattr(wheelhouse, "DEPENDENCIES")
    calls: List[List[str]] = []

    class Done:
        returncode, stderr = 0, ""

    def fake_run(cmd: List[str], **kw: Any) -> Any:
        calls.append(cmd)
        if "wheel" in cmd:
            folder = Path(cmd[cmd.index("-w") + 1])
            (folder / "spikeedge-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        return Done()

    monkeypatch.setattr(wheelhouse.subprocess, "run", fake_run)
    info = {"system": "Linux", "machine": "aarch64", "glibc": "2.31", "python": "3.8.10"}
    folder = wheelhouse.wheelhouse_for(info, cache=tmp_path)
    build, download = calls
    assert build[build.index("wheel"):][:2] == ["wheel", "--no-deps"] and build[-1] == str(ROOT)
    assert "download" in download and download[-1] == str(folder / "spikeedge-0.1.0-py3-none-any.whl")
    opts = {"-d", "--python-version", "--implementation", "--platform", "--only-binary"}
    positional = [a for i, a in enumerate(download[download.index("download") + 1:], download.index("download") + 1)
                  if not a.startswith("-") and download[i - 1] not in opts]
    assert positional == [download[-1]], positional     # nothing but the wheel: its Requires-Dist decides
    assert download[download.index("--python-version") + 1] == "3.8"
    assert "manylinux_2_31_aarch64" in download and "manylinux2014_aarch64" in download
    # made once: a complete folder is reused; one without its completion mark (a make that was
    # interrupted) is made again from scratch
    assert wheelhouse.wheelhouse_for(info, cache=tmp_path) == folder and len(calls) == 2
    (folder / wheelhouse.COMPLETE).unlink()
    (folder / "numpy-half-downloaded.whl").write_bytes(b"")
    assert wheelhouse.wheelhouse_for(info, cache=tmp_path) == folder and len(calls) == 4
    assert not (folder / "numpy-half-downloaded.whl").exists() and (folder / wheelhouse.COMPLETE).is_file()


def test_build_id_covers_every_packaged_file() -> None:
    """Data files, errors.py, board/ and measure/ change the build too (the old list missed them)."""
    files = {str(p.relative_to(ROOT)) for p in wheelhouse._source_files(ROOT)}
    for name in ("errors.py", "pyproject.toml", "tasks/data/digits.csv.gz", "tasks/data/mackey_glass_tau17.npy",
                 "board/__init__.py", "measure/profile.py", "runtime/kernels.py", "cli/app.py"):
        assert name in files, name
    assert not any(f.startswith(("tests/", "docs/", "benchmarks/")) or "__pycache__" in f for f in files)
