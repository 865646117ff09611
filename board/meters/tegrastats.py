"""Jetson power from ``tegrastats``: a line parser, a meter that follows a running tegrastats (a
subprocess it starts, or a log it writes), and a reader of whole logs. Used where the INA3221
sysfs files are absent or root-only. Standard library only.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading, _check_groups, _groups, _number, _pick_total, _total

# `RAIL instant/average`: JetPack 5+ with "mW" on both numbers, JetPack 4 without a unit. The
# lookahead refuses "RAM 2448/7772MB" and "SWAP 0/3886MB"; nothing is anchored at line start
# because newer versions prefix a timestamp.
_TEGRA_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(mW)?/(\d+)(mW)?(?![\w%/])")


def parse_tegrastats_line(line: str) -> Dict[str, float]:
    """Instant power per rail (mW) of one tegrastats line, in the order printed."""
    rails: Dict[str, float] = {}
    for m in _TEGRA_RAIL.finditer(line):
        if bool(m.group(3)) != bool(m.group(5)):
            continue
        rails[m.group(1)] = _number(m.group(2), "tegrastats rail %s" % m.group(1), 0.0,
                                    TegrastatsMeter.max_rail_mw, " mW")
    return rails


class TegrastatsMeter(PowerMeter):
    """Jetson power from tegrastats: a subprocess it starts, or a log file it follows.

    ``command`` defaults to ``tegrastats --interval <interval_ms>``; with ``logfile`` the meter
    follows a file written by ``sudo tegrastats --interval N --logfile F`` instead. ``read``
    returns the next line not yet returned (waiting for it), timed when it arrived.
    """

    kind = "tegrastats"
    paced = True
    # The same INA3221 rails: 26 V x 163.8 mV full scale on the smallest (1 mOhm) shunt.
    max_rail_mw = 26.0 * 163.8 * 1000.0

    def __init__(self, root: str = "/", interval_ms: int = 100,
                 command: Optional[Sequence[str]] = None, logfile: Optional[str] = None,
                 total_rail: Optional[str] = None, sum_rails: Optional[Sequence[str]] = None,
                 groups: Optional[Dict[str, Sequence[str]]] = None,
                 timeout_s: Optional[float] = None):
        self.root = root
        self.interval_ms = int(interval_ms)
        self.min_interval_s = self.interval_ms / 1000.0
        self.timeout_s = timeout_s if timeout_s is not None else max(2.0, 5 * self.min_interval_s)
        self._total_opts = (total_rail, sum_rails)
        self._groups_opt = groups
        self.groups: Dict[str, Tuple[str, ...]] = {}
        self._lines: "queue.Queue[Tuple[float, Optional[str]]]" = queue.Queue()
        self._proc: Optional[subprocess.Popen] = None
        self._file = None
        self._pending = ""
        self.logfile = logfile
        if logfile is not None:
            self.source = logfile
            try:
                self._file = open(logfile)
            except OSError as e:
                raise MeasurementError(f"cannot open tegrastats log {logfile}: {e.strerror}") from None
            self._file.seek(0, os.SEEK_END)  # only lines written from now on
        else:
            cmd = list(command) if command else ["tegrastats", "--interval", str(self.interval_ms)]
            self.source = " ".join(cmd)
            if shutil.which(cmd[0]) is None and not os.path.exists(cmd[0]):
                raise MeasurementError(f"`{cmd[0]}` not found on PATH: not a Jetson, or add L4T's "
                                       "tegrastats to PATH")
            if shutil.which("stdbuf"):  # a C program writing to a pipe buffers 4 KB: ask for lines
                cmd = ["stdbuf", "-oL"] + cmd
            try:
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                              universal_newlines=True, bufsize=1)
            except OSError as e:
                raise MeasurementError(f"cannot start `{self.source}`: {e.strerror}") from None
            threading.Thread(target=self._pump, daemon=True).start()
        self.total_rail: Optional[str] = None
        self.summed: List[str] = []
        self.rail_names: List[str] = []

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put((time.monotonic(), line))
        self._lines.put((time.monotonic(), None))  # end of output

    def _next_line(self) -> Tuple[float, str]:
        deadline = time.monotonic() + self.timeout_s
        if self._file is not None:
            while True:
                chunk = self._file.readline()
                if chunk:
                    self._pending += chunk
                    if self._pending.endswith("\n"):
                        line, self._pending = self._pending, ""
                        return time.monotonic(), line
                    continue
                if time.monotonic() > deadline:
                    raise MeasurementError(f"no new line in {self.logfile} for {self.timeout_s:g} s: "
                                           "is `tegrastats --logfile` still running?")
                time.sleep(min(0.01, self.min_interval_s / 4 or 0.01))
        try:
            t, line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            raise MeasurementError(f"`{self.source}` printed nothing for {self.timeout_s:g} s") from None
        if line is None:
            self._lines.put((t, None))
            raise MeasurementError(f"`{self.source}` exited: run it by hand to see why "
                                   "(some Jetsons need root)")
        return t, line

    def _read(self) -> Reading:
        while True:
            t, line = self._next_line()
            rails = parse_tegrastats_line(line)
            if rails:
                break
        if not self.rail_names:
            self.rail_names = list(rails)
            self.total_rail, self.summed = _pick_total(self.rail_names, *self._total_opts,
                                                       where=self.source)
            self.groups = _check_groups(self._groups_opt, self.rail_names, self.source)
        missing = [n for n in self.rail_names if n not in rails]
        if missing:
            raise MeasurementError(f"rail {missing[0]} missing from a line of `{self.source}`")
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        # the rails are known after the first read
        return self._rails_description(self.source, self.rail_names, "mW (instant value of each RAIL instant/average pair)")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._file is not None:
            self._file.close()


def read_tegrastats_log(path: str, interval_ms: int, total_rail: Optional[str] = None,
                        sum_rails: Optional[Sequence[str]] = None) -> List[Reading]:
    """Readings of a whole tegrastats log, one per line, timed ``i x interval_ms``.

    Log lines carry at most a one-second timestamp, so the interval given to
    ``tegrastats --interval`` is the clock. Lines without rails are skipped.
    """
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        raise MeasurementError(f"cannot read tegrastats log {path}: {e.strerror}") from None
    out: List[Reading] = []
    chosen: Optional[Tuple[Optional[str], List[str]]] = None
    for line in lines:
        rails = parse_tegrastats_line(line)
        if not rails:
            continue
        if chosen is None:
            chosen = _pick_total(list(rails), total_rail, sum_rails, path)
        out.append(Reading(len(out) * interval_ms / 1000.0, _total(rails, *chosen), rails))
    if not out:
        raise MeasurementError(f"no power rails in {path}: not a tegrastats log?")
    return out
