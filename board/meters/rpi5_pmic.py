"""Raspberry Pi 5 PMIC ADC read through ``vcgencmd pmic_read_adc`` (``rpi5-pmic``): the output
parser and the meter. It misses the 5 V input, so it reads below wall power. Standard library only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading, _check_groups, _groups, _number, _pick_total, _total

_PMIC_LINE = re.compile(r"(\S+)_([AV]) (?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]")
PMIC_MAX_V, PMIC_MAX_A = 6.0, 20.0  # bounds of one rail (see Pi5PmicMeter.max_rail_mw)
PI5_GROUPS = {"CPU": ("VDD_CORE",), "DRAM": ("DDR_VDD2", "DDR_VDDQ")}  # default groups


def parse_pmic_read_adc(text: str) -> Dict[str, float]:
    """mW per rail of ``vcgencmd pmic_read_adc`` output: rails with both ``_A`` and ``_V``."""
    amps: Dict[str, float] = {}
    volts: Dict[str, float] = {}
    for m in _PMIC_LINE.finditer(text):
        amp = m.group(2) == "A"
        (amps if amp else volts)[m.group(1)] = _number(
            m.group(3), "`vcgencmd pmic_read_adc` %s_%s" % (m.group(1), m.group(2)), 0.0,
            PMIC_MAX_A if amp else PMIC_MAX_V, m.group(2))
    return {name: volts[name] * amps[name] * 1000.0 for name in amps if name in volts}


class Pi5PmicMeter(PowerMeter):
    """Raspberry Pi 5 PMIC ADC via ``vcgencmd pmic_read_adc``: total = sum of V x I of the
    paired rails. It does not see the 5 V input current, so it reads below wall power."""

    kind = "rpi5-pmic"
    # No rail of a board fed 5 V x 5 A (27 W supply) carries 6 V x 20 A: far above anything real,
    # far below what a corrupt number gives. The ADC reads magnitudes: no negative power.
    max_rail_mw = PMIC_MAX_V * PMIC_MAX_A * 1000.0

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

    def _read(self) -> Reading:
        t, rails = self._rails(self._run())
        missing = [n for n in self.rail_names if n not in rails]
        if missing:
            raise MeasurementError(f"rail {missing[0]} missing from `{' '.join(self.command)}`")
        return Reading(t, _total(rails, self.total_rail, self.summed), rails,
                       _groups(rails, self.groups))

    def describe(self) -> Dict[str, object]:
        return self._rails_description(" ".join(self.command), self.rail_names, "mW (volt V x current A x 1000)",
                                       note="PMIC rails only: misses the 5 V input, so it reads below wall power")
