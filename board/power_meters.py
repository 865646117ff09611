"""Power meters of edge boards and development hosts behind one small interface.

Every meter has ``read() -> Reading``, ``min_interval_s`` (the sensor's real refresh period:
sampling faster repeats values) and ``describe()`` (meter kind, device path, rails, and which
rail is the total or which rails are summed). Units are fixed: power in mW, energy in J, time in
seconds of ``time.monotonic()``. Layouts follow ``../shared/reference/boards.md``; every meter
takes a file-system ``root`` (default ``/``) so tests can point it at fixture trees.

Kinds (``open_meter(kind, root="/", **options)``; ``detect_meter(root)`` picks one):

=================  ========================================================================
``ina3221-hwmon``  Jetson, JetPack 5/6: ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``
``ina3221-iio``    Jetson, JetPack 4: ``/sys/bus/i2c/drivers/ina3221x/<bus>-0040/iio:device0/``
``tegrastats``     Jetson: a running ``tegrastats --interval N`` or a log it writes
``rpi5-pmic``      Raspberry Pi 5: ``vcgencmd pmic_read_adc`` (misses the 5 V input: reads low)
``ina2xx-hwmon``   external INA219/INA226 through the kernel ``ina2xx`` hwmon driver
``ina2xx-i2c``     external INA219/INA226 read over I2C with smbus2 (TI register map)
``rapl``           Intel/AMD RAPL energy counters: ``/sys/class/powercap/intel-rapl:N/``
``estimate``       synaptic operations x pJ per operation: an estimate, labelled as such
=================  ========================================================================

Counter meters (``counter = True``: RAPL, estimate) report the cumulative energy since they
were opened in ``Reading.energy_j``; their ``total_mw`` is the mean power since the previous
read. Errors are ``MeasurementError`` with one line naming the path or command and the fix.
"""

from __future__ import annotations

import glob
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import MeasurementError

# Rails that are a board's total input power, when a board has one (boards.md).
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

# Horowitz (45 nm) energy per operation in pJ, the figures NeuroBench estimates use.
PJ_PER_OP = {"fp32-mac": 4.6, "fp32-ac": 0.9, "int8-mac": 0.23, "int8-ac": 0.03}


@dataclass(frozen=True)
class Reading:
    time_monotonic: float  # s, time.monotonic() when the value was read
    total_mw: float  # mW: the total rail, or the sum of the summed rails
    rails: Dict[str, float]  # rail name -> mW
    groups: Dict[str, float] = field(default_factory=dict)  # e.g. Pi 5 "CPU", "DRAM" -> mW
    energy_j: Optional[float] = None  # counter meters: cumulative J since the meter opened
    estimate: bool = False  # True when computed from operation counts, not measured


class PowerMeter:
    """Base class. Subclasses set ``kind`` and implement ``read`` and ``describe``."""

    kind = "meter"
    counter = False  # True: Reading.energy_j is a cumulative energy counter
    estimate = False
    paced = False  # True: read() itself waits for the device's next value (tegrastats)
    min_interval_s = 0.0

    def read(self) -> Reading:
        raise NotImplementedError

    def describe(self) -> Dict[str, object]:
        raise NotImplementedError

    def _rails_description(self, device: str, rails: Sequence[str], units: str, **extra: object) -> Dict[str, object]:
        """``describe()`` of a meter of named rails with a total rule (``total_rail`` /
        ``summed``): the fields every meter reports, then ``extra``."""
        d: Dict[str, object] = {
            "meter": self.kind,
            "device": device,
            "rails": list(rails),
            "units": units,
            "groups": {g: list(m) for g, m in getattr(self, "groups", {}).items()},
            "min_interval_s": self.min_interval_s,
            "estimate": False,
        }
        if rails:
            d.update(_total_description(getattr(self, "total_rail", None), getattr(self, "summed", None)))
        d.update(extra)
        return d

    def close(self) -> None:
        """Release subprocesses or buses (no-op for sysfs meters)."""

    def __enter__(self) -> "PowerMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# small helpers


def _devices(root: str, pattern: str, kind: str, hint: str) -> List[str]:
    """The sysfs device folders matching ``pattern`` under ``root`` (sorted); none: one line
    naming where it looked and what to do."""
    dirs = sorted(glob.glob(os.path.join(root, pattern)))
    if not dirs:
        raise MeasurementError("no %s device under %s: %s" % (kind, os.path.join(root, pattern), hint))
    return dirs


def _read_text(path: str) -> str:
    """Read a sysfs file; every failure becomes a one-line MeasurementError with the fix."""
    try:
        with open(path) as f:
            return f.read().strip()
    except PermissionError:
        raise MeasurementError(
            f"permission denied reading {path}: run as root or `sudo chmod a+r {path}`"
        ) from None
    except FileNotFoundError:
        raise MeasurementError(
            f"sensor file vanished: {path} (driver unloaded or device renumbered); "
            "re-open the meter"
        ) from None
    except OSError as e:
        raise MeasurementError(f"cannot read {path}: {e.strerror or e}") from None


def _read_number(path: str) -> float:
    text = _read_text(path)
    try:
        return float(text)
    except ValueError:
        raise MeasurementError(f"not a number in {path}: {text[:40]!r}") from None


def _pick_total(names: Sequence[str], total_rail: Optional[str], sum_rails: Optional[Sequence[str]],
                where: str) -> Tuple[Optional[str], List[str]]:
    """Choose the total: an explicit or known total rail, else the sum of rails.

    Returns ``(total_rail, summed_rails)``; exactly one of them is meaningful.
    """
    for name in list(sum_rails or []) + ([total_rail] if total_rail else []):
        if name not in names:
            raise MeasurementError(f"no rail {name!r} at {where} (rails: {', '.join(names)})")
    if sum_rails:
        return None, list(sum_rails)
    if total_rail:
        return total_rail, []
    for name in TOTAL_RAILS:
        if name in names:
            return name, []
    return None, list(names)


def _total(rails: Dict[str, float], total_rail: Optional[str], summed: Sequence[str]) -> float:
    if total_rail is not None:
        return rails[total_rail]
    return float(sum(rails[n] for n in summed))


def _groups(rails: Dict[str, float], groups: Dict[str, Sequence[str]]) -> Dict[str, float]:
    return {g: float(sum(rails.get(r, 0.0) for r in members)) for g, members in groups.items()}


def _check_groups(groups: Optional[Dict[str, Sequence[str]]], names: Sequence[str],
                  where: str) -> Dict[str, Tuple[str, ...]]:
    out = {g: tuple(m) for g, m in (groups or {}).items()}
    for g, members in out.items():
        for r in members:
            if r not in names:
                raise MeasurementError(f"group {g!r}: no rail {r!r} at {where} "
                                       f"(rails: {', '.join(names)})")
    return out


def _total_description(total_rail: Optional[str], summed: Sequence[str]) -> Dict[str, object]:
    if total_rail is not None:
        return {"total": total_rail, "total_mode": "rail"}
    return {"total": " + ".join(summed), "total_mode": "sum", "summed_rails": list(summed)}


# ---------------------------------------------------------------------------------------------
# Jetson INA3221


class Ina3221HwmonMeter(PowerMeter):
    """Jetson INA3221 on JetPack 5/6 (hwmon). Power per channel = mV x mA / 1000 mW.

    Channels 1..3 only: ``in7_input`` / ``curr4_input`` are the chip's sums and are never added.
    Labels containing "NC" are unconnected. The hwmon number changes between boots: globbed.
    """

    kind = "ina3221-hwmon"
    pattern = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"

    def __init__(self, root: str = "/", total_rail: Optional[str] = None,
                 sum_rails: Optional[Sequence[str]] = None,
                 groups: Optional[Dict[str, Sequence[str]]] = None):
        self.root = root
        dirs = _devices(root, self.pattern, "INA3221 hwmon",
                        "not a JetPack 5/6 Jetson (JetPack 4: use --meter ina3221-iio or tegrastats)")
        self.devices = dirs
        # (rail name, voltage file, current file)
        self.channels: List[Tuple[str, str, str]] = []
        intervals = []
        for d in dirs:
            ui = os.path.join(d, "update_interval")
            if os.path.exists(ui):
                intervals.append(_read_number(ui) / 1000.0)
            for k in (1, 2, 3):
                label_file = os.path.join(d, f"in{k}_label")
                if not os.path.exists(label_file):
                    continue
                label = _read_text(label_file)
                if "NC" in label:
                    continue
                if any(label == c[0] for c in self.channels):  # same label on two chips
                    label = f"{label}@{os.path.basename(os.path.dirname(os.path.dirname(d)))}"
                self.channels.append(
                    (label, os.path.join(d, f"in{k}_input"), os.path.join(d, f"curr{k}_input"))
                )
        if not self.channels:
            raise MeasurementError(f"no labelled INA3221 channels in {', '.join(dirs)}")
        self.min_interval_s = max(intervals) if intervals else 0.0
        names = [c[0] for c in self.channels]
        self.total_rail, self.summed = _pick_total(names, total_rail, sum_rails, dirs[0])
        self.groups = _check_groups(groups, names, dirs[0])

    def read(self) -> Reading:
        t = time.monotonic()
        rails = {}
        for name, vfile, cfile in self.channels:
            rails[name] = _read_number(vfile) * _read_number(cfile) / 1000.0
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        return self._rails_description(", ".join(self.devices), [c[0] for c in self.channels], "mW (in mV x curr mA / 1000)")


class Ina3221IioMeter(PowerMeter):
    """Jetson INA3221 on JetPack 4 (iio): ``rail_name_{c}`` and ``in_power{c}_input`` (mW)."""

    kind = "ina3221-iio"
    pattern = "sys/bus/i2c/drivers/ina3221x/*-004*/iio:device*"

    def __init__(self, root: str = "/", total_rail: Optional[str] = None,
                 sum_rails: Optional[Sequence[str]] = None,
                 groups: Optional[Dict[str, Sequence[str]]] = None, min_interval_s: float = 0.01):
        self.root = root
        dirs = _devices(root, self.pattern, "INA3221 iio", "not a JetPack 4 Jetson (JetPack 5/6: use --meter ina3221-hwmon)")
        self.devices = dirs
        self.channels: List[Tuple[str, str]] = []
        for d in dirs:
            for c in (0, 1, 2):
                name_file = os.path.join(d, f"rail_name_{c}")
                if not os.path.exists(name_file):
                    continue
                name = _read_text(name_file)
                if "NC" in name:
                    continue
                self.channels.append((name, os.path.join(d, f"in_power{c}_input")))
        if not self.channels:
            raise MeasurementError(f"no rails in {', '.join(dirs)}")
        # JetPack 4 exposes no refresh period; 10 ms is above the chip's conversion cycle.
        self.min_interval_s = float(min_interval_s)
        names = [c[0] for c in self.channels]
        self.total_rail, self.summed = _pick_total(names, total_rail, sum_rails, dirs[0])
        self.groups = _check_groups(groups, names, dirs[0])

    def read(self) -> Reading:
        t = time.monotonic()
        rails = {name: _read_number(p) for name, p in self.channels}
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        return self._rails_description(", ".join(self.devices), [c[0] for c in self.channels], "mW (in_power)")


# ---------------------------------------------------------------------------------------------
# tegrastats

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
        rails[m.group(1)] = float(m.group(2))
    return rails


class TegrastatsMeter(PowerMeter):
    """Jetson power from tegrastats: a subprocess it starts, or a log file it follows.

    ``command`` defaults to ``tegrastats --interval <interval_ms>``; with ``logfile`` the meter
    follows a file written by ``sudo tegrastats --interval N --logfile F`` instead. ``read``
    returns the next line not yet returned (waiting for it), timed when it arrived.
    """

    kind = "tegrastats"
    paced = True

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

    def read(self) -> Reading:
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


# ---------------------------------------------------------------------------------------------
# Raspberry Pi 5 PMIC

_PMIC_LINE = re.compile(r"(\S+)_([AV]) (?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]")
PI5_GROUPS = {"CPU": ("VDD_CORE",), "DRAM": ("DDR_VDD2", "DDR_VDDQ")}  # default groups


def parse_pmic_read_adc(text: str) -> Dict[str, float]:
    """mW per rail of ``vcgencmd pmic_read_adc`` output: rails with both ``_A`` and ``_V``."""
    amps: Dict[str, float] = {}
    volts: Dict[str, float] = {}
    for m in _PMIC_LINE.finditer(text):
        (amps if m.group(2) == "A" else volts)[m.group(1)] = float(m.group(3))
    return {name: volts[name] * amps[name] * 1000.0 for name in amps if name in volts}


class Pi5PmicMeter(PowerMeter):
    """Raspberry Pi 5 PMIC ADC via ``vcgencmd pmic_read_adc``: total = sum of V x I of the
    paired rails. It does not see the 5 V input current, so it reads below wall power."""

    kind = "rpi5-pmic"

    def __init__(self, root: str = "/", command: str = "vcgencmd", min_interval_s: float = 0.1,
                 total_rail: Optional[str] = None, sum_rails: Optional[Sequence[str]] = None,
                 groups: Optional[Dict[str, Sequence[str]]] = None):
        self.root = root
        path = shutil.which(command)
        if path is None:
            raise MeasurementError(f"`{command}` not found on PATH: install raspi-utils "
                                   "(Raspberry Pi OS) or add /usr/bin to PATH")
        self.command = [path, "pmic_read_adc"]
        # One read costs about 23 ms; ~10 Hz is practical (boards.md).
        self.min_interval_s = float(min_interval_s)
        self.rail_names: List[str] = []
        self.rail_names = list(self._rails(self._run())[1])
        where = " ".join(self.command)
        self.total_rail, self.summed = _pick_total(self.rail_names, total_rail, sum_rails, where)
        self.groups = _check_groups(PI5_GROUPS if groups is None else groups, self.rail_names, where)

    def _run(self) -> Tuple[float, str]:
        t0 = time.monotonic()
        try:
            p = subprocess.run(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MeasurementError(f"`{' '.join(self.command)}` failed: {e}") from None
        t = (t0 + time.monotonic()) / 2  # the ADC is read somewhere inside the call
        if "Command not registered" in p.stdout:
            raise MeasurementError(
                "`vcgencmd pmic_read_adc`: Command not registered: this board has no PMIC ADC "
                "(only the Raspberry Pi 5 has one); use an INA219/INA226 (--meter ina2xx-hwmon)"
            )
        if p.returncode != 0:
            first = p.stdout.strip().splitlines()[:1]
            raise MeasurementError(f"`{' '.join(self.command)}` exited {p.returncode}: "
                                   f"{first[0] if first else 'no output'}")
        return t, p.stdout

    def _rails(self, run: Tuple[float, str]) -> Tuple[float, Dict[str, float]]:
        t, text = run
        rails = parse_pmic_read_adc(text)
        if not rails:
            raise MeasurementError(f"no current/voltage pairs in the output of "
                                   f"`{' '.join(self.command)}`")
        return t, rails

    def read(self) -> Reading:
        t, rails = self._rails(self._run())
        missing = [n for n in self.rail_names if n not in rails]
        if missing:
            raise MeasurementError(f"rail {missing[0]} missing from `{' '.join(self.command)}`")
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        return self._rails_description(" ".join(self.command), self.rail_names, "mW (volt V x current A x 1000)",
                                       note="PMIC rails only: misses the 5 V input, so it reads below wall power")


# ---------------------------------------------------------------------------------------------
# INA219 / INA226


class Ina2xxHwmonMeter(PowerMeter):
    """INA219/INA226 through the kernel ``ina2xx`` hwmon driver: in mV, curr mA, power uW.

    One rail per chip, named ``<chip>@<bus>-<addr>`` unless ``names`` maps the kernel device
    (``1-0040``) to a rail name; total = sum of the chips.
    """

    kind = "ina2xx-hwmon"
    pattern = "sys/bus/i2c/drivers/ina2xx/*/hwmon/hwmon*"

    def __init__(self, root: str = "/", names: Optional[Dict[str, str]] = None,
                 min_interval_s: float = 0.01):
        self.root = root
        names = dict(names or {})  # kernel device ("1-0040") -> rail name ("EXT_5V_IN")
        dirs = _devices(root, self.pattern, "ina2xx hwmon", "declare the chip (`echo ina226 0x40 | sudo tee "
                        "/sys/bus/i2c/devices/i2c-1/new_device`) or use --meter ina2xx-i2c")
        self.devices = dirs
        self.channels: List[Tuple[str, str]] = []
        intervals = [float(min_interval_s)]
        for d in dirs:
            chip = _read_text(os.path.join(d, "name")) if os.path.exists(os.path.join(d, "name")) \
                else "ina2xx"
            addr = os.path.basename(os.path.dirname(os.path.dirname(d)))
            self.channels.append((names.pop(addr, f"{chip}@{addr}"), d))
            ui = os.path.join(d, "update_interval")
            if os.path.exists(ui):
                intervals.append(_read_number(ui) / 1000.0)
        if names:
            raise MeasurementError(f"no ina2xx chip {', '.join(names)} under "
                                   f"{os.path.join(root, self.pattern)}")
        self.min_interval_s = max(intervals)

    def read(self) -> Reading:
        t = time.monotonic()
        rails = {}
        for name, d in self.channels:
            pfile = os.path.join(d, "power1_input")
            if os.path.exists(pfile):
                rails[name] = _read_number(pfile) / 1000.0  # uW -> mW
            else:
                rails[name] = (_read_number(os.path.join(d, "in1_input"))
                               * _read_number(os.path.join(d, "curr1_input")) / 1000.0)
        return Reading(t, float(sum(rails.values())), rails)

    def describe(self) -> Dict[str, object]:
        names = [c[0] for c in self.channels]
        return {
            "meter": self.kind,
            "device": ", ".join(self.devices),
            "rails": names,
            "units": "mW (power1_input uW / 1000; else in1 mV x curr1 mA / 1000)",
            "min_interval_s": self.min_interval_s,
            "estimate": False,
            **_total_description(None, names),
        }


# TI register map (INA219 datasheet SBOS448, INA226 SBOS547).
INA_REG_CONFIG, INA_REG_SHUNT, INA_REG_BUS, INA_REG_POWER, INA_REG_CURRENT, INA_REG_CAL = range(6)
INA_CHIPS = {
    # bus LSB V, bus shift, shunt LSB V, calibration constant, power LSB / current LSB
    "ina219": (4e-3, 3, 10e-6, 0.04096, 20.0),
    "ina226": (1.25e-3, 0, 2.5e-6, 0.00512, 25.0),
}


def _signed16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


def ina_calibration(chip: str, shunt_ohms: float, max_current_a: float) -> Tuple[int, float]:
    """(calibration register value, current LSB in A) for a shunt and full-scale current."""
    current_lsb = max_current_a / 32768.0
    cal = int(INA_CHIPS[chip][3] / (current_lsb * shunt_ohms))
    if not 0 < cal <= 0xFFFF:
        raise MeasurementError(f"{chip}: calibration {cal} out of range for shunt {shunt_ohms} ohm "
                               f"and {max_current_a} A full scale")
    return cal, current_lsb


def decode_ina2xx(chip: str, bus_reg: int, current_reg: int, power_reg: int,
                  current_lsb: float) -> Tuple[float, float, float]:
    """(bus mV, current mA, power mW) from raw 16-bit registers, per TI's register map.

    INA219's bus register holds the voltage in bits 15..3 (4 mV LSB), bit 0 is the math
    overflow flag; INA226's is the plain value (1.25 mV LSB). Current is two's complement
    with ``current_lsb``; power LSB is 20 (INA219) or 25 (INA226) x current LSB.
    """
    bus_lsb, shift, _, _, power_ratio = INA_CHIPS[chip]
    if chip == "ina219" and bus_reg & 0x1:
        raise MeasurementError("ina219: math overflow (OVF bit): raise max_current_a")
    bus_mv = (bus_reg >> shift) * bus_lsb * 1000.0
    current_ma = _signed16(current_reg) * current_lsb * 1000.0
    power_mw = power_reg * power_ratio * current_lsb * 1000.0
    return bus_mv, current_ma, power_mw


class Ina2xxI2cMeter(PowerMeter):
    """INA219/INA226 read directly over I2C (smbus2, imported only here).

    Writes the calibration register for ``shunt_ohms`` and ``max_current_a``, then reads the
    bus, current and power registers. ``smbus`` may be any object with smbus2's
    ``read_i2c_block_data`` / ``write_i2c_block_data`` (tests pass a fake).
    """

    kind = "ina2xx-i2c"

    def __init__(self, root: str = "/", bus: int = 1, address: int = 0x40, chip: str = "ina226",
                 shunt_ohms: float = 0.1, max_current_a: float = 3.2, name: Optional[str] = None,
                 min_interval_s: float = 0.005, smbus=None):
        chip = chip.lower()
        if chip not in INA_CHIPS:
            raise MeasurementError(f"unknown chip {chip!r}: choose ina219 or ina226")
        self.chip, self.address, self.bus_number = chip, int(address), int(bus)
        self.device = f"/dev/i2c-{self.bus_number}@0x{self.address:02x}"
        self.name = name or f"{chip}@{self.bus_number}-{self.address:04x}"
        self.shunt_ohms = float(shunt_ohms)
        self.min_interval_s = float(min_interval_s)
        self.cal, self.current_lsb = ina_calibration(chip, self.shunt_ohms, float(max_current_a))
        self._own_bus = smbus is None
        if smbus is None:
            try:
                from smbus2 import SMBus  # optional: only boards with an external INA need it
            except ImportError:
                raise MeasurementError("the ina2xx-i2c meter needs smbus2: `pip install smbus2`") \
                    from None
            try:
                smbus = SMBus(self.bus_number)
            except OSError as e:
                raise MeasurementError(f"cannot open /dev/i2c-{self.bus_number}: {e.strerror} "
                                       "(enable I2C with raspi-config; add your user to group i2c)") \
                    from None
        self.smbus = smbus
        self._write(INA_REG_CAL, self.cal)

    def _write(self, reg: int, value: int) -> None:
        try:
            self.smbus.write_i2c_block_data(self.address, reg, [(value >> 8) & 0xFF, value & 0xFF])
        except OSError as e:
            raise MeasurementError(f"I2C write to {self.device} reg 0x{reg:02x} failed: "
                                   f"{e.strerror or e} (wrong address? check `i2cdetect -y "
                                   f"{self.bus_number}`)") from None

    def _reg(self, reg: int) -> int:
        try:
            hi, lo = self.smbus.read_i2c_block_data(self.address, reg, 2)  # big-endian
        except OSError as e:
            raise MeasurementError(f"I2C read of {self.device} reg 0x{reg:02x} failed: "
                                   f"{e.strerror or e}") from None
        return (hi << 8) | lo

    def read(self) -> Reading:
        t0 = time.monotonic()
        bus = self._reg(INA_REG_BUS)
        cur = self._reg(INA_REG_CURRENT)
        pw = self._reg(INA_REG_POWER)
        t = (t0 + time.monotonic()) / 2
        _, _, power_mw = decode_ina2xx(self.chip, bus, cur, pw, self.current_lsb)
        return Reading(t, power_mw, {self.name: power_mw})

    def describe(self) -> Dict[str, object]:
        return {
            "meter": self.kind,
            "device": self.device,
            "rails": [self.name],
            "total": self.name,
            "total_mode": "rail",
            "units": f"mW (power register x {INA_CHIPS[self.chip][4]:g} x current LSB "
                     f"{self.current_lsb * 1e6:.2f} uA; shunt {self.shunt_ohms} ohm)",
            "min_interval_s": self.min_interval_s,
            "estimate": False,
        }

    def close(self) -> None:
        if self._own_bus:
            self.smbus.close()


# ---------------------------------------------------------------------------------------------
# RAPL


class RaplMeter(PowerMeter):
    """Intel/AMD RAPL energy counters (uJ) of the top-level ``intel-rapl:N`` zones.

    Deltas are unwrapped (``max_energy_range_uj`` added when negative). Total = sum of the
    package and dram zones; ``psys`` (the whole platform, which contains the packages) is
    reported but not summed unless asked for with ``total_zone="psys"``.
    """

    kind = "rapl"
    counter = True
    pattern = "sys/class/powercap/intel-rapl:*"

    def __init__(self, root: str = "/", total_zone: Optional[str] = None,
                 min_interval_s: float = 0.01):
        self.root = root
        dirs = sorted(d for d in glob.glob(os.path.join(root, self.pattern))
                      if os.path.basename(d).count(":") == 1)  # intel-rapl:0:0 is a subzone
        if not dirs:
            raise MeasurementError(f"no RAPL zone under {os.path.join(root, self.pattern)}: not an "
                                   "Intel/AMD host, or the intel_rapl module is not loaded")
        self.zones: List[Tuple[str, str, float]] = []  # (name, energy file, range uJ)
        for d in dirs:
            name = _read_text(os.path.join(d, "name"))
            self.zones.append((name, os.path.join(d, "energy_uj"),
                               _read_number(os.path.join(d, "max_energy_range_uj"))))
        names = [z[0] for z in self.zones]
        if total_zone is not None:
            _pick_total(names, total_zone, None, os.path.dirname(dirs[0]))
            self.total_rail: Optional[str] = total_zone
            self.summed: List[str] = []
        else:
            self.total_rail = None
            self.summed = [n for n in names if n != "psys"] or names
        self.min_interval_s = float(min_interval_s)
        self._last_raw: Dict[str, float] = {}
        self._energy_uj: Dict[str, float] = {n: 0.0 for n in names}
        self._last_t: Optional[float] = None
        self._last_total_j = 0.0
        self.read()  # prime the counters (and fail now if root-only)

    def _raw(self, path: str) -> float:
        try:
            return _read_number(path)
        except MeasurementError as e:
            if "permission denied" in str(e):
                raise MeasurementError(
                    f"permission denied reading {path}: RAPL is root-only since Linux 5.10: run "
                    "as root or `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
                ) from None
            raise

    def read(self) -> Reading:
        t = time.monotonic()
        for name, path, rng in self.zones:
            raw = self._raw(path)
            if name in self._last_raw:
                delta = raw - self._last_raw[name]
                if delta < 0:  # the counter wrapped
                    delta += rng
                self._energy_uj[name] += delta
            self._last_raw[name] = raw
        energy_j = {n: e / 1e6 for n, e in self._energy_uj.items()}
        total_j = _total(energy_j, self.total_rail, self.summed)
        rails: Dict[str, float] = {}
        total_mw = 0.0
        if self._last_t is not None and t > self._last_t:
            dt = t - self._last_t
            rails = {n: (e - self._prev_j[n]) / dt * 1000.0 for n, e in energy_j.items()}
            total_mw = (total_j - self._last_total_j) / dt * 1000.0
        else:
            rails = {n: 0.0 for n in energy_j}
        self._last_t, self._prev_j, self._last_total_j = t, energy_j, total_j
        return Reading(t, total_mw, rails, energy_j=total_j)

    def describe(self) -> Dict[str, object]:
        d: Dict[str, object] = {
            "meter": self.kind,
            "device": ", ".join(os.path.dirname(p) for _, p, _ in self.zones),
            "rails": [z[0] for z in self.zones],
            "units": "energy counter uJ (wraps at max_energy_range_uj); power = dE/dt in mW",
            "min_interval_s": self.min_interval_s,
            "estimate": False,
        }
        d.update(_total_description(self.total_rail, self.summed))
        return d


# ---------------------------------------------------------------------------------------------
# estimate


class EstimateMeter(PowerMeter):
    """Energy *estimate*: synaptic operations x energy per operation (pJ). Not a measurement.

    Operations come from ``ops_source()`` (a callable returning the cumulative count, e.g. a
    session's synaptic operations) or are added with ``add(ops)``. ``pj_per_op`` is a number
    or a name of ``PJ_PER_OP`` (Horowitz 45 nm: int8-ac 0.03 pJ ... fp32-mac 4.6 pJ).
    """

    kind = "estimate"
    counter = True
    estimate = True

    def __init__(self, root: str = "/", pj_per_op="int8-ac",
                 ops_source: Optional[Callable[[], float]] = None, min_interval_s: float = 0.01):
        if isinstance(pj_per_op, str):
            if pj_per_op not in PJ_PER_OP:
                raise MeasurementError(f"unknown energy per op {pj_per_op!r}: give pJ or one of "
                                       f"{', '.join(PJ_PER_OP)}")
            self.op_label = pj_per_op
            pj_per_op = PJ_PER_OP[pj_per_op]
        else:
            self.op_label = "custom"
        self.pj_per_op = float(pj_per_op)
        self.ops_source = ops_source
        self.min_interval_s = float(min_interval_s)
        self._ops = 0.0
        self._lock = threading.Lock()
        self._last: Optional[Tuple[float, float]] = None

    def add(self, ops: float) -> None:
        """Count ``ops`` more synaptic operations (when no ``ops_source`` is given)."""
        with self._lock:
            self._ops += ops

    def read(self) -> Reading:
        t = time.monotonic()
        with self._lock:
            ops = float(self.ops_source()) if self.ops_source is not None else self._ops
        energy_j = ops * self.pj_per_op * 1e-12
        mw = 0.0
        if self._last is not None and t > self._last[0]:
            mw = (energy_j - self._last[1]) / (t - self._last[0]) * 1000.0
        self._last = (t, energy_j)
        return Reading(t, mw, {"estimate": mw}, energy_j=energy_j, estimate=True)

    def describe(self) -> Dict[str, object]:
        return {
            "meter": self.kind,
            "device": "none (synaptic operations x energy per operation)",
            "rails": ["estimate"],
            "total": "estimate",
            "total_mode": "estimate",
            "units": f"J = ops x {self.pj_per_op:g} pJ ({self.op_label})",
            "min_interval_s": self.min_interval_s,
            "estimate": True,
            "note": "estimate, not a measurement: operation counts x Horowitz 45 nm pJ/op",
        }


# ---------------------------------------------------------------------------------------------
# registry

METERS = {
    # the kinds of docs/boards.md (board profiles' power_meter.kind) ...
    "ina3221-hwmon": Ina3221HwmonMeter,
    "ina3221-iio": Ina3221IioMeter,
    "tegrastats": TegrastatsMeter,
    "rpi5-pmic": Pi5PmicMeter,
    "ina2xx-hwmon": Ina2xxHwmonMeter,
    "rapl": RaplMeter,
    # ... and two that no profile names: a chip read over I2C, and the operation-count estimate
    "ina2xx-i2c": Ina2xxI2cMeter,
    "estimate": EstimateMeter,
}

# What `auto` tries, in order: sysfs meters first (cheap), then the Pi 5 command.
AUTO_ORDER = ("ina3221-hwmon", "ina3221-iio", "ina2xx-hwmon", "rpi5-pmic", "rapl")


def open_meter(kind: str, root: str = "/", **options) -> PowerMeter:
    """Open a meter by kind (``METERS``), or ``auto`` for ``detect_meter(root)``."""
    if kind == "auto":
        return detect_meter(root)
    if kind == "none":
        raise MeasurementError("this board has no power meter (kind none): wire an INA219/INA226 "
                               "(--meter ina2xx-hwmon) or use --meter estimate")
    if kind not in METERS:
        raise MeasurementError(f"unknown meter {kind!r}: choose auto, {', '.join(METERS)}")
    return METERS[kind](root=root, **options)


def board_meter_options(profile, kind: Optional[str] = None) -> Dict[str, object]:
    """``open_meter`` options from a board profile's ``power_meter`` (``runtime.boards``) for
    ``kind`` (default: the profile's): its total or summed rails and groups; for
    ``ina2xx-hwmon`` the rail name of each chip."""
    kind = kind or profile.kind
    if kind in ("ina3221-hwmon", "ina3221-iio", "tegrastats", "rpi5-pmic"):
        opts: Dict[str, object] = {"groups": {g: list(m) for g, m in profile.groups.items()}}
        if profile.total:
            opts["total_rail"] = profile.total
        elif profile.sum:
            opts["sum_rails"] = list(profile.sum)
        return opts
    if kind == "rapl":
        return {"total_zone": profile.total} if profile.total else {}
    if kind == "ina2xx-hwmon":
        return {"names": {chip.device: chip.rails[0] for chip in profile.i2c if chip.rails}}
    return {}


def open_board_meter(profile, root: str = "/", **options) -> PowerMeter:
    """Open the meter a board profile names; if it cannot be read, its ``fallback``.

    ``profile`` is a board's ``power_meter`` (``runtime.boards.PowerMeter``); ``options`` go to
    whichever meter is opened, so pass only options both kinds take. When both fail, the first
    error is raised with the second appended.
    """
    try:
        return open_meter(profile.kind, root=root, **board_meter_options(profile), **options)
    except MeasurementError as first:
        fallback = getattr(profile, "fallback", None)
        if not fallback:
            raise
        try:
            return open_meter(fallback, root=root, **board_meter_options(profile, fallback),
                              **options)
        except MeasurementError as second:
            raise MeasurementError(f"{first} (fallback {fallback}: {second})") from None


def detect_meter(root: str = "/") -> PowerMeter:
    """The first meter of ``AUTO_ORDER`` that opens on this machine."""
    for kind in AUTO_ORDER:
        if kind == "rpi5-pmic" and not _is_pi5(root):
            continue
        try:
            return METERS[kind](root=root)
        except MeasurementError as e:
            if "permission denied" in str(e):  # present but unreadable: say how to fix it
                raise
    raise MeasurementError("no power meter found (tried " + ", ".join(AUTO_ORDER) +
                           "); use --meter estimate for an operation-count estimate")


def _is_pi5(root: str) -> bool:
    try:
        with open(os.path.join(root, "proc/device-tree/model"), "rb") as f:
            return b"Raspberry Pi 5" in f.read()
    except OSError:
        return False
