"""Deploy hardening (issue 18, items 1-6), against the real OpenSSH server on 127.0.0.1 of
``tests/sshd.py``, a real ``ssh-agent`` and, for the full disk, a real tmpfs: key discovery as
OpenSSH does it, ``@revoked`` and ``@cert-authority``, the lock protocol (a flash killed with
SIGKILL at every stage, then a plain retry), failures that are not ``DeployError``, stale
uploads, and a board whose Python fails.
"""

# ruff: noqa: F811  (``board``, the fixture shared with test_deploy.py, is imported and then requested by name)
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from cli_helpers import call, one_json
from sshd import Sshd, keygen
from test_deploy import BOARD_PYTHON, board, current, fleet, make_bundle, release_of  # noqa: F401  (board: the shared fixture)

from spikeedge.deploy.fleet import Access, run_jobs
from spikeedge.deploy.flash import HostResult
from spikeedge.deploy.ssh import connect
from spikeedge.deploy.targets import Target, parse_target
from spikeedge.errors import DeployError


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _whoami(target: Target, known: Path, **kw: Any) -> str:
    conn = await connect(target, known, **kw)
    try:
        return (await conn.run(["echo", "hello"])).stdout.strip()
    finally:
        await conn.close()


def _wait_for(check: Any, what: str, limit: float = 60.0) -> None:
    """Poll ``check()`` until true; the limit only bounds a hang, it asserts nothing about speed."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ----------------------------------------------------------------------------- 1. key discovery


@pytest.fixture
def bare_home(tmp_path: Path, monkeypatch: Any) -> Path:
    """A HOME with no keys and no agent: only what a test puts there is found."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: Any) -> Iterator[Path]:
    """A real ssh-agent on a private socket, stopped by its pid afterwards."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(sock.exists, "the ssh-agent socket", 10)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_key_only_in_the_ssh_agent_logs_in(board: Dict[str, Any], bare_home: Path, agent: Path) -> None:
    t = board["target"]
    subprocess.run(["ssh-add", "-q", t.key_file], check=True, env=dict(os.environ, SSH_AUTH_SOCK=str(agent)), capture_output=True)
    keyless = dataclasses.replace(t, key_file=None)
    assert _run(_whoami(keyless, board["known"])) == "hello"


def test_a_key_only_named_in_ssh_config_logs_in(board: Dict[str, Any], bare_home: Path) -> None:
    t = board["target"]
    (bare_home / ".ssh" / "config").write_text(
        "Host myboard\n    HostName 127.0.0.1\n    Port %d\n    User %s\n    IdentityFile %s\n" % (t.port, t.user, t.key_file))
    target = dataclasses.replace(parse_target("myboard"), python=BOARD_PYTHON)
    assert target.port is None and target.user is None and target.key_file is None
    assert _run(_whoami(target, board["known"])) == "hello"  # host key looked up under 127.0.0.1:port, as ssh does
    with (bare_home / ".ssh" / "config").open("a") as f:
        f.write("    UserKnownHostsFile %s\n" % board["known"])
    assert _run(_whoami(target, None)) == "hello"  # known_hosts from the config too
    [r] = fleet(board, "rollback", targets=[target])
    assert "authentication" not in (r.error or "") and "cannot connect" not in (r.error or ""), r.error


def test_proxyjump_in_ssh_config_is_followed(board: Dict[str, Any], bare_home: Path) -> None:
    """The board reached through a jump host (the same loopback sshd, forwarding to itself); a
    jump host that does not answer makes the connection fail, so the jump is really taken."""
    t = board["target"]
    host = "    HostName 127.0.0.1\n    Port %d\n    User %s\n    IdentityFile %s\n" % (t.port, t.user, t.key_file)
    (bare_home / ".ssh" / "config").write_text(
        "Host jump\n" + host + "Host viajump\n" + host + "    ProxyJump jump\n"
        "Host viadead\n" + host + "    ProxyJump %s@127.0.0.1:9\n" % t.user)
    (bare_home / ".ssh" / "known_hosts").write_text(board["known"].read_text())  # the jump host is checked there
    assert _run(_whoami(dataclasses.replace(parse_target("viajump"), python=BOARD_PYTHON), board["known"])) == "hello"
    with pytest.raises(DeployError, match="cannot connect"):
        _run(_whoami(dataclasses.replace(parse_target("viadead"), python=BOARD_PYTHON), board["known"]))


def test_no_key_anywhere_says_what_was_tried(board: Dict[str, Any], bare_home: Path) -> None:
    keyless = dataclasses.replace(board["target"], key_file=None)
    with pytest.raises(DeployError, match="authentication failed.*agent.*ssh/config"):
        _run(_whoami(keyless, board["known"]))


# ----------------------------------------------------------------------------- 2. host keys


def test_a_revoked_host_key_is_refused_with_and_without_accept_new(board: Dict[str, Any], tmp_path: Path) -> None:
    server: Sshd = board["server"]
    known = tmp_path / "known_hosts"
    line = "@revoked [127.0.0.1]:%d %s" % (server.port, Path(str(server.host_key) + ".pub").read_text().strip())
    known.write_text(line + "\n")
    for accept_new in (False, True):
        with pytest.raises(DeployError, match="REFUSED.*revoked"):
            _run(_whoami(board["target"], known, accept_new=accept_new))
    assert known.read_text() == line + "\n"  # no trusted line was added for the revoked key


def test_a_host_certificate_signed_by_a_cert_authority_line_is_trusted(tmp_path: Path) -> None:
    ca = keygen(tmp_path / "ca")
    host_key = keygen(tmp_path / "host_key")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "board", "-h", "-n", "127.0.0.1", str(host_key) + ".pub"], check=True)
    server = Sshd(tmp_path / "sshd", host_key=host_key, extra=["HostCertificate %s-cert.pub" % host_key])
    try:
        target = Target("certified", "127.0.0.1", server.port, server.user, str(server.client_key), BOARD_PYTHON)
        known = tmp_path / "known_hosts"
        known.write_text("@cert-authority [127.0.0.1]:%d %s" % (server.port, (tmp_path / "ca.pub").read_text()))
        before = known.read_text()
        assert _run(_whoami(target, known)) == "hello"  # no --accept-new-host-key needed
        assert known.read_text() == before
        other = keygen(tmp_path / "other_ca")
        known.write_text("@cert-authority [127.0.0.1]:%d %s" % (server.port, Path(str(other) + ".pub").read_text()))
        with pytest.raises(DeployError, match="REFUSED"):
            _run(_whoami(target, known, accept_new=True))  # a CA is listed: a certificate it did not sign is not "new"
    finally:
        server.stop()


# ----------------------------------------------------------------------------- 3. the lock

CHILD = r"""
import json, pathlib, sys, time
from spikeedge.deploy.fleet import Access, run_fleet
from spikeedge.deploy.flash import Options
from spikeedge.deploy.targets import Target
cfg = json.loads(sys.argv[1])
def on_stage(stage):
    if stage == cfg["stage"]:
        pathlib.Path(cfg["marker"]).write_text(stage)
        time.sleep(3600)
opts = Options(remote_dir=cfg["base"], wheelhouse=pathlib.Path(cfg["wheels"]), on_stage=on_stage)
run_fleet([Target(**cfg["target"])], "flash", pathlib.Path(cfg["bundle"]), opts, Access(pathlib.Path(cfg["known"])))
"""


def flash_until(board: Dict[str, Any], bundle: Path, stage: str, tmp_path: Path, base: Any = None) -> subprocess.Popen:
    """A flash in another process, stopped at ``stage`` (it sleeps there, holding the lock)."""
    marker = tmp_path / ("reached-" + stage)
    cfg = {"stage": stage, "marker": str(marker), "base": str(base or board["base"]), "wheels": str(board["wheels"]),
           "known": str(board["known"]), "bundle": str(bundle), "target": dataclasses.asdict(board["target"])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: marker.exists() or proc.poll() is not None, "the flash to reach " + stage, 300)
    except AssertionError:
        proc.kill()
        raise
    assert marker.exists(), "the flash ended before %s: %s" % (stage, proc.stderr.read().decode()[-2000:])
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def owner(board: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads((Path(board["base"]) / "lock" / "owner").read_text())


STAGES = ["locked", "probed", "runtime", "uploaded", "verified", "smoke-tested", "switched", "pruned"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_flash_killed_at_any_stage_then_a_plain_retry_succeeds(board: Dict[str, Any], tmp_path: Path, stage: str) -> None:
    bundle = make_bundle(tmp_path / "s.seb", 20 + STAGES.index(stage))
    proc = flash_until(board, bundle, stage, tmp_path)
    keeper = owner(board)["board_pid"]
    kill(proc)
    _wait_for(lambda: not _alive(keeper), "sshd on the board to notice the dead connection")  # the board's side, not ours
    [retry] = fleet(board, "flash", bundle)
    assert retry.ok, retry.error
    assert current(board) == release_of(bundle)
    assert not (Path(board["base"]) / "lock").exists()
    assert not list((Path(board["base"]) / "releases").glob("*.partial"))


def test_the_lock_names_its_holder_and_a_dead_keeper_is_taken_over(board: Dict[str, Any], tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "h.seb", 30)
    proc = flash_until(board, bundle, "locked", tmp_path)
    try:
        o = owner(board)
        assert o["pid"] == proc.pid and o["host"] and o["started"] <= time.time() and o["build"] and o["spikeedge"]
        assert _alive(o["board_pid"])
        [refused] = fleet(board, "flash", bundle)
        assert not refused.ok and "another deploy holds" in refused.error and "--break-lock" in refused.error
        assert "pid %d" % proc.pid in refused.error and len(refused.error.splitlines()) == 1
        os.kill(o["board_pid"], signal.SIGKILL)  # the keeper dies on the board, its lock stays behind
        _wait_for(lambda: not _alive(o["board_pid"]), "the keeper to die")
        assert (Path(board["base"]) / "lock" / "owner").exists()
    finally:
        kill(proc)
    [r] = fleet(board, "flash", bundle)
    assert r.ok, r.error
    assert any("took over the lock" in s and "no longer running" in s for s in r.steps), r.steps
    assert not (Path(board["base"]) / "lock").exists()


def test_a_lock_without_owner_record_needs_age_or_break_lock(board: Dict[str, Any], capsys: Any) -> None:
    lock = Path(board["base"]) / "lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text("spikeedge 0.1 since 1700000000\n")  # what an older spikeedge wrote
    [r] = fleet(board, "flash", board["a"])
    assert not r.ok and "no owner record" in r.error and "--break-lock" in r.error
    assert lock.exists()
    t = board["target"]
    rc, out, err = call(capsys, "flash", board["a"], "--to", "%s@127.0.0.1:%d" % (t.user, t.port), "--identity", t.key_file,
                        "--known-hosts", board["known"], "--remote-dir", board["base"], "--wheelhouse", board["wheels"], "--break-lock", "--json")
    assert rc == 0, err
    [host] = one_json(out)["hosts"]
    assert any("no owner record" in s for s in host["steps"]) and not lock.exists()
    lock.mkdir()
    os.utime(lock, (time.time() - 7200, time.time() - 7200))
    [r] = fleet(board, "flash", board["a"], deploy_timeout_s=3600)  # older than the deploy timeout: taken over
    assert r.ok, r.error
    assert not lock.exists()


# ----------------------------------------------------------------------------- 4, 5, 6


@pytest.fixture
def tiny_disk(board: Dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs as a board's remote dir (its runtime linked from the shared one)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs as the board's full disk needs root (CI runs as root)")
    if not (Path(board["base"]) / "venv").is_dir():
        assert fleet(board, "flash", board["a"])[0].ok
    base = tmp_path / "tiny"
    base.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(base)], capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % got.stderr.strip())
    try:
        (base / "venv").symlink_to(Path(board["base"]) / "venv")
        yield base
    finally:
        subprocess.run(["umount", "-l", str(base)], check=False)


def fill(base: Path, leave: int = 0) -> Path:
    """Fill the tmpfs to the last byte, then free ``leave`` bytes."""
    filler = base / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_full_board_disk_is_one_line_per_host_and_keeps_the_old_release(board: Dict[str, Any], tiny_disk: Path, capsys: Any) -> None:
    t = board["target"]
    common = ["--to", "%s@127.0.0.1:%d" % (t.user, t.port), "--identity", t.key_file, "--known-hosts", str(board["known"]),
              "--remote-dir", str(tiny_disk), "--wheelhouse", str(board["wheels"]), "--json"]
    rc, out, err = call(capsys, "flash", board["a"], *common)
    assert rc == 0, err
    old = os.path.basename(os.readlink(tiny_disk / "current"))
    filler = fill(tiny_disk, leave=4096)  # room for the lock's owner record, not for the bundle
    rc, out, err = call(capsys, "flash", board["b"], *common)
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    [host] = one_json(out)["hosts"]  # the summary is printed
    assert not host["ok"] and "upload" in host["error"] and "bytes free" in host["error"] and "\n" not in host["error"]
    assert os.path.basename(os.readlink(tiny_disk / "current")) == old
    assert not list((tiny_disk / "releases").glob("*.partial")) and not (tiny_disk / "lock").exists()
    filler.unlink()
    rc, out, err = call(capsys, "flash", board["b"], *common)
    assert rc == 0, err


def test_a_full_disk_while_writing_the_lock_owner_leaves_no_lock(board: Dict[str, Any], tiny_disk: Path) -> None:
    filler = fill(tiny_disk)
    [r] = _fleet_at(board, tiny_disk, "flash", board["a"])
    assert not r.ok and "owner record" in r.error and "No space left" in r.error, r.error
    assert not (tiny_disk / "lock").exists()
    filler.unlink()
    [r] = _fleet_at(board, tiny_disk, "flash", board["a"])
    assert r.ok, r.error


def _fleet_at(board: Dict[str, Any], base: Path, action: str, bundle: Any = None) -> Any:
    from spikeedge.deploy.fleet import run_fleet
    from spikeedge.deploy.flash import Options

    return run_fleet([board["target"]], action, bundle, Options(remote_dir=str(base), wheelhouse=board["wheels"]), Access(board["known"]))


def test_any_exception_on_one_host_leaves_the_others_results(board: Dict[str, Any]) -> None:
    async def job(conn: Any) -> HostResult:
        if conn.target.name == "broken":
            raise ValueError("a bug\nspread over lines")
        return HostResult(conn.target.name, True, "probe")

    twins = [dataclasses.replace(board["target"], name="broken"), board["target"]]
    results = run_jobs(twins, "probe", job, Access(board["known"]))
    assert [r.ok for r in results] == [False, True]
    assert results[0].error.startswith("broken: ") and "ValueError: spread over lines" in results[0].error


def test_stale_partial_uploads_are_removed_under_the_lock(board: Dict[str, Any], tmp_path: Path) -> None:
    a = make_bundle(tmp_path / "pa.seb", 40)
    kill(flash_until(board, a, "uploaded", tmp_path))
    stale = Path(board["base"]) / "releases" / (release_of(a) + ".partial")
    _wait_for(lambda: not (Path(board["base"]) / "lock").exists(), "the board to release the dead flash's lock")
    assert stale.is_file()  # an interrupted upload of bundle A ...
    [r] = fleet(board, "flash", make_bundle(tmp_path / "pb.seb", 41))  # ... and the next flash is bundle B
    assert r.ok, r.error
    assert not stale.exists() and any("removed stale uploads" in s for s in r.steps)


def test_a_failing_python_on_the_board_is_one_line_naming_board_and_step(board: Dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "broken-lib"
    broken.mkdir()
    (broken / "platform.py").write_text("raise RuntimeError('a broken board python')\n")
    wrapper = tmp_path / "python3"
    wrapper.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s \"$@\"\n" % (broken, BOARD_PYTHON))
    wrapper.chmod(0o755)
    t = dataclasses.replace(board["target"], name="pi-broken", python=str(wrapper))
    [r] = fleet(board, "flash", board["a"], targets=[t])
    assert not r.ok
    assert len(r.error.splitlines()) == 1 and r.error.startswith("pi-broken: ") and "probe" in r.error
    assert "RuntimeError: a broken board python" in r.error and "import json" not in r.error
    assert not (Path(board["base"]) / "lock").exists()
