"""What every power meter shares: the ``Reading`` it returns, the ``PowerMeter`` base class, and
the parsing helpers of sysfs files and rail totals that the meter families use.

Kept apart from the families so that each family module holds one kind of sensor and imports
only this. The underscored helpers are private to ``board/meters/``, not part of its API.
Standard library only.
"""

from __future__ import annotations

import glob
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
