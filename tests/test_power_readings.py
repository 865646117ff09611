"""Issue 18, item 14: impossible sensor readings are refused in one place (the meter base's
``read``), per meter family and for RAPL counters; the sampler stops on one with finite figures;
the CLI's JSON writer never prints NaN. (The command-line side: ``test_power_exit.py``.)

Sensor files are real files in fixture trees laid out as on the boards (``tests/fixtures/power``,
``tests/fixtures/boards``), rewritten in place (atomically) or removed while the meter runs."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from power_fixtures import FIX, INA226, NANO_IIO, ORIN_HWMON, RAPL0, RAPL_RANGE, copy, reject_constant, strict_json, write_atomic

from spikeedge.board.meters import METERS, PowerMeter, Reading, open_meter
from spikeedge.board.sampler import MIN_COVERAGE, Sampler
from spikeedge.errors import MeasurementError

HOSTILE = {"nan": "nan", "inf": "inf", "minus-inf": "-inf", "400-digits": "9" * 400, "exp-overflow": "1e400"}


def refused(meter: PowerMeter, *words: str) -> str:
    with pytest.raises(MeasurementError) as e:
        meter.read()
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# item 14: impossible readings, per family


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_ina3221_hwmon_refuses_non_finite_and_huge_numbers(tmp_path: Path, text: str) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    m = open_meter("ina3221-hwmon", root=root)
    m.read()
    path = os.path.join(root, ORIN_HWMON, "curr1_input")
    write_atomic(path, text)
    refused(m, "impossible reading", path)


@pytest.mark.parametrize("file,value,what", [
    ("curr1_input", "-2000", "outside"),  # -2 A through VDD_IN: the offset allows -16 mA on 5 mOhm
    ("in1_input", "-5000", "outside"),  # negative bus voltage
    ("in1_input", "27000", "outside"),  # above the INA3221's 26 V bus range
    ("curr1_input", "40000", "outside"),  # above 163.8 mV / 5 mOhm = 32.76 A full scale
])
def test_ina3221_hwmon_refuses_values_beyond_the_chip(tmp_path: Path, file: str, value: str, what: str) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    m = open_meter("ina3221-hwmon", root=root)
    write_atomic(os.path.join(root, ORIN_HWMON, file), value)
    refused(m, what, file)


def test_ina3221_hwmon_accepts_its_own_offset_near_zero(tmp_path: Path) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    write_atomic(os.path.join(root, ORIN_HWMON, "curr3_input"), "-8")  # one LSB below 0 on an idle rail
    r = open_meter("ina3221-hwmon", root=root).read()
    assert r.rails["VDD_SOC"] == pytest.approx(5000 * -8 / 1000)
    assert r.total_mw == pytest.approx(5000 * 1059 / 1000)


@pytest.mark.parametrize("text", ["nan", "-500", "9" * 400, "5000000"])
def test_ina3221_iio_refuses_impossible_power(tmp_path: Path, text: str) -> None:
    root = copy(tmp_path, "nano_jp4")
    m = open_meter("ina3221-iio", root=root)
    write_atomic(os.path.join(root, NANO_IIO, "in_power0_input"), text)
    refused(m, "impossible reading", "in_power0_input")


@pytest.mark.parametrize("file,text", [("power1_input", "nan"), ("power1_input", "-4162500"), ("power1_input", "9" * 400),
                                       ("power1_input", "40000000")])  # 40 W: above 36 V x 81.92 mV / 0.1 ohm
def test_ina2xx_hwmon_refuses_impossible_power(tmp_path: Path, file: str, text: str) -> None:
    root = copy(tmp_path, "pi4_ina226")
    m = open_meter("ina2xx-hwmon", root=root)
    write_atomic(os.path.join(root, INA226, file), text)
    refused(m, "impossible reading", file)


def test_ina2xx_hwmon_refuses_impossible_voltage_and_current(tmp_path: Path) -> None:
    root = copy(tmp_path, "pi4_ina226")
    os.remove(os.path.join(root, INA226, "power1_input"))  # V x I
    m = open_meter("ina2xx-hwmon", root=root)
    write_atomic(os.path.join(root, INA226, "curr1_input"), "5000")  # 5 A through 0.1 ohm: 500 mV > 81.92 mV
    refused(m, "outside", "curr1_input")
    write_atomic(os.path.join(root, INA226, "curr1_input"), "812")
    write_atomic(os.path.join(root, INA226, "in1_input"), "inf")
    refused(m, "impossible reading", "in1_input")


def test_tegrastats_refuses_a_400_digit_rail() -> None:
    from spikeedge.board.meters.tegrastats import parse_tegrastats_line

    with pytest.raises(MeasurementError, match="impossible reading"):
        parse_tegrastats_line("VDD_IN %smW/5299mW VDD_SOC 1424mW/1424mW" % ("9" * 400))


@pytest.mark.parametrize("line", ["  VDD_CORE_V volt(15)=1e400V", "  VDD_CORE_V volt(15)=230.0V", "  VDD_CORE_A current(7)=-3.5A"])
def test_pi5_pmic_refuses_impossible_rails(tmp_path: Path, monkeypatch: Any, line: str) -> None:
    good = (FIX / "pi5" / "pmic_read_adc.txt").read_text()
    out = tmp_path / "pmic.txt"
    out.write_text(good)
    monkeypatch.setenv("PATH", str(FIX / "bin") + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("FAKE_VCGENCMD_OUTPUT", str(out))
    m = open_meter("rpi5-pmic")
    m.read()
    key = line.split()[0]
    out.write_text("\n".join(line if l.strip().startswith(key) else l for l in good.splitlines()) + "\n")
    refused(m, "impossible reading", key)


# --------------------------------------------------------------------------------------------
# item 14: RAPL counters


def test_rapl_backwards_is_an_error_not_a_wrap(tmp_path: Path) -> None:
    root = copy(tmp_path, "rapl")
    pkg = os.path.join(root, RAPL0, "energy_uj")
    write_atomic(pkg, "16302541877")
    m = open_meter("rapl", root=root)
    write_atomic(pkg, "16302000000")  # 0.54 J back: read as a wrap it would be 245,841 J at once
    refused(m, "went back", pkg)


def test_rapl_wrap_near_the_end_of_the_range_still_counts(tmp_path: Path) -> None:
    root = copy(tmp_path, "rapl")
    pkg = os.path.join(root, RAPL0, "energy_uj")
    write_atomic(pkg, str(RAPL_RANGE - 400000))
    m = open_meter("rapl", root=root)
    r1 = m.read()
    write_atomic(pkg, "100000")
    r2 = m.read()
    assert r2.energy_j - r1.energy_j == pytest.approx(0.5)


@pytest.mark.parametrize("text,words", [
    (str(RAPL_RANGE + 1), ["outside", "energy_uj"]),  # beyond max_energy_range_uj
    ("1" + "0" * 24, ["impossible reading"]),  # 10^24 uJ
    ("nan", ["impossible reading"]),
    ("-5", ["outside"]),
])
def test_rapl_refuses_values_beyond_the_range(tmp_path: Path, text: str, words: Any) -> None:
    root = copy(tmp_path, "rapl")
    m = open_meter("rapl", root=root)
    write_atomic(os.path.join(root, RAPL0, "energy_uj"), text)
    refused(m, *words)


def test_rapl_forward_jump_no_zone_can_draw(tmp_path: Path) -> None:
    root = copy(tmp_path, "rapl")
    pkg = os.path.join(root, RAPL0, "energy_uj")
    m = open_meter("rapl", root=root)
    write_atomic(pkg, "262143000000")  # +245,840 J since the meter opened, microseconds ago
    refused(m, "impossible reading", "W")


# --------------------------------------------------------------------------------------------
# item 14: one check for every family


def test_no_meter_family_can_skip_the_check() -> None:
    for kind, cls in METERS.items():
        assert "read" not in cls.__dict__, "%s overrides read(): it would skip the reading check" % kind
        assert cls.read is PowerMeter.read
    with pytest.raises(TypeError, match="_read"):
        type("Sneaky", (PowerMeter,), {"read": lambda self: None})


class Scripted(PowerMeter):
    """A meter family whose device returns the given readings (the base's check is under test)."""

    kind = "scripted"
    max_rail_mw = 10000.0

    def __init__(self, readings: Any) -> None:
        self.readings = list(readings)

    def _read(self) -> Reading:
        return self.readings.pop(0)

    def describe(self) -> Dict[str, object]:
        return {"meter": self.kind}


@pytest.mark.parametrize("bad", [
    Reading(1.0, float("nan"), {"A": float("nan")}),
    Reading(1.0, -5.0, {"A": -5.0}),
    Reading(1.0, 20000.0, {"A": 20000.0}),
    Reading(float("inf"), 5.0, {"A": 5.0}),
    Reading(1.0, 5.0, {"A": 5.0}, groups={"G": float("inf")}),
])
def test_the_base_check_refuses_what_a_family_returns(bad: Reading) -> None:
    refused(Scripted([bad]), "the scripted meter")


def test_counter_meters_are_monotonic_and_finite() -> None:
    est = open_meter("estimate", ops_source=iter([0.0, 1e9, 5e8, float("nan")]).__next__)
    est.read()
    est.read()
    refused(est, "went back")
    refused(est, "impossible reading")


def test_a_nan_mid_run_stops_the_sampler_with_finite_figures(tmp_path: Path) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    path = os.path.join(root, ORIN_HWMON, "curr1_input")
    s = Sampler(open_meter("ina3221-hwmon", root=root), interval_s=0.01).start()
    with s.window("run"):
        time.sleep(0.1)
        write_atomic(path, "nan")
        time.sleep(0.3)
    res = s.stop()
    assert res.error and "impossible reading" in res.error and not res.complete
    w = res.window("run")
    assert all(math.isfinite(v) for v in (w.energy_j, w.mean_power_mw, res.energy_j, res.mean_power_mw))
    assert w.coverage < MIN_COVERAGE and res.failure and "95%" in res.failure
    json.dumps(res.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------------------------
# item 14: the JSON writer


def test_the_json_writer_never_prints_nan(capsys: Any) -> None:
    from spikeedge.cli.common import emit, json_text

    text = json_text({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": 2}})
    obj = json.loads(text, parse_constant=reject_constant)
    assert obj["a"] is None and obj["b"] == [1.0, None] and obj["c"] == {"d": None, "e": 2}
    assert "a" in obj["json_note"] and "b[1]" in obj["json_note"] and "c.d" in obj["json_note"]
    assert json_text({"x": 1.5}) == '{"x": 1.5}'
    emit({"p": np.float64("nan")}, True)
    assert strict_json(capsys.readouterr().out)["p"] is None


def test_offsets_below_zero_add_up_in_groups_and_totals() -> None:
    """Two idle rails each one offset below zero: their group and sum are below one rail's floor
    but are what the chip reads; beyond the summed floor it is refused."""
    class Offset(Scripted):
        min_rail_mw = -10.0

    ok = Reading(1.0, -16.0, {"A": -8.0, "B": -8.0}, groups={"G": -16.0})
    assert Offset([ok]).read() == ok
    refused(Offset([Reading(1.0, -25.0, {"A": -8.0, "B": -8.0})]), "negative power", "total")
