"""An emulated arm64 "Raspberry Pi OS" board for the deploy tests: a Debian 12 (bookworm, the
base of Raspberry Pi OS Bookworm, Python 3.11) arm64 root built with ``debootstrap`` and run under
``qemu-user-static`` through ``binfmt_misc``, with OpenSSH's sshd started *inside* it (the sshd
binary, the shell, Python and numpy there are all arm64 code run by qemu, on a Cortex-A72, a Pi 4
core). See ``../shared/reference/export.md`` and ``docs/deploy.md``.

The root is built once and cached (``$SPIKEEDGE_ARM64_ROOT``, else
``~/.cache/spikeedge/arm64-bookworm``): about 5 minutes and 600-800 MB (with the build tools). Prebuild it with::

    python tests/arm64_board.py build     # build (or reuse) the cached root
    python tests/arm64_board.py check     # ... then start the board and ask it `uname -m` over SSH

Needs root (binfmt_misc, mounts, chroot) and the Debian packages qemu-user-static, binfmt-support
and debootstrap. Whatever is missing is reported as :class:`Unavailable` with a plain reason,
which the tests turn into a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sshd import free_port, keygen  # noqa: E402

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = "/usr/bin/qemu-aarch64-static"
SUITE = "bookworm"
# gcc, libc6-dev and python3-dev: the root is also the build root in which `spikeedge flash`
# compiles the board's core (deploy/boardcore.py), and a board with a compiler
BUILD_TOOLS = ("gcc", "libc6-dev", "python3-dev")
PACKAGES = "python3,python3-venv,openssh-server,ca-certificates," + ",".join(BUILD_TOOLS)
READY = ".spikeedge-ready"
PER_PACKAGE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (?!required |the base )\S+( \S+)?$")  # one per package
QEMU_CPU = "cortex-a72"  # a Raspberry Pi 4 core (cortex-a76: a Pi 5)
# The ELF header of an aarch64 executable (e_ident + e_machine 0xb7), as qemu-user-static's own
# binfmt registration has it; F: qemu is opened now, so it also runs inside a chroot.
AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


class Unavailable(Exception):
    """This machine cannot run the emulated board; the message says why, plainly."""


def log(msg: str) -> None:
    print("[arm64-board] %s" % msg, file=sys.stderr, flush=True)


def default_cache() -> Path:
    return Path(os.environ.get("SPIKEEDGE_ARM64_ROOT") or Path.home() / ".cache" / "spikeedge" / "arm64-bookworm").expanduser()


def _tail(text: str, n: int = 3) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:]) or "no output"


def ensure_binfmt() -> Optional[str]:
    """Make sure aarch64 executables run here (through qemu): mount ``binfmt_misc`` if it is not,
    register the qemu-aarch64 handler if it is missing. None when ready, else the reason."""
    if not Path(QEMU).is_file():
        return "%s is missing (apt-get install qemu-user-static)" % QEMU
    if not (BINFMT / "register").exists():
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
        if r.returncode != 0 or not (BINFMT / "register").exists():
            return "binfmt_misc cannot be mounted at %s (%s): this machine cannot run arm64 binaries through qemu" % (
                BINFMT, _tail(r.stderr) if r.returncode else "mounted, but no register file")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
    if not entry.exists():
        try:
            (BINFMT / "register").write_text(":qemu-aarch64:M::%s:%s:%s:F" % (AARCH64_MAGIC, AARCH64_MASK, QEMU))
        except OSError as exc:
            return "cannot register the qemu-aarch64 binfmt handler (%s)" % exc
    try:
        if entry.read_text().splitlines()[0].strip() != "enabled":
            entry.write_text("1")
    except (OSError, IndexError) as exc:
        return "the qemu-aarch64 binfmt handler cannot be enabled (%s)" % exc
    return None


def _mounts_under(path: Path) -> List[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(prefix)]


def _remove_partial(path: Path) -> None:
    """Delete an unfinished root, never through a mount debootstrap may have left (a bound /dev)."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(path):
        log("left %s in place: something is still mounted inside it" % path)
        return
    shutil.rmtree(path, ignore_errors=True)


def build_root(cache_dir: Optional[Path] = None) -> Path:
    """The cached arm64 bookworm root, built with debootstrap if it is not there yet. The build
    goes to a temporary folder beside it, renamed when complete: an interrupted build is never
    reused. Raises :class:`Unavailable` when this machine cannot build it."""
    root = Path(cache_dir or default_cache()).expanduser()
    if (root / READY).is_file():
        return add_build_tools(root)
    reason = ensure_binfmt()
    if reason:
        raise Unavailable(reason)
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").is_file() else None)
    if debootstrap is None:
        raise Unavailable("debootstrap is missing (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise Unavailable("building the arm64 root needs root (debootstrap, chroot)")
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():  # a folder without the ready mark: not ours to trust
        _remove_partial(root)
    for stale in root.parent.glob(root.name + ".partial-*"):  # builds killed before they could clean up
        if stale.is_dir() and time.time() - stale.stat().st_mtime > 3600:
            _remove_partial(stale)
    work = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=root.parent))
    log("building an arm64 Debian %s root in %s with debootstrap (about 5 minutes; cached afterwards in %s)" % (SUITE, work, root))
    t0 = time.time()
    logfile = work.parent / (work.name + ".log")
    try:
        with open(logfile, "w") as out:
            proc = subprocess.Popen([debootstrap, "--arch=arm64", "--include=" + PACKAGES, SUITE, str(work)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            last = time.time()
            for line in proc.stdout:
                out.write(line)
                out.flush()
                per_package = PER_PACKAGE.match(line.strip())
                if not per_package or time.time() - last > 30:  # the phases, and a sign of life every 30 s
                    log("  %s (%.0f s)" % (line.strip(), time.time() - t0))
                    last = time.time()
            rc = proc.wait()
        if rc != 0:
            raise Unavailable("debootstrap failed (exit %d) after %.0f s: %s (log: %s)" % (
                rc, time.time() - t0, _tail(logfile.read_text(errors="replace")), logfile))
        check = subprocess.run(["chroot", str(work), "/usr/bin/python3", "-c", "import platform, sys; print(platform.machine(), sys.version.split()[0])"],
                               capture_output=True, text=True, env=dict(os.environ, QEMU_CPU=QEMU_CPU))
        if check.returncode != 0 or not check.stdout.startswith("aarch64 3.11"):
            raise Unavailable("the built root's python3 does not run as aarch64 Python 3.11: %s" % _tail(check.stdout + check.stderr))
        (work / READY).write_text("debootstrap --arch=arm64 --include=%s %s; %s; built in %.0f s\n" % (
            PACKAGES, SUITE, check.stdout.strip(), time.time() - t0))
        try:
            work.rename(root)
        except OSError:  # another build finished first
            if not (root / READY).is_file():
                raise
            _remove_partial(work)
        logfile.unlink()
    except BaseException:
        _remove_partial(work)
        raise
    log("arm64 root ready in %.0f s: %s" % (time.time() - t0, root))
    return root


def _installed(root: Path, packages: Sequence[str]) -> bool:
    """Whether dpkg's status file in ``root`` lists every package as installed."""
    try:
        status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return False
    done = {m.group(1) for m in re.finditer(r"^Package: (\S+)\n(?:[^\n]+\n)*?Status: install ok installed$", status, re.M)}
    return all(p in done for p in packages)


def add_build_tools(root: Path) -> Path:
    """A root built before the build tools were in ``PACKAGES`` gets them with apt-get inside it
    (about 2 minutes under qemu), under a lock so that concurrent test runs add them once; the
    root stays usable meanwhile (apt only adds files). An interrupted install is finished by
    ``dpkg --configure -a`` the next time."""
    if _installed(root, BUILD_TOOLS):
        return root
    reason = ensure_binfmt()
    if reason or os.geteuid() != 0:
        raise Unavailable(reason or "adding the build tools to the arm64 root needs root (chroot)")
    import fcntl

    with open(str(root) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(root, BUILD_TOOLS):
            return root
        log("adding %s to the arm64 root %s with apt-get (about 2 minutes under qemu)" % (", ".join(BUILD_TOOLS), root))
        t0 = time.time()
        script = ("export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a && apt-get -q update && "
                  "apt-get install -y -q --no-install-recommends %s && apt-get clean" % " ".join(BUILD_TOOLS))  # clean: the .debs, ~180 MB
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU}
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            'mount -t proc proc "$1/proc" && shift && exec "$@"', "sh", str(root),
                            "chroot", str(root), "/bin/sh", "-c", script], env=env, capture_output=True, text=True)
        if r.returncode != 0 or not _installed(root, BUILD_TOOLS):
            raise Unavailable("apt-get could not add %s to the arm64 root (exit %d): %s" % (
                ", ".join(BUILD_TOOLS), r.returncode, _tail(r.stdout + r.stderr)))
        log("build tools added in %.0f s" % (time.time() - t0))
    return root


class Board:
    """sshd running inside the arm64 root on 127.0.0.1:``port``; log in as root with
    ``client_key`` (on this machine). Its host key is throwaway, made for this board only."""

    user = "root"

    def __init__(self, root: Path, workdir: Path) -> None:
        reason = ensure_binfmt()
        if reason:
            raise Unavailable(reason)
        if os.geteuid() != 0:
            raise Unavailable("starting the arm64 board needs root (chroot, mounts)")
        ns = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
        if ns.returncode != 0:
            raise Unavailable("cannot make a private mount namespace for the board's /proc and /dev (%s)" % _tail(ns.stderr))
        self.root = Path(root)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.client_key = keygen(workdir / "client_key")
        # the server's files live inside the root (sshd reads them after chroot), one folder per board
        self.inside = "/etc/spikeedge-board/%s" % uuid.uuid4().hex[:12]
        conf = self.root / self.inside.lstrip("/")
        conf.mkdir(parents=True)
        self.host_key = keygen(conf / "host_key")
        (conf / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
        (conf / "sshd_config").write_text("\n".join([
            "Port %d" % self.port, "ListenAddress 127.0.0.1", "HostKey %s/host_key" % self.inside, "PidFile %s/sshd.pid" % self.inside,
            "AuthorizedKeysFile %s/authorized_keys" % self.inside, "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", "PermitRootLogin yes", "Subsystem sftp internal-sftp",
            "SetEnv QEMU_CPU=%s" % QEMU_CPU,  # sessions start with a clean environment: every remote program on the same core
            "LogLevel ERROR", "MaxStartups 50", "MaxSessions 50", ""]))
        (self.root / "run" / "sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder
        env = dict(os.environ, QEMU_CPU=QEMU_CPU)
        sshd = ["chroot", str(self.root), "/usr/sbin/sshd", "-D", "-e", "-f", self.inside + "/sshd_config"]
        # /proc and /dev inside the root, in a private mount namespace: they vanish with sshd and
        # are never seen (or left behind) on this machine
        r = str(self.root)
        mount = 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && shift && exec "$@"'
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", r] + sshd,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._wait_listening(60.0)

    def _wait_listening(self, timeout: float) -> None:
        import socket

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                self._cleanup()
                raise RuntimeError("sshd inside the arm64 root exited (%d): %s" % (self.proc.returncode, out.strip()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("sshd inside the arm64 root did not listen on port %d within %.0f s" % (self.port, timeout))

    def _cleanup(self) -> None:
        shutil.rmtree(self.root / self.inside.lstrip("/"), ignore_errors=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._cleanup()


def start_board(root: Path, workdir: Path) -> Board:
    return Board(root, workdir)


def remote_uname(board: Board, known_hosts: Path) -> str:
    """``uname -m`` on the board over SSH (the host key is recorded in ``known_hosts``)."""
    import asyncio

    from spikeedge.deploy.ssh import connect
    from spikeedge.deploy.targets import Target

    async def main() -> str:
        conn = await connect(Target("arm64-board", "127.0.0.1", board.port, board.user, str(board.client_key), "/usr/bin/python3"),
                             known_hosts, accept_new=True, timeout=60)
        try:
            return (await conn.run(["uname", "-m"])).stdout.strip()
        finally:
            await conn.close()

    return asyncio.run(main())


def main(argv: List[str]) -> int:
    if not argv or argv[0] not in ("build", "check"):
        print("usage: python tests/arm64_board.py build|check [CACHE_DIR]", file=sys.stderr)
        return 2
    try:
        root = build_root(Path(argv[1]) if len(argv) > 1 else None)
    except Unavailable as exc:
        print("arm64 board unavailable: %s" % exc, file=sys.stderr)
        return 1
    print(root)
    if argv[0] == "check":
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            board = start_board(root, Path(tmp))
            try:
                machine = remote_uname(board, Path(tmp) / "known_hosts")
            finally:
                board.stop()
            print("uname -m over ssh: %s (%.1f s with sshd start)" % (machine, time.time() - t0))
            return 0 if machine == "aarch64" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
