"""SSH done properly, on asyncssh: host keys checked against known_hosts (a host never seen is
accepted only with an explicit option, a *changed* key never), key authentication, every remote
argument quoted, files sent over SFTP. Nothing secret is logged or written.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from ..errors import DeployError
from .targets import Target


@dataclass
class Result:
    exit_status: int
    stdout: str
    stderr: str


def _asyncssh() -> Any:
    try:
        import asyncssh
    except ImportError:
        raise DeployError("deploying needs asyncssh: pip install 'spikeedge[deploy]'") from None
    return asyncssh


def _known_entry(known_hosts: Path, target: Target) -> bool:
    """Whether ``known_hosts`` lists any key for the target's host and port."""
    asyncssh = _asyncssh()
    if not known_hosts.is_file():
        return False
    trusted = asyncssh.read_known_hosts(str(known_hosts)).match(target.host, "", target.port)
    return any(len(keys) for keys in trusted[:2])


def _host_pattern(target: Target) -> str:
    return target.host if target.port == 22 else "[%s]:%d" % (target.host, target.port)


class Connection:
    """One SSH connection to a target; ``run(argv)`` quotes every argument."""

    def __init__(self, conn: Any, target: Target) -> None:
        self.conn, self.target = conn, target

    async def run(self, argv: Sequence[str], check: bool = True, input: Optional[str] = None) -> Result:
        cmd = " ".join(shlex.quote(str(a)) for a in argv)
        r = await self.conn.run(cmd, check=False, input=input)
        res = Result(int(r.exit_status if r.exit_status is not None else 255), str(r.stdout or ""), str(r.stderr or ""))
        if check and res.exit_status != 0:
            last = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["no output"])[-1]
            raise DeployError("%s: `%s` failed (exit %d): %s" % (self.target.name, argv[0] if len(argv) < 3 else " ".join(map(str, argv[:3])), res.exit_status, last[:300]))
        return res

    async def python(self, code: str, *args: str, check: bool = True) -> Result:
        """Run ``code`` with the target's Python (``ansible_python_interpreter``)."""
        return await self.run([self.target.python, "-c", code, *args], check=check)

    async def put(self, local: Path, remote: str, fail_after: Optional[int] = None) -> None:
        """Upload ``local`` to ``remote`` over SFTP in chunks (``fail_after``: a test hook that
        drops the transfer after that many bytes, as a flaky link would)."""
        async with self.conn.start_sftp_client() as sftp:
            sent = 0
            async with sftp.open(remote, "wb") as f:
                with open(local, "rb") as src:
                    while True:
                        chunk = src.read(1 << 16)
                        if not chunk:
                            break
                        if fail_after is not None and sent + len(chunk) > fail_after:
                            await f.write(chunk[: max(0, fail_after - sent)])
                            raise DeployError("%s: the upload of %s was cut off after %d bytes" % (self.target.name, local.name, fail_after))
                        await f.write(chunk)
                        sent += len(chunk)

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


async def connect(target: Target, known_hosts: Optional[Path] = None, accept_new: bool = False, identity: Optional[str] = None,
                  timeout: float = 20.0) -> Connection:
    """Connect with host-key checking. ``known_hosts`` defaults to ``~/.ssh/known_hosts``; with
    ``accept_new`` a host that has no entry there is accepted and recorded (trust on first use,
    asked for explicitly); a host whose key differs from its entry is always refused."""
    asyncssh = _asyncssh()
    known = Path(known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
    key = identity or target.key_file
    keys: Any = [str(Path(key).expanduser())] if key else ()
    opts: dict = dict(port=target.port, client_keys=keys or None, connect_timeout=timeout)
    if target.user:
        opts["username"] = target.user  # else the local user name, as ssh does
    new_host = not _known_entry(known, target)
    if new_host and not accept_new:
        raise DeployError("%s: host key of %s is not in %s; check it and connect once with --accept-new-host-key" % (
            target.name, _host_pattern(target), known))
    try:
        if new_host:
            conn = await asyncssh.connect(target.host, known_hosts=None, **opts)
            server_key = conn.get_server_host_key()
            known.parent.mkdir(parents=True, exist_ok=True)
            with open(known, "a", encoding="utf-8") as f:
                f.write("%s %s\n" % (_host_pattern(target), server_key.export_public_key("openssh").decode().strip()))
        else:
            conn = await asyncssh.connect(target.host, known_hosts=str(known), **opts)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise DeployError("%s: REFUSED: the host key of %s does not match %s (%s); if the board was reinstalled, "
                          "remove its line from that file after checking the new key" % (target.name, _host_pattern(target), known, exc)) from None
    except asyncssh.PermissionDenied:
        raise DeployError("%s: authentication failed for user %r (give a key with ansible_ssh_private_key_file or --identity)" % (
            target.name, target.user)) from None
    except (OSError, asyncssh.Error) as exc:
        raise DeployError("%s: cannot connect to %s (%s)" % (target.name, _host_pattern(target), str(exc) or type(exc).__name__)) from None
    return Connection(conn, target)


def quote_all(argv: List[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
