"""Intel/AMD RAPL energy counters (``rapl``) under ``/sys/class/powercap``: a counter meter for
development hosts, with wrap-around unwrapped. Standard library only.
"""

from __future__ import annotations

import glob
import os
import time
from typing import Dict, List, Optional, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading, _pick_total, _read_number, _read_text, _total, _total_description, counter_step

# No CPU package, DRAM or platform (psys) zone draws 2 kW: an energy step that would need more
# is a reading error, and a lower value is a wrap only if the wrapped step stays below this.
RAPL_MAX_W = 2000.0


class RaplMeter(PowerMeter):
    """Intel/AMD RAPL energy counters (uJ) of the top-level ``intel-rapl:N`` zones.

    Deltas are unwrapped (``max_energy_range_uj`` added when negative) only when the previous value
    was near the range's end and the wrapped step is one ``RAPL_MAX_W`` can deliver in the time
    since; a counter that goes back otherwise, or beyond its range, is a reading error. Total = sum of the
    package and dram zones; ``psys`` (the whole platform, which contains the packages) is
    reported but not summed unless asked for with ``total_zone="psys"``.
    """

    kind = "rapl"
    counter = True
    max_power_w = RAPL_MAX_W
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
                               _read_number(os.path.join(d, "max_energy_range_uj"), 1.0, 2.0 ** 64, " uJ")))
        names = [z[0] for z in self.zones]
        if total_zone is not None:
            _pick_total(names, total_zone, None, os.path.dirname(dirs[0]))
            self.total_rail: Optional[str] = total_zone
            self.summed: List[str] = []
        else:
            self.total_rail = None
            self.summed = [n for n in names if n != "psys"] or names
        self.min_interval_s = float(min_interval_s)
        self.max_power_w = RAPL_MAX_W * len([self.total_rail] if self.total_rail else self.summed)
        self._last_raw: Dict[str, float] = {}
        self._energy_uj: Dict[str, float] = {n: 0.0 for n in names}
        self._last_t: Optional[float] = None
        self._last_total_j = 0.0
        self.read()  # prime the counters (and fail now if root-only)

    def _raw(self, path: str, rng: float) -> float:
        try:
            return _read_number(path, 0.0, rng, " uJ")
        except MeasurementError as e:
            if "permission denied" in str(e):
                raise MeasurementError(
                    f"permission denied reading {path}: RAPL is root-only since Linux 5.10: run "
                    "as root or `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
                ) from None
            raise

    def _read(self) -> Reading:
        t = time.monotonic()
        seconds = t - self._last_t if self._last_t is not None else 0.0
        raws = {name: self._raw(path, rng) for name, path, rng in self.zones}
        steps = {name: counter_step(self._last_raw[name], raws[name], rng, seconds, RAPL_MAX_W, path)
                 for name, path, rng in self.zones if name in self._last_raw}
        for name, step in steps.items():  # every zone checked before any counter moves
            self._energy_uj[name] += step
        self._last_raw.update(raws)
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
