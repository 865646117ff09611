"""``spikeedge bench --to``: the board's own runtime (installed by ``spikeedge flash`` over a real
OpenSSH server on loopback, ``tests/sshd.py``) benches an uploaded copy of the model, the run
record comes home and goes into the results store here. One flash, one bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
from cli_helpers import call, one_json
from bench_helpers import mackey_glass_files
from test_deploy import board, current, fleet  # noqa: F401  (board: the loopback sshd fixture)

from spikeedge.measure.bench import bench_model
from spikeedge.runtime.bundle import file_sha256

pytestmark = pytest.mark.slow


def test_bench_on_the_board_comes_home_to_the_store(board: Dict[str, Any], tmp_path: Path, capsys: Any) -> None:  # noqa: F811
    from spikeedge.results.store import Store

    model = mackey_glass_files(tmp_path)["event"]
    [flashed] = fleet(board, "flash", model)
    assert flashed.ok, flashed.error
    t = board["target"]
    db = tmp_path / "home.sqlite"
    rc, out, err = call(capsys, "bench", model, "--to", "%s@127.0.0.1:%d" % (t.user, t.port), "--known-hosts", board["known"],
                        "--identity", t.key_file, "--remote-dir", board["base"], "--task", "mackey-glass", "--trials", "2",
                        "--samples", "2", "--warmup", "1", "--meter", "estimate", "--label", "remote", "--db", db, "--json")
    assert rc == 0, (err, out)
    res = one_json(out)
    [host] = res["hosts"]
    assert host["ok"] and host["action"] == "bench" and any("uploaded m.seb" in s for s in host["steps"])
    [rec] = res["runs"]
    # the board's runtime ran it: its build digest is the one flash wrote into the board's venv
    build = (Path(board["base"]) / "venv" / "spikeedge-build").read_text().strip()
    env = rec["environment"]
    assert env["spikeedge_build"] == build and env["ssh_target"] == "%s@127.0.0.1:%d" % (t.user, t.port)
    assert rec["model"]["path"] == str(model) and rec["model"]["sha256"] == file_sha256(model) and rec["label"] == "remote"
    assert rec["model"]["name"] == model.name  # not the board's scratch copy's name (was "<sha256 prefix>.seb")
    # the same network on the same samples as here
    local = bench_model(model, "mackey-glass", trials=1, warmup=0, samples=2)
    assert rec["task"]["value"] == pytest.approx(local["task"]["value"], rel=1e-12)
    assert rec["workload"] == local["workload"]
    assert rec["power"]["label"] == "estimate" and rec["protocol"]["trials"] == 2
    with Store(db) as store:
        [stored] = store.runs()
    assert stored["run_id"] == rec["run_id"] == res["run_ids"][0] and stored["environment"]["ssh_target"] == env["ssh_target"]
    # the scratch copy was benched; the deployed release is untouched
    assert current(board) == flashed.release
    # over an inventory, the host's spikeedge_board is the board recorded (detection here finds this x86 host)
    inv = tmp_path / "boards.yml"
    inv.write_text("all:\n  hosts:\n    pi-1:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n      ansible_user: %s\n"
                   "      ansible_ssh_private_key_file: %s\n      spikeedge_board: rpi4\n" % (t.port, t.user, t.key_file))
    rc, out, err = call(capsys, "bench", model, "--inventory", inv, "--known-hosts", board["known"], "--remote-dir", board["base"],
                        "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0", "--meter", "none", "--no-store", "--json")
    assert rc == 0, (err, out)
    [rec] = one_json(out)["runs"]
    assert rec["board"] == "rpi4" and any("rpi4 as declared" in n for n in rec["notes"])
