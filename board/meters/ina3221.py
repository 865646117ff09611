"""Jetson INA3221 power monitors in sysfs: ``ina3221-hwmon`` (JetPack 5/6) and ``ina3221-iio``
(JetPack 4). One module for the chip's two kernel layouts; ``tegrastats`` is the fallback.
Standard library only.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading, _check_groups, _devices, _groups, _pick_total, _read_number, _read_text, _total

# The chip's physical range (TI INA3221 datasheet): bus voltage 0-26 V; shunt voltage full scale
# 163.8 mV, offset at most 80 uV. Current = shunt voltage / shunt resistor.
BUS_MAX_MV = 26000.0
SHUNT_FS_UV = 163800.0
SHUNT_OFFSET_UV = 80.0
SMALLEST_SHUNT_UOHM = 1000.0  # when the driver does not say (JetPack 4, old kernels): 1 mOhm, the widest range


def current_range_ma(shunt_uohm: float) -> Tuple[float, float]:
    """(lowest, highest) current in mA the chip can report through ``shunt_uohm``: the
    offset below zero, full scale above."""
    return -SHUNT_OFFSET_UV * 1000.0 / shunt_uohm, SHUNT_FS_UV * 1000.0 / shunt_uohm


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
        # (rail name, voltage file, current file, (lowest, highest) current in mA)
        self.channels: List[Tuple[str, str, str, Tuple[float, float]]] = []
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
                shunt = os.path.join(d, f"shunt{k}_resistor")  # uOhm, where the driver exposes it
                r_uohm = _read_number(shunt, 1.0, 1e9, " uOhm") if os.path.exists(shunt) else SMALLEST_SHUNT_UOHM
                self.channels.append((label, os.path.join(d, f"in{k}_input"),
                                      os.path.join(d, f"curr{k}_input"), current_range_ma(r_uohm)))
        if not self.channels:
            raise MeasurementError(f"no labelled INA3221 channels in {', '.join(dirs)}")
        self.min_interval_s = max(intervals) if intervals else 0.0
        self.max_rail_mw = max(c[3][1] for c in self.channels) * BUS_MAX_MV / 1000.0
        self.min_rail_mw = min(c[3][0] for c in self.channels) * BUS_MAX_MV / 1000.0
        names = [c[0] for c in self.channels]
        self.total_rail, self.summed = _pick_total(names, total_rail, sum_rails, dirs[0])
        self.groups = _check_groups(groups, names, dirs[0])

    def _read(self) -> Reading:
        t = time.monotonic()
        rails = {}
        for name, vfile, cfile, (lo, hi) in self.channels:
            rails[name] = _read_number(vfile, 0.0, BUS_MAX_MV, " mV") * _read_number(cfile, lo, hi, " mA") / 1000.0
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
        # nor the shunts: the widest range the chip can have (26 V x full scale on 1 mOhm)
        self.max_rail_mw = current_range_ma(SMALLEST_SHUNT_UOHM)[1] * BUS_MAX_MV / 1000.0
        names = [c[0] for c in self.channels]
        self.total_rail, self.summed = _pick_total(names, total_rail, sum_rails, dirs[0])
        self.groups = _check_groups(groups, names, dirs[0])

    def _read(self) -> Reading:
        t = time.monotonic()
        rails = {name: _read_number(p, 0.0, self.max_rail_mw, " mW") for name, p in self.channels}
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        return self._rails_description(", ".join(self.devices), [c[0] for c in self.channels], "mW (in_power)")
