"""External INA219/INA226 power monitors: through the kernel ``ina2xx`` hwmon driver
(``ina2xx-hwmon``), or read register by register over I2C (``ina2xx-i2c``, TI register map, smbus2
imported only when such a meter is opened). Standard library only otherwise.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading, _devices, _read_number, _read_text, _total_description

# Physical range per chip (TI datasheets): bus voltage maximum (mV), shunt voltage full scale
# and worst offset (uV). Chips the driver also serves but not listed here get the widest.
CHIP_RANGE = {"ina219": (26000.0, 320000.0, 100.0), "ina226": (36000.0, 81920.0, 10.0),
              "ina230": (28000.0, 81920.0, 50.0), "ina231": (28000.0, 81920.0, 50.0)}
WIDEST = (36000.0, 320000.0, 100.0)
SMALLEST_SHUNT_UOHM = 1000.0  # no shunt_resistor file: 1 mOhm, the widest current range


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
        # (rail name, hwmon folder, (bus mV, lowest mA, highest mA) the chip can report)
        self.channels: List[Tuple[str, str, Tuple[float, float, float]]] = []
        self._had_power: Dict[str, bool] = {}  # power1_input present when the meter opened
        self.fallback: Optional[str] = None  # set when a rail is read as V x I instead
        intervals = [float(min_interval_s)]
        for d in dirs:
            chip = _read_text(os.path.join(d, "name")) if os.path.exists(os.path.join(d, "name")) \
                else "ina2xx"
            addr = os.path.basename(os.path.dirname(os.path.dirname(d)))
            bus_mv, fs_uv, off_uv = CHIP_RANGE.get(chip, WIDEST)
            shunt = os.path.join(d, "shunt_resistor")  # uOhm
            r_uohm = _read_number(shunt, 1.0, 1e9, " uOhm") if os.path.exists(shunt) else SMALLEST_SHUNT_UOHM
            rng = (bus_mv, -off_uv * 1000.0 / r_uohm, fs_uv * 1000.0 / r_uohm)
            name = names.pop(addr, f"{chip}@{addr}")
            self.channels.append((name, d, rng))
            self._had_power[d] = os.path.exists(os.path.join(d, "power1_input"))
            if not self._had_power[d]:
                self.fallback = f"{name}: no power1_input at {d}: power = in1_input mV x curr1_input mA"
            ui = os.path.join(d, "update_interval")
            if os.path.exists(ui):
                intervals.append(_read_number(ui) / 1000.0)
        if names:
            raise MeasurementError(f"no ina2xx chip {', '.join(names)} under "
                                   f"{os.path.join(root, self.pattern)}")
        self.min_interval_s = max(intervals)
        self.max_rail_mw = max(bus * hi for bus, _, hi in (c[2] for c in self.channels)) / 1000.0
        self.min_rail_mw = min(bus * lo for bus, lo, _ in (c[2] for c in self.channels)) / 1000.0

    def _read(self) -> Reading:
        t = time.monotonic()
        rails = {}
        for name, d, (bus_mv, lo_ma, hi_ma) in self.channels:
            pfile = os.path.join(d, "power1_input")
            try:
                rails[name] = _read_number(pfile, 0.0, bus_mv * hi_ma, " uW") / 1000.0  # uW -> mW
                continue
            except MeasurementError as e:
                if "vanished" not in str(e):
                    raise
            if self._had_power[d]:  # it was there: say so in the record, then read V x I
                self._had_power[d] = False
                self.fallback = (f"{name}: {pfile} vanished mid-run; from then on power = "
                                 "in1_input mV x curr1_input mA")
            rails[name] = (_read_number(os.path.join(d, "in1_input"), 0.0, bus_mv, " mV")
                           * _read_number(os.path.join(d, "curr1_input"), lo_ma, hi_ma, " mA") / 1000.0)
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
            **({"fallback": self.fallback} if self.fallback else {}),
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
        # what the 16-bit power register can hold at this calibration
        self.max_rail_mw = 0xFFFF * INA_CHIPS[chip][4] * self.current_lsb * 1000.0
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

    def _read(self) -> Reading:
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
