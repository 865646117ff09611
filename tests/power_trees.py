"""The power tests' fixture trees (``tests/fixtures/power/``, laid out as on the real boards) and
an atomic sensor-file writer, shared by tests/test_power.py and tests/test_power_sampler.py (the
power-reading tests have their own, power_fixtures.py)."""

import os
import shutil


FIX = os.path.join(os.path.dirname(__file__), "fixtures", "power")
ORIN_NX_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
NANO_IIO = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
RAPL = "sys/class/powercap"


def fixture_copy(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(os.path.join(FIX, name), str(dst))
    return str(dst)


def write_atomic(path, text):
    """Replace a sensor file in one step, so the reader never sees it half written."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
