"""Deploying over real SSH (no mock of the transport): an OpenSSH server on 127.0.0.1
(``tests/sshd.py``) is the board; its file system is this machine's, so the tests read the
board's state directly after each operation.

Flash (probe, offline runtime install, upload, sha256 check, smoke test, atomic switch),
rollback, an upload cut off midway, a bundle corrupted in transit, two concurrent flashes to one
board, a host never seen, a changed host key, the CLI over an Ansible inventory. Inventory
parsing is tested without SSH.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json

from spikeedge.deploy.fleet import Access, run_fleet
from spikeedge.deploy.flash import Options, file_sha256
from spikeedge.deploy.ssh import connect
from spikeedge.deploy.targets import Target, load_inventory, parse_target
from spikeedge.runtime import bundle as fmt
from spikeedge.errors import DeployError

from sshd import Sshd  # noqa: E402  (tests/ is on the path)

BOARD_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the board's python3, outside our venv


def make_bundle(path: Path, seed: int) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_exact import random_model

    from spikeedge.offline.quantize import quantize_hrsnn

    model = random_model("direct", "subtract", n=40, n_inputs=1, seed=seed)  # one input, as the Mackey-Glass task
    fmt.save(quantize_hrsnn(model, np.random.default_rng(seed).random((100, 1))), path)
    return path


@pytest.fixture(scope="module")
def board(tmp_path_factory: Any) -> Dict[str, Any]:
    """The sshd, a known_hosts with its key (accepted once, explicitly), the wheelhouse, two bundles."""
    from spikeedge.deploy.wheelhouse import wheelhouse_for

    root = tmp_path_factory.mktemp("board")
    server = Sshd(root / "sshd")
    target = Target("board", "127.0.0.1", server.port, server.user, str(server.client_key), BOARD_PYTHON)
    known = root / "known_hosts"
    info = {"machine": os.uname().machine, "system": "Linux", "python": "%d.%d.%d" % sys.version_info[:3],
            "glibc": os.confstr("CS_GNU_LIBC_VERSION").split()[-1]}
    wheels = wheelhouse_for(info, cache=tmp_path_factory.getbasetemp() / "wheel-cache")  # shared by the deploy test modules
    asyncio.run(_first_contact(target, known))
    yield {"server": server, "target": target, "known": known, "wheels": wheels, "base": str(root / "remote"),
           "a": make_bundle(root / "a.seb", 0), "b": make_bundle(root / "b.seb", 1), "root": root}
    server.stop()


async def _first_contact(target: Target, known: Path) -> None:
    conn = await connect(target, known, accept_new=True)
    await conn.close()


def opts(board: Dict[str, Any], **kw: Any) -> Options:
    return Options(remote_dir=board["base"], wheelhouse=board["wheels"], **kw)


def fleet(board: Dict[str, Any], action: str, bundle: Any = None, targets: Any = None, **kw: Any) -> Any:
    return run_fleet(targets or [board["target"]], action, bundle, opts(board, **kw), Access(board["known"]), concurrency=4)


def current(board: Dict[str, Any]) -> Any:
    link = Path(board["base"]) / "current"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def release_of(path: Path) -> str:
    return file_sha256(path)[:16]


@pytest.mark.slow
def test_flash_installs_smoke_tests_switches_and_rolls_back(board: Dict[str, Any]) -> None:
    [r] = fleet(board, "flash", board["a"])
    assert r.ok, r.error
    assert r.release == release_of(board["a"]) == current(board)
    assert r.probe["machine"] == os.uname().machine and r.probe["python"].startswith("%d.%d" % sys.version_info[:2])
    assert r.smoke["info"]["sha256"] == fmt.load(board["a"]).sha256  # the board's runtime loaded and checked it
    assert r.smoke["inference"]["finite"] and "power" in r.smoke
    installed = Path(board["base"]) / "releases" / r.release / "model.seb"
    assert installed.read_bytes() == board["a"].read_bytes()
    assert (Path(board["base"]) / "venv" / "bin" / "spikeedge").is_file()  # installed offline from our wheels

    [r2] = fleet(board, "flash", board["b"])
    assert r2.ok, r2.error
    assert r2.previous == r.release and current(board) == r2.release and "runtime present" in r2.steps[1]
    [back] = fleet(board, "rollback")
    assert back.ok and back.release == r.release == current(board)
    [forth] = fleet(board, "rollback")
    assert forth.ok and current(board) == r2.release
    assert not (Path(board["base"]) / "lock").exists()


def test_upload_cut_off_midway_leaves_the_active_release_and_a_retry_completes(board: Dict[str, Any], tmp_path: Path) -> None:
    c = make_bundle(tmp_path / "c.seb", 2)
    before = current(board)
    [cut] = fleet(board, "flash", c, fail_after_bytes=4096)
    assert not cut.ok and "cut off" in cut.error
    assert current(board) == before  # nothing switched
    partial = Path(board["base"]) / "releases" / (release_of(c) + ".partial")
    assert not partial.exists()  # removed under the lock on failure (issue 18, item 4)
    assert not (Path(board["base"]) / "lock").exists()  # the lock is released on failure
    [retry] = fleet(board, "flash", c)
    assert retry.ok, retry.error
    assert current(board) == release_of(c) and not partial.exists()


def test_bundle_corrupted_in_transit_is_refused_before_the_switch(board: Dict[str, Any], tmp_path: Path) -> None:
    d = make_bundle(tmp_path / "d.seb", 3)
    before = current(board)

    async def flip_a_byte(conn: Any, remote: str) -> None:
        code = "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 1; open(p, 'wb').write(b)"
        await conn.python(code, remote)

    [r] = fleet(board, "flash", d, after_upload=flip_a_byte)
    assert not r.ok and "corrupted" in r.error
    assert current(board) == before
    assert not (Path(board["base"]) / "releases" / release_of(d)).exists()
    assert not (Path(board["base"]) / "releases" / (release_of(d) + ".partial")).exists()


def test_two_concurrent_flashes_to_one_board_are_refused_cleanly(board: Dict[str, Any], tmp_path: Path) -> None:
    e = make_bundle(tmp_path / "e.seb", 4)

    async def hold(conn: Any, remote: str) -> None:
        await asyncio.sleep(1.5)  # keep the lock while the other deploy arrives

    twins = [board["target"], dataclasses.replace(board["target"], name="board-again")]
    results = fleet(board, "flash", e, targets=twins, after_upload=hold)
    ok = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(ok) == 1 and len(refused) == 1, [r.error for r in results]
    assert "another deploy holds" in refused[0].error
    assert current(board) == release_of(e)


@pytest.mark.slow
def test_old_releases_are_pruned_to_keep(board: Dict[str, Any], tmp_path: Path) -> None:
    for seed in (10, 11, 12):
        [r] = fleet(board, "flash", make_bundle(tmp_path / ("k%d.seb" % seed), seed), keep=2)
        assert r.ok, r.error
    releases = [p.name for p in (Path(board["base"]) / "releases").iterdir() if p.is_dir()]
    assert len(releases) == 2 and current(board) in releases


def test_unknown_host_needs_the_explicit_option(board: Dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="accept-new-host-key"):
        asyncio.run(connect(board["target"], tmp_path / "empty_known_hosts"))


def test_changed_host_key_is_refused(tmp_path: Path) -> None:
    first = Sshd(tmp_path / "one")
    target = Target("reinstalled", "127.0.0.1", first.port, first.user, str(first.client_key), BOARD_PYTHON)
    known = tmp_path / "known_hosts"
    try:
        asyncio.run(_first_contact(target, known))
    finally:
        first.stop()
    second = Sshd(tmp_path / "two", port=first.port, client_key=first.client_key)  # same address, new host key
    try:
        with pytest.raises(DeployError, match="REFUSED"):
            asyncio.run(connect(target, known, accept_new=True))  # even with the option
    finally:
        second.stop()


def test_cli_flash_and_rollback_over_an_inventory(board: Dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    t = board["target"]
    inv = tmp_path / "boards.yml"
    inv.write_text(
        "all:\n  children:\n    pis:\n      vars:\n        ansible_python_interpreter: %s\n      hosts:\n        pi-1:\n"
        "          ansible_host: 127.0.0.1\n          ansible_port: %d\n          ansible_user: %s\n"
        "          ansible_ssh_private_key_file: %s\n          spikeedge_board: rpi5\n"
        "    unreachable:\n      hosts:\n        ghost:\n          ansible_host: 127.0.0.1\n          ansible_port: 9\n"
        % (BOARD_PYTHON, t.port, t.user, t.key_file))
    common = ["--inventory", str(inv), "--known-hosts", str(board["known"]), "--remote-dir", board["base"]]
    f = make_bundle(tmp_path / "f.seb", 5)
    earlier = make_bundle(tmp_path / "e.seb", 6)  # a release to roll back to, whatever ran before this test
    rc, out, err = call(capsys, "flash", str(earlier), *common, "--group", "pis", "--wheelhouse", str(board["wheels"]), "--json")
    assert rc == 0, err
    rc, out, err = call(capsys, "flash", str(f), *common, "--group", "pis", "--wheelhouse", str(board["wheels"]), "--json")
    assert rc == 0, err
    s = one_json(out)
    assert s["ok"] == 1 and s["failed"] == 0 and s["hosts"][0]["target"] == "pi-1" and current(board) == release_of(f)
    rc, out, err = call(capsys, "rollback", *common, "--group", "pis", "--json")
    assert rc == 0, err
    assert one_json(out)["hosts"][0]["ok"] and current(board) != release_of(f)
    # the whole inventory: one board fails (nothing listens on port 9), the other still deploys
    rc, out, err = call(capsys, "flash", str(f), *common, "--accept-new-host-key", "--wheelhouse", str(board["wheels"]), "--json")
    assert rc == 1
    s = one_json(out)
    by = {h["target"]: h for h in s["hosts"]}
    assert by["pi-1"]["ok"] and not by["ghost"]["ok"] and "cannot connect" in by["ghost"]["error"]
    assert "ghost" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- targets (no SSH)


def test_parse_target() -> None:
    assert parse_target("pi@10.0.0.5:2222") == Target("pi@10.0.0.5:2222", "10.0.0.5", 2222, "pi")
    assert parse_target("jetson").port is None and parse_target("jetson").user is None  # ~/.ssh/config's, else ssh's defaults
    assert parse_target("pi@[fe80::1]:22").host == "fe80::1"
    for bad in ("pi@", "a b", "host:0", "host:70000", "@host"):
        with pytest.raises(DeployError):
            parse_target(bad)


def test_inventory_variables_groups_and_errors(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("""
all:
  vars:
    ansible_user: pi
  hosts:
    lone: {}
  children:
    pis:
      vars: {ansible_port: 2200, spikeedge_board: rpi5}
      hosts:
        pi-1: {ansible_host: 10.0.0.1}
        pi-2: {ansible_host: 10.0.0.2, ansible_port: 2201}
    jetsons:
      vars: {ansible_user: nvidia, ansible_python_interpreter: /usr/bin/python3.8}
      children:
        orins:
          hosts:
            orin-1: {ansible_host: 10.0.1.1, ansible_ssh_private_key_file: ~/.ssh/orin}
""")
    hosts = {t.name: t for t in load_inventory(inv)}
    assert set(hosts) == {"lone", "pi-1", "pi-2", "orin-1"}
    assert hosts["lone"].host == "lone" and hosts["lone"].user == "pi" and hosts["lone"].port is None
    assert (hosts["pi-1"].port, hosts["pi-2"].port, hosts["pi-1"].board) == (2200, 2201, "rpi5")
    o = hosts["orin-1"]
    assert o.user == "nvidia" and o.python == "/usr/bin/python3.8" and o.key_file == str(Path.home() / ".ssh" / "orin")
    assert o.groups == ("all", "jetsons", "orins")
    assert [t.name for t in load_inventory(inv, group="jetsons")] == ["orin-1"]
    assert [t.name for t in load_inventory(inv, group="pis")] == ["pi-1", "pi-2"]
    with pytest.raises(DeployError, match="no group 'gpus'"):
        load_inventory(inv, group="gpus")
    for text, words in [("all: [1, 2]\n", "not a mapping"), ("all:\n  hosts:\n    a: {ansible_port: x}\n", "not a number"),
                        ("all:\n  hostz: {}\n", "unknown key"), ("all: {hosts: {a: }\n", "not valid YAML"), ("", "inventory is a YAML mapping")]:
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(DeployError, match=words):
            load_inventory(bad)
    with pytest.raises(DeployError, match="no such inventory"):
        load_inventory(tmp_path / "missing.yml")


@pytest.mark.parametrize("argv,names", [
    (["flash", "x.seb", "--to", "pi@host"], ["x.seb"]),
    (["flash", "GOOD", "--to", "pi@host", "--inventory", "inv.yml"], ["--to", "--inventory"]),
    (["flash", "GOOD"], ["--to", "--inventory"]),
    (["flash", "GOOD", "--to", "pi@"], ["pi@"]),
    (["flash", "GOOD", "--inventory", "missing.yml"], ["missing.yml"]),
    (["flash", "GOOD", "--to", "pi@host", "--keep", "1"], ["--keep"]),
    (["rollback", "--to", "pi@host", "--group", "pis"], ["--group"]),
])
def test_user_errors(tmp_path: Path, capsys: Any, monkeypatch: Any, argv: Any, names: Any) -> None:
    monkeypatch.chdir(tmp_path)
    good = make_bundle(tmp_path / "good.seb", 0)
    argv = [str(good) if a == "GOOD" else a for a in argv]
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, *names)


def test_profile_runs_on_the_board_and_brings_results_back(board: Dict[str, Any], capsys: Any) -> None:
    from spikeedge.runtime.sessions import open_session
    from spikeedge.measure.profile import profile_model
    from spikeedge.tasks.registry import load_task

    if not (Path(board["base"]) / "venv").is_dir():
        fleet(board, "flash", board["a"])
    t = board["target"]
    rc, out, err = call(capsys, "profile", str(board["b"]), "--to", "%s@127.0.0.1:%d" % (t.user, t.port), "--known-hosts", str(board["known"]),
                        "--identity", t.key_file, "--remote-dir", board["base"], "--task", "mackey-glass", "--samples", "2", "--meter", "none", "--json")
    assert rc == 0, (err, out)
    [host] = one_json(out)["hosts"]
    remote = host["report"]
    spec = load_task("mackey-glass", repeats=2)
    xs = np.stack([w.train_x for w in spec.windows]).reshape(len(spec.windows), -1, 1)[:2]
    local = profile_model(open_session(fmt.load(board["b"])), xs)
    assert remote["spike_rate"] == local["spike_rate"] and remote["synops_per_inference"] == local["synops_per_inference"]
    assert remote["inferences"] == 2 and remote["phases_ms_per_inference"]
    assert current(board) is not None  # the deployed release was not touched


def test_a_different_runtime_build_on_the_board_is_replaced(board: Dict[str, Any], tmp_path: Path) -> None:
    """Same version number, other code: the build id, not the version, decides."""
    if not (Path(board["base"]) / "venv").is_dir():
        fleet(board, "flash", board["a"])
    marker = Path(board["base"]) / "venv" / "spikeedge-build"
    marker.write_text("an older build\n")
    [r] = fleet(board, "flash", make_bundle(tmp_path / "g.seb", 6))
    assert r.ok, r.error
    assert any(s.startswith("runtime installed offline") for s in r.steps), r.steps
    assert marker.read_text().strip() != "an older build"
    [again] = fleet(board, "flash", board["a"])
    assert any(s.startswith("runtime present") for s in again.steps), again.steps
