"""What every power meter shares: the ``Reading`` it returns, the ``PowerMeter`` base class, and
the parsing helpers of sysfs files and rail totals that the meter families use.

Kept apart from the families so that each family module holds one kind of sensor and imports
only this. The underscored helpers are private to ``board/meters/``, not part of its API.
Standard library only.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import MeasurementError

# Rails that are a board's total input power, when a board has one (boards.md).
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


@dataclass(frozen=True)
class Reading:
    time_monotonic: float  # s, time.monotonic() when the value was read
    total_mw: float  # mW: the total rail, or the sum of the summed rails
    rails: Dict[str, float]  # rail name -> mW
    groups: Dict[str, float] = field(default_factory=dict)  # e.g. Pi 5 "CPU", "DRAM" -> mW
    energy_j: Optional[float] = None  # counter meters: cumulative J since the meter opened
    estimate: bool = False  # True when computed from operation counts, not measured


class PowerMeter:
    """Base class. Subclasses set ``kind`` and the physical range of what they read, and
    implement ``_read`` and ``describe``; ``read`` is this class's and checks every reading
    (``check_reading``), so no family can return an impossible one. A subclass that defines
    ``read`` itself is refused when it is defined."""

    kind = "meter"
    counter = False  # True: Reading.energy_j is a cumulative energy counter
    estimate = False
    paced = False  # True: read() itself waits for the device's next value (tegrastats)
    min_interval_s = 0.0
    # The physical range of one rail's power (mW): what the sensor can report at all. None: no
    # sensor (the estimate). min_rail_mw < 0 only where the chip's own offset can read below 0.
    max_rail_mw: Optional[float] = None
    min_rail_mw = 0.0
    # Counter meters: the most power (W) a zone can draw; an energy step above it is an error.
    max_power_w: Optional[float] = None
    _last_checked: Optional[Tuple[float, float]] = None  # counters: (time, energy_j) of the last read
    # One line when the meter reads another way than it should: a profile's fallback meter, or
    # (ina2xx-hwmon) V x I without power1_input. The sampler copies it into the record.
    fallback: Optional[str] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)  # type: ignore[arg-type]
        if "read" in cls.__dict__:
            raise TypeError(f"{cls.__name__} defines read(): implement _read(); PowerMeter.read "
                            "checks every reading against the sensor's physical range")

    def read(self) -> Reading:
        """One reading, checked: finite, within the sensor's physical range, counters monotonic."""
        r = self._read()
        check_reading(self, r)
        return r

    def _read(self) -> Reading:
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


MAX_DIGITS = 24  # sysfs sensor values are integers of at most 20 digits (u64): longer is garbage


def _read_number(path: str, low: Optional[float] = None, high: Optional[float] = None,
                 unit: str = "") -> float:
    """A finite number from a sysfs file, within ``[low, high]`` (the sensor's physical range
    in the file's own unit) when given; anything else is a one-line MeasurementError."""
    return _number(_read_text(path), path, low, high, unit)


def _number(text: str, where: str, low: Optional[float] = None, high: Optional[float] = None,
            unit: str = "") -> float:
    """``text`` as a finite number within ``[low, high]``: NaN, inf, a 400-digit number and a
    value beyond the sensor's range are refused, naming ``where``."""
    if len(text) > MAX_DIGITS:
        raise MeasurementError(f"impossible reading in {where}: a {len(text)}-character number "
                               f"{text[:12]!r}... (sensor or driver fault)")
    try:
        value = float(text)
    except ValueError:
        raise MeasurementError(f"not a number in {where}: {text[:40]!r}") from None
    return _in_range(value, where, low, high, unit)


def _in_range(value: float, where: str, low: Optional[float], high: Optional[float],
              unit: str = "") -> float:
    if not math.isfinite(value):
        raise MeasurementError(f"impossible reading in {where}: {value!r} (sensor or driver fault)")
    if (low is not None and value < low) or (high is not None and value > high):
        raise MeasurementError(
            f"impossible reading in {where}: {value:g}{unit} is outside the sensor's physical "
            f"range [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]{unit} "
            "(sensor or driver fault)")
    return value


def check_reading(meter: "PowerMeter", r: Reading) -> None:
    """Refuse a reading no sensor of ``meter``'s family can give: a non-finite time, power or
    energy; a rail below ``min_rail_mw`` (negative power) or above ``max_rail_mw``; a counter
    that goes backwards or steps by more than ``max_power_w`` allows. The one check every
    meter's ``read`` goes through."""
    where = f"the {meter.kind} meter"
    _in_range(r.time_monotonic, f"{where} (time)", None, None)
    if meter.counter:  # rails and total are mean powers of the last interval, not readings
        for name, mw in list(r.rails.items()) + [("total", r.total_mw)]:
            _in_range(mw, f"{where}, {name}", None, None, " mW")
        if r.energy_j is None:
            raise MeasurementError(f"{where}: a counter reading without energy")
        _in_range(r.energy_j, f"{where} (energy)", 0.0 if meter._last_checked is None else None, None, " J")
        last = meter._last_checked
        if last is not None:
            step = r.energy_j - last[1]
            if step < 0:
                raise MeasurementError(f"impossible reading in {where}: the energy counter went back "
                                       f"{-step:.6g} J (sensor or driver fault)")
            if meter.max_power_w is not None:
                allowed = meter.max_power_w * (max(0.0, r.time_monotonic - last[0]) + COUNTER_SLACK_S)
                if step > allowed:
                    raise MeasurementError(f"impossible reading in {where}: {step:.6g} J in "
                                           f"{r.time_monotonic - last[0]:.3g} s, more than "
                                           f"{meter.max_power_w:g} W can deliver (sensor or driver fault)")
        meter._last_checked = (r.time_monotonic, r.energy_j)
        return
    floor = meter.min_rail_mw * max(1, len(r.rails))  # a sum of rails: each may sit at the offset
    for kind, values, low, high in (("rail", r.rails, meter.min_rail_mw, meter.max_rail_mw),
                                    ("group", r.groups, floor, None), ("total", {"": r.total_mw}, floor, None)):
        for name, mw in values.items():
            if mw < low and math.isfinite(mw):
                raise MeasurementError(f"impossible reading in {where}, {kind} {name}".rstrip() +
                                       f": negative power {mw:g} mW (sensor or driver fault)")
            _in_range(mw, f"{where}, {kind} {name}".rstrip(), None, high, " mW")


COUNTER_SLACK_S = 0.01  # counters update in steps (RAPL about every 1 ms): allow one late step


def counter_step(previous: float, raw: float, wrap: float, seconds: float, max_power_w: float,
                 where: str) -> float:
    """The increment (in the counter's unit, uJ) from ``previous`` to ``raw`` of a counter that
    wraps at ``wrap``. A lower value is a wrap only when the unwrapped increment is one
    ``max_power_w`` can deliver in ``seconds`` (the previous value was near ``wrap``);
    otherwise the counter went backwards, which is a reading error."""
    if raw >= previous:
        return raw - previous
    step = wrap - previous + raw
    plausible = max_power_w * 1e6 * (max(0.0, seconds) + COUNTER_SLACK_S)
    if step > plausible:
        raise MeasurementError(f"impossible reading in {where}: the counter went back from "
                               f"{previous:.0f} to {raw:.0f}, and a wrap at {wrap:.0f} would mean "
                               f"{step / 1e6:.6g} J in {seconds:.3g} s (sensor or driver fault)")
    return step


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
