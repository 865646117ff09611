"""Installing the spikeedge runtime on a board, offline, with the core ``deploy/boardcore.py``
plans: the wheels made here (``deploy/wheelhouse.py``) are sent, the board's venv installs them
(building the sdist when the board builds its own core), and the board is asked which core loads.
The route and the core are recorded beside the build id, so that a later flash knows whether
the runtime there was made the way it would make it now."""

from __future__ import annotations

import asyncio
import json
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import __version__
from ..errors import DeployError
from .boardcore import CORE_CHECK, Plan, board_can_build, checked_probe, core_report, plan
from .wheelhouse import build_id, source_tree, wheelhouse_for

_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()  # per event loop: one wheelhouse made at a time


def _describe(route: str, root: Optional[Path]) -> str:
    return {"root": "built in the build root %s" % root, "board": "built on the board by pip from the sdist",
            "wheel": "the pure-Python wheel", "given": "the wheels of --wheelhouse"}[route]


async def ensure_runtime(conn: Any, base: str, info: Dict[str, Any], opts: Any, steps: List[str]) -> Dict[str, Any]:
    """The board's venv runs this very spikeedge build (``wheelhouse.build_id``, in
    ``venv/spikeedge-build``), installed offline from wheels we send, with the core ``plan``
    chose (``venv/spikeedge-core.json``: route, core and why). Returns that record. Both files are
    removed first and written last, so an interrupted install is redone by the next flash."""
    checked_probe(info)
    first = Plan("given") if opts.wheelhouse is not None else plan(info, opts.build_root, opts.board_core, source_tree() is not None)
    want = build_id(opts.wheelhouse)
    marker, record = base + "/venv/spikeedge-build", base + "/venv/spikeedge-core.json"
    have = await conn.run(["cat", marker, record], check=False)
    lines = have.stdout.strip().splitlines() if have.exit_status == 0 else []
    try:
        old = json.loads(lines[1]) if len(lines) == 2 and lines[0].strip() == want else None
    except ValueError:
        old = None
    if isinstance(old, dict) and old.get("planned") == first.route and old.get("core") in ("compiled", "numpy"):
        old = {"planned": first.route, "route": _last(str(old.get("route"))), "core": old["core"], "note": _last(str(old.get("note")), 600)}
        steps.append("runtime present (spikeedge %s, build %s, %s core)" % (__version__, want[:12], old["core"]))
        return _required(conn, opts, old)
    p, cache = first, opts.wheel_cache or Path.home() / ".cache" / "spikeedge" / "wheelhouse"
    if p.route == "given":
        wheels = opts.wheelhouse
    else:
        # in a worker thread (a build under qemu takes minutes: the fleet's other SSH sessions
        # must not stall), one host at a time (the next one finds the wheels cached)
        loop = asyncio.get_running_loop()
        async with _LOCKS.setdefault(loop, asyncio.Lock()):
            try:
                wheels = await loop.run_in_executor(None, wheelhouse_for, info, cache, p)
            except DeployError as exc:
                if p.route != "root":
                    raise
                p = Plan("board" if board_can_build(info) else "wheel", notes=p.notes + [str(exc)]
                         + ([] if board_can_build(info) else ["the board has no C compiler and Python headers"]))
                wheels = await loop.run_in_executor(None, wheelhouse_for, info, cache, p)
    await conn.run(["rm", "-f", marker, record])
    await conn.run(["mkdir", "-p", base + "/wheelhouse"])
    await conn.run(["sh", "-c", 'rm -f "$1"/spikeedge-*', "sh", base + "/wheelhouse"])  # another route's spikeedge must not be picked
    sent = sorted(Path(wheels).glob("*.whl")) + sorted(Path(wheels).glob("spikeedge-*.tar.gz"))
    for w in sent:
        await conn.put(w, base + "/wheelhouse/" + w.name)
    await conn.run([conn.target.python, "-m", "venv", base + "/venv"])
    pip = [base + "/venv/bin/python", "-m", "pip", "install", "-q", "--no-index", "--find-links", base + "/wheelhouse"]
    await conn.run([base + "/venv/bin/python", "-m", "pip", "uninstall", "-q", "-y", "spikeedge"], check=False)  # same version, new build
    spec = "spikeedge==%s" % __version__
    if p.route == "board":
        built = await conn.run(pip + ["--no-binary", "spikeedge", spec], check=False)
        if built.exit_status != 0:
            p = Plan("wheel", notes=p.notes + ["pip could not build the sdist on the board: %s" % _last(built.stderr)])
            await conn.run(pip + ["--only-binary", "spikeedge", spec])
    else:
        await conn.run(pip + [spec])
    check = await conn.run([base + "/venv/bin/python", "-c", CORE_CHECK], check=False, what="the core check")
    try:
        got = core_report(json.loads(check.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise DeployError("%s: the core check printed no JSON on the board (%s)" % (conn.target.name, _last(check.stderr) or "no output")) from None
    why = "; ".join(p.notes + ([got["why"]] if got["why"] else []))
    rec = {"planned": first.route, "route": p.route, "core": got["core"],
           "note": "%s core, %s%s" % (got["core"], _describe(p.route, p.root), ": " + why if why and got["core"] == "numpy" else "")}
    await conn.run(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", json.dumps(rec), record])
    await conn.run(["sh", "-c", 'echo "$1" > "$2"', "sh", want, marker])
    steps.append("runtime installed offline (%d files, build %s): %s" % (len(sent), want[:12], rec["note"]))
    return _required(conn, opts, rec)


def _last(text: str, limit: int = 300) -> str:
    """The last non-empty line of what a board printed, printable, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return "".join(c if c.isprintable() else "?" for c in (lines[-1] if lines else ""))[:limit]


def _required(conn: Any, opts: Any, rec: Dict[str, Any]) -> Dict[str, Any]:
    """``--board-core compiled``: a board left on the numpy core fails here, before anything is
    switched."""
    if opts.board_core == "compiled" and rec.get("core") != "compiled":
        raise DeployError("%s: --board-core compiled, but the board runs the %s" % (conn.target.name, rec.get("note")))
    return rec
