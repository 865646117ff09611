"""``spikeedge flash`` and ``spikeedge rollback``: deploy a bundle to one board or a fleet over SSH
(``deploy/``), a per-host summary at the end; exit 1 when any host failed."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from ..errors import CheckFailed, SpikeedgeError
from .common import JsonOpt, emit, in_range, out_console

ToOpt = typer.Option(None, "--to", help="One board: [USER@]HOST[:PORT]; HOST may be a ~/.ssh/config Host alias (its User, Port, IdentityFile, ProxyJump apply).")
InvOpt = typer.Option(None, "--inventory", help="An Ansible YAML inventory (ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file, ansible_python_interpreter, spikeedge_board).")
GroupOpt = typer.Option(None, "--group", help="Only this inventory group.")
KnownOpt = typer.Option(None, "--known-hosts", help="known_hosts file (default: ~/.ssh/config's UserKnownHostsFile, else ~/.ssh/known_hosts).")
AcceptOpt = typer.Option(False, "--accept-new-host-key", help="Accept and record the key of a host never seen before (a changed key is always refused).")
IdentityOpt = typer.Option(None, "--identity", help="Private key file (else the inventory's); the SSH agent, ~/.ssh/id_* and ~/.ssh/config's IdentityFile are tried too, as by ssh.")
RemoteOpt = typer.Option(".spikeedge", "--remote-dir", help="Folder on the board (relative to the login's home).")
ConcOpt = typer.Option(4, "--concurrency", callback=in_range(1, 256), help="Boards deployed at once.")
BreakOpt = typer.Option(False, "--break-lock", help="Take the board's deploy lock even if its holder may still be running (a lock whose holder is provably gone is taken over without it).")


def _targets(to: Optional[str], inventory: Optional[Path], group: Optional[str]) -> List[Any]:
    from ..deploy.targets import load_inventory, parse_target

    if (to is None) == (inventory is None):
        raise SpikeedgeError("give either --to [USER@]HOST[:PORT] or --inventory FILE")
    if group is not None and inventory is None:
        raise SpikeedgeError("--group needs --inventory")
    return [parse_target(to)] if to is not None else load_inventory(inventory, group)


def _finish(results: List[Any], as_json: bool) -> None:
    rows = [asdict(r) for r in results]
    summary: Dict[str, Any] = {"hosts": rows, "ok": sum(r.ok for r in results), "failed": sum(not r.ok for r in results)}
    emit(summary, as_json, human=_show)
    if summary["failed"]:
        raise CheckFailed("%d of %d host(s) failed: %s" % (summary["failed"], len(rows), ", ".join(r.target for r in results if not r.ok)))


def _show(s: Dict[str, Any]) -> None:
    for r in s["hosts"]:
        state = "ok" if r["ok"] else "FAILED"
        out_console.print("%-20s %-8s %-6s %s" % (r["target"], r["action"], state, r["release"] or ""), highlight=False, markup=False)
        for step in r["steps"]:
            out_console.print("    " + step, highlight=False, markup=False)
        if r.get("core_note"):
            out_console.print("    core: " + r["core_note"], highlight=False, markup=False)
        if r["error"]:
            out_console.print("    error: " + r["error"], highlight=False, markup=False)


def flash(
    model: Path = typer.Argument(..., help="The bundle (.seb) to deploy."),
    to: Optional[str] = ToOpt,
    inventory: Optional[Path] = InvOpt,
    group: Optional[str] = GroupOpt,
    keep: int = typer.Option(3, "--keep", callback=in_range(2, 1000), help="Releases kept on each board (at least 2: the current and the one before)."),
    concurrency: int = ConcOpt,
    known_hosts: Optional[Path] = KnownOpt,
    accept_new_host_key: bool = AcceptOpt,
    identity: Optional[str] = IdentityOpt,
    remote_dir: str = RemoteOpt,
    wheelhouse: Optional[Path] = typer.Option(None, "--wheelhouse", help="Wheels for the board (spikeedge + numpy, typer, rich); default: built here and fetched for the board's platform."),
    break_lock: bool = BreakOpt,
    build_root: str = typer.Option("auto", "--build-root", help="Where the board's compiled core is built: a root file system of the board's architecture with gcc and the Python headers, run through qemu-user-static (needs root); 'auto': $SPIKEEDGE_BUILD_ROOT, else ~/.cache/spikeedge/arm64-bookworm if present; 'none'. Without one, a board with a compiler builds it; else it runs the numpy core (docs/deploy.md)."),
    board_core: str = typer.Option("auto", "--board-core", help="auto: the compiled core where it can be built, else numpy with a note; compiled: fail a board that would run numpy; numpy: send the pure-Python wheel."),
    as_json: bool = JsonOpt,
) -> None:
    """Flash a bundle to boards: probe, install offline, upload, verify, switch atomically.

    The runtime goes on with the compiled core when it can be built for the board; the sha256 is
    verified, a smoke test runs before the switch, and the last releases are kept. Each host's
    result says which core the model runs there (``core``) and why.

    Example: spikeedge flash model.seb --inventory boards.yml --group pis --json
    """
    from ..deploy.fleet import Access, run_fleet
    from ..deploy.flash import Options
    from ..runtime import bundle as fmt

    if keep < 2 or concurrency < 1:
        raise SpikeedgeError("--keep must be >= 2 and --concurrency >= 1")
    if board_core not in ("auto", "compiled", "numpy"):
        raise SpikeedgeError("--board-core %r: expected auto, compiled or numpy" % board_core)
    fmt.load(model)  # a corrupt or mismatched bundle is refused here, before any board is touched
    targets = _targets(to, inventory, group)
    opts = Options(remote_dir=remote_dir, keep=keep, wheelhouse=wheelhouse, break_lock=break_lock, build_root=build_root, board_core=board_core)
    results = run_fleet(targets, "flash", model, opts, Access(known_hosts, accept_new_host_key, identity), concurrency)
    _finish(results, as_json)


def rollback(
    to: Optional[str] = ToOpt,
    inventory: Optional[Path] = InvOpt,
    group: Optional[str] = GroupOpt,
    concurrency: int = ConcOpt,
    known_hosts: Optional[Path] = KnownOpt,
    identity: Optional[str] = IdentityOpt,
    remote_dir: str = RemoteOpt,
    break_lock: bool = BreakOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Return boards to their previous release (atomic switch of ``current``).

    Example: spikeedge rollback --to pi@192.168.1.20 --json
    """
    from ..deploy.fleet import Access, run_fleet
    from ..deploy.flash import Options

    targets = _targets(to, inventory, group)
    results = run_fleet(targets, "rollback", None, Options(remote_dir=remote_dir, break_lock=break_lock), Access(known_hosts, False, identity), concurrency)
    _finish(results, as_json)
