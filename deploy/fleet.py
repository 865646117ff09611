"""One board or a fleet: every target in parallel under a concurrency limit; a board that fails
does not stop the others; one result per host, always.

Whatever one host raises (``DeployError``, an asyncssh or OS error, a bug) becomes that host's
one-line error here, and ``gather`` runs with ``return_exceptions`` as a last guard, so one
board's failure can never cost the others' results or the fleet's summary."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, List, Optional

from .flash import HostResult, Options, flash_host, host_error, rollback_host
from .ssh import Connection, connect
from .targets import Target


@dataclass
class Access:
    known_hosts: Optional[Path] = None
    accept_new: bool = False
    identity: Optional[str] = None
    timeout: float = 20.0


async def _one(target: Target, action: str, job: Callable[[Connection], Awaitable[HostResult]], access: Access,
               sem: asyncio.Semaphore) -> HostResult:
    async with sem:
        try:
            conn = await connect(target, access.known_hosts, access.accept_new, access.identity, access.timeout)
        except Exception as exc:
            return HostResult(target.name, False, action, error=host_error(target.name, exc, "connecting"))
        try:
            return await job(conn)
        except Exception as exc:
            return HostResult(target.name, False, action, error=host_error(target.name, exc, action))
        finally:
            try:
                await conn.close()
            except Exception:
                pass


def run_jobs(targets: List[Target], action: str, job: Callable[[Connection], Awaitable[HostResult]], access: Access,
             concurrency: int = 4) -> List[HostResult]:
    """``job(connection)`` on every target; results in the targets' order."""

    async def main() -> List[HostResult]:
        sem = asyncio.Semaphore(max(1, concurrency))
        done = await asyncio.gather(*(_one(t, action, job, access, sem) for t in targets), return_exceptions=True)
        return [r if isinstance(r, HostResult) else HostResult(t.name, False, action, error=host_error(t.name, r, action))
                for t, r in zip(targets, done)]

    return asyncio.run(main())


def run_fleet(targets: List[Target], action: str, bundle: Optional[Path], opts: Options, access: Access, concurrency: int = 4) -> List[HostResult]:
    """``action`` ("flash" or "rollback") on every target; results in the targets' order."""

    def job(conn: Connection) -> Any:
        if action == "flash":
            assert bundle is not None
            return flash_host(conn, bundle, opts)
        return rollback_host(conn, opts)

    return run_jobs(targets, action, job, access, concurrency)
