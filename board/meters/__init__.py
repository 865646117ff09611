"""Power meters of edge boards and development hosts behind one small interface, one module per
family (``base`` holds the interface); this package holds the registry and ``open_meter``.

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

import os
from typing import Dict, Optional

from ...errors import MeasurementError
from .base import PowerMeter, Reading
from .estimate import EstimateMeter
from .ina2xx import Ina2xxHwmonMeter, Ina2xxI2cMeter
from .ina3221 import Ina3221HwmonMeter, Ina3221IioMeter
from .rapl import RaplMeter
from .rpi5_pmic import Pi5PmicMeter
from .tegrastats import TegrastatsMeter

__all__ = [
    "AUTO_ORDER", "METERS", "EstimateMeter", "Ina2xxHwmonMeter", "Ina2xxI2cMeter", "Ina3221HwmonMeter",
    "Ina3221IioMeter", "Pi5PmicMeter", "PowerMeter", "RaplMeter", "Reading", "TegrastatsMeter",
    "board_meter_options", "detect_meter", "open_board_meter", "open_meter",
]

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
    """``open_meter`` options from a board profile's ``power_meter`` (``board.profile``) for
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

    ``profile`` is a board's ``power_meter`` (``board.profile.PowerMeter``); ``options`` go to
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
            meter = open_meter(fallback, root=root, **board_meter_options(profile, fallback),
                               **options)
        except MeasurementError as second:
            raise MeasurementError(f"{first} (fallback {fallback}: {second})") from None
        meter.fallback = f"the board's {profile.kind} meter could not be opened ({first}): {fallback} instead"
        return meter


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
