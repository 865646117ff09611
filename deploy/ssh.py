"""SSH done properly, on asyncssh, with OpenSSH's defaults so that a board that ``ssh pi@host``
reaches is reached the same way: the agent (``SSH_AUTH_SOCK``), the default keys
``~/.ssh/id_*``, and ``~/.ssh/config`` (``Host`` aliases, ``HostName``, ``User``, ``Port``,
``IdentityFile``, ``ProxyJump``, ``HostKeyAlias``) all apply unless the inventory or the command
line says otherwise. Passing ``client_keys=None`` to asyncssh, as this module once did, turns all
of that off, which is why the key list is left at asyncssh's default unless a key is named.

Host keys are checked against known_hosts as OpenSSH does: a key listed ``@revoked`` is refused
always, ``@cert-authority`` lines are trusted for host certificates, a host never seen is
accepted only with an explicit option (and recorded), a *changed* key never. The decision is
made by asyncssh before authentication, so no credential is offered to a host that fails it.
Every remote argument is quoted, files go over SFTP, nothing secret is logged or written.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

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


def one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of ``text`` with control characters replaced, for error messages
    that must stay one line whatever the board printed."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return "".join(c if c.isprintable() else "?" for c in last)[:limit]


def describe(argv: Sequence[Any], what: Optional[str] = None) -> str:
    """How a remote command is named in an error: ``what`` when given, else its first words;
    never the text of a ``-c`` script (a whole probe script in an error is unreadable)."""
    if what:
        return what
    words = [str(a) for a in argv]
    if words and words[0] == "exec":
        words = words[1:]
    if len(words) > 1 and words[1] == "-c":
        return "`%s -c <script>`" % words[0]
    return "`%s`" % " ".join(w if w.isprintable() and "\n" not in w else "<...>" for w in words[:3])


class Connection:
    """One SSH connection to a target; ``run(argv)`` quotes every argument."""

    def __init__(self, conn: Any, target: Target) -> None:
        self.conn, self.target = conn, target

    async def run(self, argv: Sequence[str], check: bool = True, input: Optional[str] = None, what: Optional[str] = None) -> Result:
        cmd = " ".join(shlex.quote(str(a)) for a in argv)
        r = await self.conn.run(cmd, check=False, input=input)
        res = Result(int(r.exit_status if r.exit_status is not None else 255), str(r.stdout or ""), str(r.stderr or ""))
        if check and res.exit_status != 0:
            last = one_line(res.stderr) or one_line(res.stdout) or "no output"
            raise DeployError("%s: %s failed on the board (exit %d): %s" % (self.target.name, describe(argv, what), res.exit_status, last))
        return res

    async def python(self, code: str, *args: str, check: bool = True, what: Optional[str] = None) -> Result:
        """Run ``code`` with the target's Python (``ansible_python_interpreter``); ``what`` names
        the script in an error ("the probe")."""
        return await self.run([self.target.python, "-c", code, *args], check=check, what=what)

    async def start(self, argv: Sequence[str]) -> Any:
        """A long-running remote process whose stdin stays open (asyncssh ``SSHClientProcess``)."""
        return await self.conn.create_process(" ".join(shlex.quote(str(a)) for a in argv))

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


def _host_pattern(host: str, port: int) -> str:
    return host if port == 22 else "[%s]:%d" % (host, port)


def _resolve(target: Target, client_keys: Any, timeout: float) -> Tuple[Any, dict]:
    """asyncssh options with ``~/.ssh/config`` applied for this target (what ``ssh -G`` shows):
    the real host name, port, user, key files and jump host. Given values win over the config,
    as on ssh's command line."""
    asyncssh = _asyncssh()
    kw: dict = dict(host=target.host, client_keys=client_keys, connect_timeout=timeout, config=())  # (): ~/.ssh/config if readable
    if target.port is not None:
        kw["port"] = target.port
    if target.user:
        kw["username"] = target.user
    try:
        return asyncssh.SSHClientConnectionOptions(**kw), kw
    except (OSError, ValueError, asyncssh.Error) as exc:  # an unreadable key file, a bad config line
        raise DeployError("%s: SSH setup failed (%s)" % (target.name, one_line(str(exc)) or type(exc).__name__)) from None


def _known_keys(known: Path, host: str, port: int) -> Tuple[List[Any], List[Any], List[Any]]:
    """Trusted host keys, trusted CA keys (``@cert-authority``) and revoked keys (``@revoked``)
    that ``known`` lists for ``host`` and ``port``."""
    asyncssh = _asyncssh()
    if not known.is_file():
        return [], [], []
    try:  # looked up as ssh does: "[host]:port" only (asyncssh's own fallback to "host" drops @revoked lines)
        found = asyncssh.read_known_hosts(str(known)).match(_host_pattern(host, port), "", None)
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise DeployError("%s: unreadable known_hosts file (%s)" % (known, one_line(str(exc)))) from None
    return list(found[0]), list(found[1]), list(found[2])


def _client_factory(accept_new: bool) -> Any:
    """An asyncssh client that accepts a host key not in known_hosts only when ``accept_new``.
    asyncssh asks it only after checking the revoked list, so a revoked key is never accepted."""
    asyncssh = _asyncssh()

    class Client(asyncssh.SSHClient):  # type: ignore[misc,name-defined]
        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            return accept_new

    return Client


async def connect(target: Target, known_hosts: Optional[Path] = None, accept_new: bool = False, identity: Optional[str] = None,
                  timeout: float = 20.0) -> Connection:
    """Connect with host-key checking. ``known_hosts`` defaults to the config's
    ``UserKnownHostsFile``, else ``~/.ssh/known_hosts``; with
    ``accept_new`` a host that has no trusted entry there is accepted and recorded (trust on
    first use, asked for explicitly); a changed key and a revoked key are always refused."""
    asyncssh = _asyncssh()
    key = identity or target.key_file
    opts, kw = _resolve(target, [str(Path(key).expanduser())] if key else (), timeout)
    configured = [str(p) for p in (opts.known_hosts or []) if isinstance(p, (str, Path))]  # UserKnownHostsFile
    known = Path(known_hosts or (configured[0] if configured else Path.home() / ".ssh" / "known_hosts")).expanduser()
    host, port = opts.host_key_alias or opts.host, int(opts.port)
    pattern = _host_pattern(host, port)
    trusted, cas, revoked = _known_keys(known, host, port)
    new_host = not trusted and not cas
    if new_host and not accept_new and not revoked:
        raise DeployError("%s: host key of %s is not in %s; check it and connect once with --accept-new-host-key" % (
            target.name, pattern, known))
    try:
        conn = await asyncssh.connect(known_hosts=(trusted, cas, revoked), client_factory=_client_factory(accept_new and new_host), **kw)
    except asyncssh.HostKeyNotVerifiable as exc:
        if "revoked" in str(exc).lower():
            raise DeployError("%s: REFUSED: the host key of %s was revoked (@revoked in %s)" % (target.name, pattern, known)) from None
        if new_host:
            raise DeployError("%s: host key of %s is not in %s; check it and connect once with --accept-new-host-key" % (
                target.name, pattern, known)) from None
        raise DeployError("%s: REFUSED: the host key of %s does not match %s (%s); if the board was reinstalled, "
                          "remove its line from that file after checking the new key" % (target.name, pattern, known, one_line(str(exc)))) from None
    except asyncssh.PermissionDenied:
        raise DeployError("%s: authentication failed for user %r (tried the SSH agent, ~/.ssh/id_*, ~/.ssh/config's IdentityFile "
                          "and any key given; give one with ansible_ssh_private_key_file or --identity)" % (target.name, opts.username)) from None
    except (OSError, asyncssh.Error) as exc:
        raise DeployError("%s: cannot connect to %s (%s)" % (target.name, pattern, one_line(str(exc)) or type(exc).__name__)) from None
    if new_host:
        server_key = conn.get_server_host_key()
        try:
            known.parent.mkdir(parents=True, exist_ok=True)
            with open(known, "a", encoding="utf-8") as f:
                f.write("%s %s\n" % (pattern, server_key.export_public_key("openssh").decode().strip()))
        except OSError as exc:
            conn.close()
            raise DeployError("%s: cannot record the host key in %s (%s)" % (target.name, known, exc.strerror or exc)) from None
    return Connection(conn, target)


def quote_all(argv: List[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
