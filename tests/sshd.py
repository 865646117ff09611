"""A real OpenSSH server on 127.0.0.1 for the deploy tests: throwaway host and client keys,
key authentication only, internal SFTP, started with ``subprocess.Popen`` and stopped with
``terminate()`` + ``wait()`` (``../shared/reference/export.md``). ``.ci/run`` installs
openssh-server; it never runs as a system service."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class Sshd:
    def __init__(self, folder: Path, port: Optional[int] = None, host_key: Optional[Path] = None, client_key: Optional[Path] = None,
                 extra: Sequence[str] = ()) -> None:
        """``extra``: more sshd_config lines (e.g. ``HostCertificate``)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port or free_port()
        self.host_key = host_key or keygen(folder / "host_key")
        self.client_key = client_key or keygen(folder / "client_key")
        auth = folder / "authorized_keys"
        auth.write_text(Path(str(self.client_key) + ".pub").read_text())
        self.user = getpass.getuser()
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join([
            "Port %d" % self.port, "ListenAddress 127.0.0.1", "HostKey %s" % self.host_key, "PidFile %s" % (folder / "sshd.pid"),
            "AuthorizedKeysFile %s" % auth, "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "UsePAM no", "StrictModes no", "PermitRootLogin yes", "Subsystem sftp internal-sftp",
            "LogLevel ERROR", "MaxStartups 50", "MaxSessions 50", *extra, ""]))
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation folder, missing outside systemd
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: %s" % self.proc.stdout.read().decode(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen on port %d" % self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
