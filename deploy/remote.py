"""Remote runs: a spikeedge command executed on the board by the board's own runtime (installed
by ``spikeedge flash``), its JSON brought back. The model is uploaded to a scratch folder and
checked by sha256 first; the deployed ``current`` release is left alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

from ..errors import DeployError
from .flash import REMOTE_SHA, HostResult, file_sha256
from .ssh import Connection


async def remote_command(conn: Connection, remote_dir: str, command: List[str], model: Optional[Path], action: str) -> HostResult:
    """Run ``spikeedge <command...> --json`` on the board; the token ``{model}`` in ``command``
    becomes the uploaded copy of ``model``."""
    t0 = time.time()
    res = HostResult(conn.target.name, False, action)
    exe = remote_dir + "/venv/bin/spikeedge"
    have = await conn.run([exe, "--version"], check=False)
    if have.exit_status != 0:
        raise DeployError("%s: no spikeedge runtime in %s/venv: flash a model to this board first" % (conn.target.name, remote_dir))
    argv = list(command)
    if model is not None:
        sha = file_sha256(model)
        remote = "%s/scratch/%s%s" % (remote_dir, sha[:16], model.suffix)
        await conn.run(["mkdir", "-p", remote_dir + "/scratch"])
        await conn.put(model, remote)
        if (await conn.python(REMOTE_SHA, remote)).stdout.strip() != sha:
            raise DeployError("%s: the model arrived corrupted; nothing was run" % conn.target.name)
        argv = [remote if a == "{model}" else a for a in argv]
        res.steps.append("uploaded %s (sha256 %s...)" % (model.name, sha[:12]))
    r = await conn.run([exe] + argv + ["--json"], check=False)
    if r.exit_status not in (0, 1):
        raise DeployError("%s: spikeedge %s failed on the board: %s" % (conn.target.name, argv[0], (r.stderr.strip().splitlines() or ["?"])[-1]))
    try:
        res.report = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeployError("%s: spikeedge %s printed no JSON on the board (exit %d: %s)" % (
            conn.target.name, argv[0], r.exit_status, (r.stderr.strip().splitlines() or ["no error output"])[-1][:300])) from None
    res.ok = r.exit_status == 0
    res.steps.append("ran spikeedge %s on the board" % argv[0])
    res.seconds = round(time.time() - t0, 3)
    return res
