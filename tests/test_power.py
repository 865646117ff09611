"""Power meters on fixture sysfs trees laid out as on the real boards
(``../shared/reference/boards.md``) and recorded command output replayed by fake ``vcgencmd`` and
``tegrastats`` scripts. The energy sampler: tests/test_power_sampler.py."""

import os
import time

import pytest

from spikeedge.board import meters as pm
from spikeedge.board.meters import Ina2xxI2cMeter, base, detect_meter, open_meter
from spikeedge.board.meters.ina2xx import decode_ina2xx, ina_calibration
from spikeedge.board.meters.rpi5_pmic import parse_pmic_read_adc
from spikeedge.board.meters.tegrastats import parse_tegrastats_line, read_tegrastats_log
from spikeedge.errors import MeasurementError
from spikeedge.board.sampler import Sampler, integrate
from power_trees import FIX, ORIN_NX_HWMON, RAPL, fixture_copy, write_atomic


# ---------------------------------------------------------------------------------------------
# Jetson INA3221


def test_ina3221_orin_nx_total_rail_and_units():
    m = open_meter("ina3221-hwmon", root=os.path.join(FIX, "orin_nx_jp6"))
    r = m.read()
    assert list(r.rails) == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert r.rails["VDD_IN"] == pytest.approx(5000 * 1059 / 1000)  # mV x mA / 1000 = mW
    assert r.rails["VDD_CPU_GPU_CV"] == pytest.approx(5008 * 155 / 1000)
    assert r.total_mw == r.rails["VDD_IN"]  # the module total, not a sum over rails
    assert m.min_interval_s == pytest.approx(0.006)  # update_interval in ms
    d = m.describe()
    assert d["meter"] == "ina3221-hwmon" and d["total"] == "VDD_IN" and d["total_mode"] == "rail"
    assert d["device"].endswith(ORIN_NX_HWMON)


def test_ina3221_agx_orin_sums_both_chips_and_skips_nc():
    m = open_meter("ina3221-hwmon", root=os.path.join(FIX, "agx_orin_jp5"))
    r = m.read()
    assert sorted(r.rails) == sorted(["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"])
    assert "NC" not in r.rails
    expected = (19008 * 168 + 19016 * 32 + 4992 * 482 + 4992 * 60) / 1000
    assert r.total_mw == pytest.approx(expected)
    d = m.describe()
    assert d["total_mode"] == "sum" and set(d["summed_rails"]) == set(r.rails)
    assert "1-0040" in d["device"] and "1-0041" in d["device"]
    assert m.min_interval_s == pytest.approx(0.006)  # the slower of the two chips


def test_ina3221_globs_hwmon_number_and_never_adds_sum_channels(tmp_path):
    root = fixture_copy(tmp_path, "orin_nx_jp6")
    old = os.path.join(root, ORIN_NX_HWMON)
    new = old[: -len("hwmon3")] + "hwmon7"  # renumbered after a reboot
    os.rename(old, new)
    write_atomic(os.path.join(new, "curr4_input"), "999999")
    write_atomic(os.path.join(new, "in7_input"), "999999")
    m = open_meter("ina3221-hwmon", root=root, sum_rails=["VDD_CPU_GPU_CV", "VDD_SOC"])
    r = m.read()
    assert set(r.rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert r.total_mw == pytest.approx((5008 * 155 + 5000 * 285) / 1000)
    assert m.describe()["device"].endswith("hwmon7")


def test_ina3221_unknown_rail_and_missing_device(tmp_path):
    with pytest.raises(MeasurementError, match="no rail 'VDD_GPU'"):
        open_meter("ina3221-hwmon", root=os.path.join(FIX, "orin_nx_jp6"), total_rail="VDD_GPU")
    with pytest.raises(MeasurementError, match="ina3221-iio or tegrastats"):
        open_meter("ina3221-hwmon", root=str(tmp_path))


@pytest.mark.parametrize("board,total,rails", [
    ("nano_jp4", ("POM_5V_IN", 1022.0), {"POM_5V_IN": 1022.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 204.0}),
    ("xavier_nx_jp4", ("VDD_IN", 4034.0), {"VDD_IN": 4034.0, "VDD_CPU_GPU_CV": 409.0, "VDD_SOC": 1060.0}),
])
def test_ina3221_jetpack4_iio(board, total, rails):
    m = open_meter("ina3221-iio", root=os.path.join(FIX, board))
    r = m.read()
    assert r.rails == rails
    assert r.total_mw == total[1] and m.describe()["total"] == total[0]


# ---------------------------------------------------------------------------------------------
# tegrastats


def test_tegrastats_parses_both_formats_not_memory():
    jp5 = "RAM 2448/7620MB (lfb 1x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729] EMC_FREQ 0%@2133 " \
          "CPU@46.281C VDD_IN 5299mW/5299mW VDD_CPU_GPU_CV 773mW/773mW VDD_SOC 1424mW/1424mW"
    assert parse_tegrastats_line(jp5) == {"VDD_IN": 5299.0, "VDD_CPU_GPU_CV": 773.0, "VDD_SOC": 1424.0}
    jp4 = "RAM 1209/3964MB (lfb 454x4MB) IRAM 0/252kB(lfb 252kB) APE 25 CPU@31.5C " \
          "POM_5V_IN 1022/1022 POM_5V_GPU 0/0 POM_5V_CPU 204/204"
    assert parse_tegrastats_line(jp4) == {"POM_5V_IN": 1022.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 204.0}
    stamped = "02-14-2024 10:12:33 VDD_GPU_SOC 3184mW/3184mW VDD_CPU_CV 796mW/796mW"
    assert parse_tegrastats_line(stamped) == {"VDD_GPU_SOC": 3184.0, "VDD_CPU_CV": 796.0}
    assert parse_tegrastats_line("RAM 2448/7620MB SWAP 0/3810MB") == {}


def test_tegrastats_logs_integrate():
    nano = read_tegrastats_log(os.path.join(FIX, "tegrastats", "nano_jp4.log"), interval_ms=100)
    assert [r.total_mw for r in nano] == [1022.0, 2464.0, 1022.0]
    assert [r.time_monotonic for r in nano] == pytest.approx([0.0, 0.1, 0.2])
    # trapezoid: 0.1 s x (1022 + 2464) / 2 mW, twice
    assert integrate(nano) == pytest.approx(2 * 0.1 * (1022 + 2464) / 2 / 1000)
    orin = read_tegrastats_log(os.path.join(FIX, "tegrastats", "orin_nx_jp6.log"), interval_ms=1000)
    assert [r.total_mw for r in orin] == [5299.0, 6101.0, 7301.0, 5299.0]
    agx = read_tegrastats_log(os.path.join(FIX, "tegrastats", "agx_orin_jp6_timestamped.log"), 1000)
    assert agx[0].total_mw == 3184 + 796 + 2417 + 303  # AGX Orin: no total rail, summed


@pytest.fixture
def fake_bin(monkeypatch):
    monkeypatch.setenv("PATH", os.path.join(FIX, "bin") + os.pathsep + os.environ.get("PATH", ""))


def test_tegrastats_subprocess(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_TEGRASTATS_LOG", os.path.join(FIX, "tegrastats", "orin_nx_jp6.log"))
    m = open_meter("tegrastats", interval_ms=20)
    try:
        readings = [m.read() for _ in range(4)]
        assert [r.total_mw for r in readings] == [5299.0, 6101.0, 7301.0, 5299.0]
        assert all(b.time_monotonic > a.time_monotonic for a, b in zip(readings, readings[1:]))
        assert m.describe()["total"] == "VDD_IN" and "tegrastats --interval 20" in m.describe()["device"]
        with pytest.raises(MeasurementError, match="exited"):
            m.read()
    finally:
        m.close()


def test_sampler_on_tegrastats_keeps_every_line(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_TEGRASTATS_LOG", os.path.join(FIX, "tegrastats", "nano_jp4.log"))
    m = open_meter("tegrastats", interval_ms=30)
    s = Sampler(m).start()  # paced by tegrastats itself: every line becomes one sample
    deadline = time.monotonic() + 5
    while s.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    res = s.stop()
    m.close()
    assert [r.total_mw for r in s.samples] == [1022.0, 2464.0, 1022.0]
    assert res.samples == 3 and not res.complete and "exited" in res.error
    assert res.meter["total"] == "POM_5V_IN"


def test_tegrastats_follows_a_logfile(tmp_path):
    log = tmp_path / "t.log"
    log.write_text("VDD_IN 1000mW/1000mW VDD_SOC 100mW/100mW\n")  # written before: skipped
    m = open_meter("tegrastats", logfile=str(log), interval_ms=10, timeout_s=0.3)
    with open(str(log), "a") as f:
        f.write("VDD_IN 5299mW/5299mW VDD_SOC 1424mW/1424mW\n")
    assert m.read().total_mw == 5299.0
    with pytest.raises(MeasurementError, match="no new line"):
        m.read()
    m.close()


# ---------------------------------------------------------------------------------------------
# Raspberry Pi 5 PMIC


def test_pi5_pmic_pairs_rails_and_groups(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_VCGENCMD_OUTPUT", os.path.join(FIX, "pi5", "pmic_read_adc.txt"))
    m = open_meter("rpi5-pmic")
    r = m.read()
    assert len(r.rails) == 12 and "EXT5V" not in r.rails and "BATT" not in r.rails
    assert r.rails["VDD_CORE"] == pytest.approx(0.56259 * 0.7679846 * 1000)
    assert r.groups["CPU"] == r.rails["VDD_CORE"]
    assert r.groups["DRAM"] == pytest.approx(r.rails["DDR_VDD2"] + r.rails["DDR_VDDQ"])
    assert r.total_mw == pytest.approx(sum(r.rails.values()))
    assert 1400 < r.total_mw < 1600
    d = m.describe()
    assert "below wall power" in d["note"] and d["total_mode"] == "sum"


def test_pi4_has_no_pmic_adc(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_VCGENCMD_OUTPUT", os.path.join(FIX, "pi4", "pmic_read_adc.txt"))
    with pytest.raises(MeasurementError, match="no PMIC ADC"):
        open_meter("rpi5-pmic")


def test_pi5_without_vcgencmd(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MeasurementError, match="`vcgencmd` not found on PATH"):
        open_meter("rpi5-pmic")


def test_pmic_parser_ignores_voltage_only_rails():
    text = "  VDD_CORE_A current(7)=0.5A\n  VDD_CORE_V volt(15)=0.8V\n  EXT5V_V volt(24)=5.1V\n"
    assert parse_pmic_read_adc(text) == {"VDD_CORE": pytest.approx(400.0)}


# ---------------------------------------------------------------------------------------------
# INA219 / INA226


def test_ina2xx_hwmon_units(tmp_path):
    m = open_meter("ina2xx-hwmon", root=os.path.join(FIX, "pi4_ina226"))
    r = m.read()
    assert r.rails == {"ina226@1-0040": pytest.approx(4162.5)}  # power1_input uW / 1000
    root = fixture_copy(tmp_path, "pi4_ina226")
    os.remove(os.path.join(root, "sys/bus/i2c/drivers/ina2xx/1-0040/hwmon/hwmon2/power1_input"))
    assert open_meter("ina2xx-hwmon", root=root).read().total_mw == pytest.approx(5125 * 812 / 1000)


class FakeSMBus:
    """Big-endian 16-bit registers as the INA chips hold them; records writes."""

    def __init__(self, regs):
        self.regs = dict(regs)
        self.writes = []

    def read_i2c_block_data(self, addr, reg, n):
        assert addr == 0x40 and n == 2
        v = self.regs[reg]
        return [(v >> 8) & 0xFF, v & 0xFF]

    def write_i2c_block_data(self, addr, reg, data):
        self.writes.append((addr, reg, list(data)))
        self.regs[reg] = (data[0] << 8) | data[1]


def test_ina226_i2c_register_decoding():
    # 0.1 ohm shunt, 3.2768 A full scale: current LSB = 3.2768 / 2**15 = 0.1 mA, CAL = 0.00512 / (1e-4 x 0.1) = 512
    bus = FakeSMBus({0x02: 4000, 0x04: 8123, 0x03: 1624})  # 5.000 V, 812.3 mA
    m = Ina2xxI2cMeter(chip="ina226", shunt_ohms=0.1, max_current_a=3.2768, smbus=bus)
    assert bus.writes == [(0x40, 0x05, [0x02, 0x00])]
    r = m.read()
    assert r.total_mw == pytest.approx(1624 * 25 * 1e-4 * 1000)  # power LSB = 25 x current LSB
    assert decode_ina2xx("ina226", 4000, 8123, 1624, 1e-4)[:2] == pytest.approx((5000.0, 812.3))
    assert m.describe()["device"] == "/dev/i2c-1@0x40"


def test_ina219_i2c_register_decoding():
    cal, lsb = ina_calibration("ina219", 0.1, 3.2768)
    assert cal == 4096 and lsb == pytest.approx(1e-4)  # 0.04096 / (1e-4 x 0.1)
    # bus 12.000 V: 3000 << 3, CNVR (bit 1) set; current -20.0 mA two's complement
    bus_mv, cur_ma, p_mw = decode_ina2xx("ina219", (3000 << 3) | 0x2, 0xFF38, 100, lsb)
    assert bus_mv == pytest.approx(12000.0) and cur_ma == pytest.approx(-20.0)
    assert p_mw == pytest.approx(100 * 20 * 1e-4 * 1000)  # power LSB = 20 x current LSB
    with pytest.raises(MeasurementError, match="overflow"):
        decode_ina2xx("ina219", (3000 << 3) | 0x1, 0, 0, lsb)
    bus = FakeSMBus({0x02: (3000 << 3) | 0x2, 0x04: 200, 0x03: 1200})
    m = Ina2xxI2cMeter(chip="ina219", shunt_ohms=0.1, max_current_a=3.2768, smbus=bus)
    assert bus.regs[0x05] == 4096 and m.read().total_mw == pytest.approx(1200 * 2.0)


def test_ina2xx_i2c_without_smbus2(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_smbus2(name, *a, **k):
        if name == "smbus2":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_smbus2)
    with pytest.raises(MeasurementError, match="pip install smbus2"):
        open_meter("ina2xx-i2c")


# ---------------------------------------------------------------------------------------------
# RAPL


def test_rapl_zones_and_wraparound(tmp_path):
    root = fixture_copy(tmp_path, "rapl")
    pkg = os.path.join(root, RAPL, "intel-rapl:0", "energy_uj")
    write_atomic(pkg, "262143000000")  # near the end of the range (a jump there would be 245,840 J at once)
    m = open_meter("rapl", root=root)
    d = m.describe()
    assert d["rails"] == ["package-0", "psys"]  # subzones core/uncore are not top level
    assert d["summed_rails"] == ["package-0"]  # psys contains the package: not added
    r1 = m.read()
    write_atomic(pkg, "500000")  # wrapped past max_energy_range_uj = 262143328850
    r2 = m.read()
    assert r2.energy_j - r1.energy_j == pytest.approx((500000 - 262143000000 + 262143328850) / 1e6)
    assert r2.total_mw > 0
    assert open_meter("rapl", root=root, total_zone="psys").describe()["total"] == "psys"


def test_rapl_permission_hint(monkeypatch):
    real_open = open

    def denied(path, *a, **k):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(base, "open", denied, raising=False)  # the sysfs reads are in meters/base.py
    with pytest.raises(MeasurementError, match=r"root-only.*sudo chmod a\+r"):
        open_meter("rapl", root=os.path.join(FIX, "rapl"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_on_a_real_file(tmp_path):
    root = fixture_copy(tmp_path, "orin_nx_jp6")
    path = os.path.join(root, ORIN_NX_HWMON, "curr1_input")
    os.chmod(path, 0)
    m = open_meter("ina3221-hwmon", root=root)
    with pytest.raises(MeasurementError, match="permission denied.*run as root or `sudo chmod a\\+r"):
        m.read()


# ---------------------------------------------------------------------------------------------
# estimate, registry, detection


def test_estimate_is_labelled_everywhere():
    m = open_meter("estimate", pj_per_op="int8-ac")
    assert m.describe()["estimate"] is True and "estimate" in m.describe()["note"]
    with Sampler(m, interval_s=0.01) as s:
        with s.window("infer", count=10):
            time.sleep(0.05)  # the jump falls between two samples inside the window
            m.add(1e9)
            time.sleep(0.05)
    res = s.result()
    w = res.window("infer")
    assert w.energy_j == pytest.approx(1e9 * 0.03e-12)  # ops x pJ
    assert w.energy_per_item_j == pytest.approx(1e9 * 0.03e-12 / 10)
    assert res.estimate and res.label == "estimate" and w.estimate and w.label == "estimate"
    assert all(r.estimate for r in s.samples)
    with pytest.raises(MeasurementError, match="unknown energy per op"):
        open_meter("estimate", pj_per_op="int4")


def test_open_and_detect(fake_bin, monkeypatch):
    with pytest.raises(MeasurementError, match="unknown meter 'joulescope'"):
        open_meter("joulescope")
    assert detect_meter(os.path.join(FIX, "orin_nx_jp6")).kind == "ina3221-hwmon"
    assert detect_meter(os.path.join(FIX, "nano_jp4")).kind == "ina3221-iio"
    assert detect_meter(os.path.join(FIX, "pi4_ina226")).kind == "ina2xx-hwmon"
    assert open_meter("auto", root=os.path.join(FIX, "rapl")).kind == "rapl"
    monkeypatch.setenv("FAKE_VCGENCMD_OUTPUT", os.path.join(FIX, "pi5", "pmic_read_adc.txt"))
    assert detect_meter(os.path.join(FIX, "pi5")).kind == "rpi5-pmic"
    with pytest.raises(MeasurementError, match="no power meter found"):
        detect_meter(os.path.join(FIX, "tegrastats"))


class Chip:
    def __init__(self, device, rails):
        self.device, self.rails = device, rails


class Profile:
    """The fields of a board profile's power_meter (board.profile.PowerMeter) that meters use."""

    def __init__(self, kind, total=None, sum=(), groups=None, i2c=(), fallback=None):
        self.kind, self.total, self.sum, self.fallback = kind, total, tuple(sum), fallback
        self.groups, self.i2c = groups or {}, tuple(i2c)


def test_open_board_meter_follows_the_profile(fake_bin, monkeypatch):
    agx = Profile("ina3221-hwmon", sum=["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"],
                  groups={"gpu": ["VDD_GPU_SOC"]}, fallback="tegrastats")
    r = pm.open_board_meter(agx, root=os.path.join(FIX, "agx_orin_jp5")).read()
    assert r.total_mw == pytest.approx(sum(r.rails.values())) and r.groups == {"gpu": r.rails["VDD_GPU_SOC"]}
    rpi4 = Profile("ina2xx-hwmon", total="EXT_5V_IN", i2c=[Chip("1-0040", ["EXT_5V_IN"])])
    assert pm.open_board_meter(rpi4, root=os.path.join(FIX, "pi4_ina226")).read().rails == {
        "EXT_5V_IN": pytest.approx(4162.5)}
    x86 = Profile("rapl", total="package-0")
    assert pm.open_board_meter(x86, root=os.path.join(FIX, "rapl")).describe()["total"] == "package-0"
    monkeypatch.setenv("FAKE_VCGENCMD_OUTPUT", os.path.join(FIX, "pi5", "pmic_read_adc.txt"))
    rpi5 = Profile("rpi5-pmic", sum=["VDD_CORE", "DDR_VDD2", "DDR_VDDQ"],
                   groups={"cpu": ["VDD_CORE"], "dram": ["DDR_VDD2", "DDR_VDDQ"]})
    r = pm.open_board_meter(rpi5).read()
    assert r.total_mw == pytest.approx(r.groups["cpu"] + r.groups["dram"])
    # JetPack 4 sysfs not there (or root-only): the profile's fallback, tegrastats, opens instead
    monkeypatch.setenv("FAKE_TEGRASTATS_LOG", os.path.join(FIX, "tegrastats", "nano_jp4.log"))
    nano = Profile("ina3221-iio", total="POM_5V_IN", fallback="tegrastats")
    m = pm.open_board_meter(nano, root=os.path.join(FIX, "rapl"))
    try:
        assert m.kind == "tegrastats" and m.read().total_mw == 1022.0
    finally:
        m.close()
    with pytest.raises(MeasurementError, match="no power meter"):
        open_meter("none")
