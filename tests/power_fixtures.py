"""What the power-reading tests share: the fixture trees laid out as on the boards, an atomic
sensor-file writer, a strict JSON parser (NaN and Infinity fail), and a small model bundle."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "power"
BOARDS = HERE / "fixtures" / "boards"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
NANO_IIO = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
INA226 = "sys/bus/i2c/drivers/ina2xx/1-0040/hwmon/hwmon2"
RAPL0 = "sys/class/powercap/intel-rapl:0"
RAPL_RANGE = 262143328850  # the fixture's max_energy_range_uj

def copy(tmp_path: Path, name: str, base: Path = FIX) -> str:
    return shutil.copytree(str(base / name), str(tmp_path / name))


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def reject_constant(name: str) -> Any:
    raise AssertionError("not JSON: %s in the output" % name)


def strict_json(stdout: str) -> Dict[str, Any]:
    """Exactly one JSON object on one line, with no NaN / Infinity anywhere."""
    assert stdout.count("\n") == 1, stdout[:300]
    obj = json.loads(stdout, parse_constant=reject_constant)
    assert isinstance(obj, dict)
    return obj


def build_model(folder: Path) -> Path:
    """A small untrained recurrent SNN with one input and one output (it can forecast)."""
    pytest.importorskip("torch")
    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt

    net = HRSNN(HrsnnConfig(n_neurons=30, n_inputs=1, n_outputs=1, seed=0))
    path = folder / "m.seb"
    fmt.save(quantize_hrsnn(net, np.random.default_rng(0).random((200, 1))), path)
    return path
