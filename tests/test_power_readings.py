"""Issue 18, items 14 and 15: impossible sensor readings are refused in one place (the meter
base), ``--json`` output is always strict JSON, and a meter that fails mid-run makes the command
exit 1 when its readings cover less than NeuroBench's rules accept.

Sensor files are real files in fixture trees laid out as on the boards (``tests/fixtures/power``,
``tests/fixtures/boards``), rewritten in place (atomically) or removed while the meter runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from cli_helpers import call

from spikeedge.board.meters import METERS, PowerMeter, Reading, open_meter
from spikeedge.board.sampler import MIN_COVERAGE, Sampler
from spikeedge.errors import MeasurementError

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "power"
BOARDS = HERE / "fixtures" / "boards"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
NANO_IIO = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
INA226 = "sys/bus/i2c/drivers/ina2xx/1-0040/hwmon/hwmon2"
RAPL0 = "sys/class/powercap/intel-rapl:0"
RAPL_RANGE = 262143328850  # the fixture's max_energy_range_uj

HOSTILE = {"nan": "nan", "inf": "inf", "minus-inf": "-inf", "400-digits": "9" * 400, "exp-overflow": "1e400"}


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


# --------------------------------------------------------------------------------------------
# every command's --json output is strict JSON


@pytest.fixture(scope="module")
def model(tmp_path_factory: Any) -> Path:
    """A small untrained recurrent SNN with one input and one output (it can forecast)."""
    pytest.importorskip("torch")
    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt

    net = HRSNN(HrsnnConfig(n_neurons=30, n_inputs=1, n_outputs=1, seed=0))
    path = tmp_path_factory.mktemp("model") / "m.seb"
    fmt.save(quantize_hrsnn(net, np.random.default_rng(0).random((200, 1))), path)
    return path


def test_every_cheap_command_prints_strict_json(capsys: Any, model: Path, tmp_path: Path) -> None:
    orin = str(FIX / "orin_nx_jp6")
    x = tmp_path / "x.npz"
    np.savez(x, x=np.random.default_rng(0).random((2, 40, 1)))
    db = tmp_path / "r.sqlite"
    commands = [
        ["boards", "list"], ["boards", "show", "rpi5"], ["boards", "detect", "--root", str(BOARDS / "jetson-orin-nx")],
        ["info", model], ["run", model, "--input", x],
        ["power", "watch", "--meter", "ina3221-hwmon", "--root", orin, "--duration", "0.2"],
        ["power", "record", "--meter", "ina3221-hwmon", "--root", orin, "--baseline", "0.1", "--json", "--", sys.executable, "-c", "pass"],
        ["profile", model, "--input", x, "--meter", "estimate"],
        ["profile", model, "--input", x, "--meter", "ina3221-hwmon", "--root", orin, "--baseline", "0.1"],
        ["bench", model, "--task", "mackey-glass", "--samples", "1", "--trials", "1", "--warmup", "0", "--meter", "ina3221-hwmon",
         "--root", orin, "--baseline", "0.1", "--db", db],
        ["results", "list", "--db", db],
    ]
    for argv in commands:
        if "--json" not in argv:
            argv = argv[:2] + ["--json"] + argv[2:] if argv[0] in ("boards", "power", "results") else argv + ["--json"]
        rc, out, err = call(capsys, *argv)
        assert rc == 0, (argv, err)
        strict_json(out)


def test_power_watch_json_stays_strict_when_a_sensor_reads_nan(capsys: Any, tmp_path: Path) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    path = os.path.join(root, ORIN_HWMON, "curr1_input")
    timer = threading.Timer(0.15, write_atomic, (path, "nan"))
    timer.start()
    try:
        rc, out, err = call(capsys, "power", "watch", "--meter", "ina3221-hwmon", "--root", root, "--duration", "0.6", "--json")
    finally:
        timer.join()
    r = strict_json(out)
    assert "impossible reading" in r["error"] and r["failure"]
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "95%" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# item 15: a meter failure is not a success


def test_power_record_exits_1_when_the_meter_fails_mid_run(capsys: Any, tmp_path: Path) -> None:
    """The command itself removes a sensor file 0.1 s into a 1 s run: about 10% coverage."""
    root = copy(tmp_path, "orin_nx_jp6")
    victim = os.path.join(root, ORIN_HWMON, "curr2_input")
    script = "import os, time; time.sleep(0.1); os.remove(%r); time.sleep(0.9)" % victim
    rc, out, err = call(capsys, "power", "record", "--meter", "ina3221-hwmon", "--root", root, "--baseline", "0.1", "--json", "--",
                        sys.executable, "-c", script)
    r = strict_json(out)
    assert r["returncode"] == 0 and r["coverage"] < 0.5 and "vanished" in r["error"]
    assert r["failure"] and "95%" in r["failure"] and "NeuroBench" in r["failure"]
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cover" in lines[0] and victim in lines[0]


def test_a_meter_failing_after_the_window_only_warns(tmp_path: Path) -> None:
    root = copy(tmp_path, "orin_nx_jp6")
    s = Sampler(open_meter("ina3221-hwmon", root=root), interval_s=0.01).start()
    with s.window("run"):
        time.sleep(0.1)
    time.sleep(0.05)
    os.remove(os.path.join(root, ORIN_HWMON, "in1_input"))
    deadline = time.monotonic() + 5
    while s.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    res = s.stop()
    assert res.error and res.window("run").coverage >= MIN_COVERAGE and res.failure is None


def test_profile_exits_1_when_the_meter_fails(capsys: Any, model: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import spikeedge.measure.profile as prof

    root = copy(tmp_path, "orin_nx_jp6")
    x = tmp_path / "x.npz"
    np.savez(x, x=np.random.default_rng(0).random((2, 40, 1)))
    real, calls = prof._run, []

    def run(session: Any, xs: Any) -> Any:  # the warm-up, then the profiled run: the sensor goes away
        calls.append(1)
        if len(calls) == 2:
            os.remove(os.path.join(root, ORIN_HWMON, "in1_input"))
            time.sleep(0.4)
        return real(session, xs)

    monkeypatch.setattr(prof, "_run", run)
    rc, out, err = call(capsys, "profile", model, "--input", x, "--meter", "ina3221-hwmon", "--root", root, "--baseline", "0.1", "--json")
    p = strict_json(out)["power"]
    assert p["coverage"] < MIN_COVERAGE and p["failure"] and "in1_input" in p["error"]
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "95%" in err


def test_bench_exits_1_and_stores_nothing_when_the_meter_fails(capsys: Any, model: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import spikeedge.measure.bench as mb

    root = copy(tmp_path, "jetson-orin-nx", BOARDS)
    hw = next(Path(root).glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))
    real = mb._runner

    def runner(spec: Any) -> Any:
        run = real(spec)

        def first_inference_loses_the_sensor(session: Any, item: Any) -> Any:
            if (hw / "in1_input").exists():
                os.remove(str(hw / "in1_input"))
                time.sleep(0.4)
            return run(session, item)

        return first_inference_loses_the_sensor

    monkeypatch.setattr(mb, "_runner", runner)
    db = tmp_path / "r.sqlite"
    rc, out, err = call(capsys, "bench", model, "--task", "mackey-glass", "--samples", "1", "--trials", "1", "--warmup", "0",
                        "--meter", "ina3221-hwmon", "--root", root, "--baseline", "0.1", "--db", db, "--json")
    res = strict_json(out)
    [r] = res["runs"]
    assert r["power_failure"] and "95%" in r["power_failure"] and any("rejected" in n for n in r["notes"])
    assert res["stored"] is False and not db.exists()
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "nothing stored" in err


def test_ina2xx_fallback_to_v_times_i_is_recorded(capsys: Any, tmp_path: Path) -> None:
    """power1_input vanishes mid-run: the meter goes on with in1 x curr1 and the record says so."""
    root = copy(tmp_path, "pi4_ina226")
    hw = os.path.join(root, INA226)
    script = "import os, time; time.sleep(0.1); os.remove(%r); time.sleep(0.3)" % os.path.join(hw, "power1_input")
    rc, out, err = call(capsys, "power", "record", "--meter", "ina2xx-hwmon", "--root", root, "--baseline", "0.1", "--json", "--",
                        sys.executable, "-c", script)
    assert rc == 0, err
    r = strict_json(out)
    assert "power1_input vanished" in r["meter"]["fallback"] and "in1_input" in r["meter"]["fallback"]
    assert r["error"] is None and r["coverage"] == 1.0
    # 4162.5 mW from power1_input, then 5125 mV x 812 mA = 4161.5 mW
    assert 4161.5 - 1e-6 <= r["mean_power_mw"]["gross"] <= 4162.5 + 1e-6


def test_ina2xx_without_power1_input_says_so(tmp_path: Path) -> None:
    assert open_meter("ina2xx-hwmon", root=str(FIX / "pi4_ina226")).describe().get("fallback") is None
    root = copy(tmp_path, "pi4_ina226")
    os.remove(os.path.join(root, INA226, "power1_input"))
    m = open_meter("ina2xx-hwmon", root=root)
    assert "no power1_input" in m.describe()["fallback"]
    assert m.read().total_mw == pytest.approx(5125 * 812 / 1000)
