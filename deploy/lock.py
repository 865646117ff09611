"""The deploy lock on a board: one deploy at a time, and never a lock that outlives its holder.

Protocol (``docs/deploy.md``). The lock is the folder ``<remote dir>/lock`` (``mkdir`` is atomic)
holding ``owner``, a JSON record of who holds it: the workstation's host name, process id and
user, the spikeedge version and build, when it started, and on the board the process id, its
start time (``/proc/<pid>/stat``) and the boot id of the *keeper*.

The keeper is one Python process on the board that takes the lock, writes ``owner`` (to a
temporary name, then renamed, so it is whole or absent) and then waits on its stdin, which is
the deploy's SSH channel. When the deploy ends it closes that stdin; when the workstation dies
or the network drops, sshd closes it: either way the keeper removes the lock (only if ``owner``
still names it). So a killed ``flash`` leaves no lock, and a failure writing ``owner`` (a full
disk) removes the folder it made before reporting.

A lock found in place is taken over only when its holder is provably gone: its keeper's pid is
not alive on the board (or is alive with another start time: a reused pid), or the board has
rebooted since (another boot id). A lock without a readable owner record (an older spikeedge,
a board that lost power in the middle of taking it) is taken over once it is older than the
deploy timeout. Anything else (a keeper still running, e.g. behind a dropped network that sshd
has not noticed yet) is refused, naming the holder; ``--break-lock`` takes it anyway. Two
deploys taking over the same dead lock are serialised by ``mkdir lock/takeover``, and the winner
checks that ``owner`` is still the one it judged before writing its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any, Dict, Optional

from .. import __version__
from ..errors import DeployError
from .ssh import Connection, one_line

KEEPER = r"""
import json, os, shutil, sys, time
base, me, stale_after, force = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
d = os.path.join(base, "lock")
owner_path = os.path.join(d, "owner")

def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None

def ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None

def read_owner():
    try:
        with open(owner_path, "rb") as f:
            raw = f.read()
    except OSError:
        return None, None
    try:
        o = json.loads(raw.decode("utf-8"))
        return raw, (o if isinstance(o, dict) and isinstance(o.get("board_pid"), int) else None)
    except ValueError:
        return raw, None

def gone(o):
    if o.get("boot_id") and boot_id() and o["boot_id"] != boot_id():
        return "the board has rebooted since"
    try:
        os.kill(o["board_pid"], 0)
    except ProcessLookupError:
        return "its keeper (pid %d) is no longer running on the board" % o["board_pid"]
    except PermissionError:
        pass
    now = ticks(o["board_pid"])
    if now is not None and o.get("board_ticks") is not None and now != o["board_ticks"]:
        return "its keeper's pid %d now belongs to another process" % o["board_pid"]
    return None

def write_owner():
    tmp = os.path.join(d, "owner.%d" % os.getpid())
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(me))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, owner_path)
        return None
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        return e.strerror or str(e)

me.update(board_pid=os.getpid(), board_ticks=ticks(os.getpid()), boot_id=boot_id(), token="%d-%d" % (os.getpid(), time.time_ns()))
try:
    os.makedirs(base, exist_ok=True)
except OSError as e:
    say(ok=False, why="mkdir", error=e.strerror or str(e))
    sys.exit(0)
verdict = None
try:
    os.mkdir(d)
    fresh = True
except FileExistsError:
    fresh = False
except OSError as e:
    say(ok=False, why="mkdir", error=e.strerror or str(e))
    sys.exit(0)
if not fresh:
    raw, o = read_owner()
    try:
        age = time.time() - os.stat(d).st_mtime
    except OSError:
        say(ok=False, why="contended")
        sys.exit(0)
    reason = gone(o) if o is not None else None
    if o is not None and reason is None:
        if not force:
            say(ok=False, why="held", owner=o, age=age)
            sys.exit(0)
        verdict = "broke the lock (--break-lock) of a deploy still running on the board (pid %d)" % o["board_pid"]
    elif o is None and age < stale_after and not force:
        say(ok=False, why="no-owner", age=age)
        sys.exit(0)
    elif o is None:
        verdict = "took over a lock with no owner record, %.0f s old (%s)" % (age, "--break-lock" if age < stale_after else "older than the deploy timeout")
    else:
        verdict = "took over the lock of %s@%s (pid %s, started %s): %s" % (
            o.get("user"), o.get("host"), o.get("pid"), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.get("started") or 0)), reason)
    try:
        os.mkdir(os.path.join(d, "takeover"))
    except OSError:
        say(ok=False, why="contended")
        sys.exit(0)
    if read_owner()[0] != raw:
        os.rmdir(os.path.join(d, "takeover"))
        say(ok=False, why="contended")
        sys.exit(0)
error = write_owner()
if error is not None:
    shutil.rmtree(d, ignore_errors=True)
    say(ok=False, why="write", error=error)
    sys.exit(0)
if not fresh:
    os.rmdir(os.path.join(d, "takeover"))
say(ok=True, verdict=verdict, owner=me)
while sys.stdin.buffer.read(65536):
    pass
_, o = read_owner()
if o is not None and o.get("token") == me["token"]:
    shutil.rmtree(d, ignore_errors=True)
"""


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return "%d s" % seconds if seconds < 120 else "%d min" % (seconds // 60) if seconds < 7200 else "%.1f h" % (seconds / 3600)


class Lock:
    """``async with Lock(conn, base, build, stale_after, force)``: hold the board's deploy lock
    for the block (see the module docstring); ``verdict`` says whether a dead lock was taken
    over or broken, for the host's steps."""

    def __init__(self, conn: Connection, base: str, build: str = "", stale_after: float = 3600.0, force: bool = False) -> None:
        self.conn, self.path = conn, base + "/lock"
        self.base, self.build, self.stale_after, self.force = base, build, stale_after, force
        self.verdict: Optional[str] = None
        self.owner: Dict[str, Any] = {}
        self._proc: Any = None

    async def __aenter__(self) -> "Lock":
        name = self.conn.target.name
        me = {"host": socket.gethostname(), "pid": os.getpid(), "user": os.environ.get("USER") or os.environ.get("LOGNAME"),
              "started": time.time(), "spikeedge": __version__, "build": self.build}
        argv = ["exec", self.conn.target.python, "-c", KEEPER, self.base, json.dumps(me), "%g" % self.stale_after, "1" if self.force else "0"]
        self._proc = await self.conn.start(argv)
        line = await self._proc.stdout.readline()
        try:
            msg = json.loads(line)
        except ValueError:
            err = await self._drain()
            raise DeployError("%s: taking the deploy lock %s failed on the board: %s" % (name, self.path, err or "no output")) from None
        if not msg.get("ok"):
            await self._drain()
            raise DeployError(self._refusal(msg))
        self.verdict, self.owner = msg.get("verdict"), msg.get("owner") or {}
        return self

    def _refusal(self, msg: Dict[str, Any]) -> str:
        name, why = self.conn.target.name, msg.get("why")
        if why == "held":
            o = msg.get("owner") or {}
            return ("%s: another deploy holds %s: %s@%s, pid %s, spikeedge %s, started %s ago (its keeper, pid %s, is still running on "
                    "the board); if that deploy is gone, give --break-lock" % (
                        name, self.path, o.get("user"), o.get("host"), o.get("pid"), o.get("spikeedge"),
                        _ago(time.time() - float(o.get("started") or 0)), o.get("board_pid")))
        if why == "no-owner":
            return ("%s: %s is held with no owner record (an older spikeedge, or a board that lost power while taking it), %s old; "
                    "it is taken over once older than the deploy timeout (%s), or give --break-lock" % (
                        name, self.path, _ago(msg.get("age") or 0), _ago(self.stale_after)))
        if why == "write":
            return "%s: cannot write the lock's owner record in %s (%s); the lock was not kept" % (name, self.path, msg.get("error"))
        if why == "mkdir":
            return "%s: cannot create %s on the board (%s)" % (name, self.path, msg.get("error"))
        return "%s: another deploy took or released %s at the same moment; try again" % (name, self.path)

    async def _drain(self) -> str:
        """Close the keeper and return the last line it wrote to stderr."""
        try:
            self._proc.stdin.write_eof()
            _, err = await asyncio.wait_for(self._proc.communicate(), 30)
            return one_line(err or "")
        except Exception:  # the connection is gone: the board's sshd closes the keeper's stdin
            return ""

    async def __aexit__(self, *exc: Any) -> None:
        """Release: end the keeper's stdin; it removes the lock if the lock is still its own.
        Never raises, so the deploy's own error is the one reported."""
        if self._proc is not None:
            await self._drain()
