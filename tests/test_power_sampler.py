"""The energy sampler over the power meters: trapezoid integration, sensor files rewritten by a
thread with a known power profile, a RAPL counter that wraps, a sensor that vanishes, a failed
start, a given baseline. The meters themselves: tests/test_power.py."""

import os
import threading
import time

import numpy as np
import pytest

from spikeedge.board.meters import Reading, open_meter
from spikeedge.errors import MeasurementError
from spikeedge.board.sampler import EnergyTrace, Sampler, integrate
from power_trees import FIX, ORIN_NX_HWMON, RAPL, fixture_copy, write_atomic


# ---------------------------------------------------------------------------------------------
# integration and the sampler


def test_energy_trace_trapezoid_and_partial_windows():
    rs = [Reading(0.0, 0.0, {}), Reading(1.0, 1000.0, {}), Reading(2.0, 1000.0, {})]
    tr = EnergyTrace(rs)
    assert tr.energy_at(2.0) == pytest.approx(1.5)
    # 0.5..1: power rises 500 -> 1000 mW (0.375 J); 1..1.5: 1 W (0.5 J)
    assert tr.energy_between(0.5, 1.5) == pytest.approx((0.875, 1.0))
    assert tr.energy_between(1.5, 5.0) == pytest.approx((0.5, 0.5))  # covered part only
    counters = [Reading(0.0, 0.0, {}, energy_j=10.0), Reading(2.0, 0.0, {}, energy_j=14.0)]
    assert EnergyTrace(counters).energy_between(0.5, 1.0) == pytest.approx((1.0, 0.5))
    with pytest.raises(MeasurementError):
        integrate(rs[:1])


class ProfileWriter(threading.Thread):
    """Writes ``current_ma(time.monotonic())`` into a sensor file about every millisecond, and
    keeps what it wrote and when (``written``): the signal the sensor really carried, which lags
    the analytic profile when the machine is busy."""

    def __init__(self, path, current_ma):
        super().__init__(daemon=True)
        self.path, self.current_ma = path, current_ma
        self.halt = threading.Event()
        self.written = []

    def run(self):
        while not self.halt.is_set():
            value = int(round(self.current_ma(time.monotonic())))
            write_atomic(self.path, str(value))
            self.written.append((time.monotonic(), value))
            time.sleep(0.001)

    def energy_j(self, volts, t0, t1):
        """The integral over [t0, t1] of the written (piecewise constant) current times ``volts``."""
        total, (t_prev, v_prev) = 0.0, self.written[0]
        for t, v in self.written[1:] + [(t1, None)]:
            a, b = max(t_prev, t0), min(t, t1)
            if b > a:
                total += v_prev * 1e-3 * volts * (b - a)
            t_prev, v_prev = t, v if v is not None else v_prev
        return total


def analytic_energy_j(power_w, t0, t1, n=200001):
    t = np.linspace(t0, t1, n)
    p = np.array([power_w(x) for x in t])
    return float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(t)))


def test_sampler_integrates_a_known_profile_within_1_percent(tmp_path):
    root = fixture_copy(tmp_path, "orin_nx_jp6")
    hw = os.path.join(root, ORIN_NX_HWMON)
    write_atomic(os.path.join(hw, "update_interval"), "5")
    volts = 5.0  # in1_input stays 5000 mV
    ts = [float("inf")]  # profile start, set once the baseline is done

    def current_ma(t):  # idle 500 mA; ramp to 1500 mA over 0.6 s; hold 0.3 s; step to 800 mA
        x = t - ts[0]
        if x < 0:
            return 500.0
        if x < 0.6:
            return 500.0 + 1000.0 * x / 0.6
        return 1500.0 if x < 0.9 else 800.0

    writer = ProfileWriter(os.path.join(hw, "curr1_input"), current_ma)
    writer.start()
    try:
        s = Sampler(open_meter("ina3221-hwmon", root=root), interval_s=0.001)
        assert s.interval_s == pytest.approx(0.005)  # never faster than update_interval
        with s:
            base = s.measure_baseline(0.3)
            ts[0] = time.monotonic()
            with s.window("profile", count=4):
                time.sleep(1.2)
        res = s.result()
    finally:
        writer.halt.set()
        writer.join()
    assert res.error is None and res.complete
    assert base == pytest.approx(500 * volts, rel=0.01)
    w = res.window("profile")
    truth = writer.energy_j(volts, w.start_s, w.end_s)  # the signal the sensor carried
    assert truth == pytest.approx(analytic_energy_j(lambda t: current_ma(t) * volts / 1000.0, w.start_s, w.end_s), rel=0.02)
    assert w.energy_j == pytest.approx(truth, rel=0.01)
    truth_dyn = truth - 0.5 * volts * w.duration_s
    assert w.dynamic_energy_j == pytest.approx(truth_dyn, rel=0.01)
    assert w.mean_power_mw == pytest.approx(truth / w.duration_s * 1000, rel=0.01)
    assert w.energy_per_item_j == pytest.approx(w.energy_j / 4)
    assert w.coverage == 1.0 and w.samples > 20
    times = [r.time_monotonic for r in s.samples]
    assert min(np.diff(times)) >= 0.005 - 1e-4
    assert 0 < res.effective_rate_hz <= 1 / 0.005 + 1
    assert res.meter["total"] == "VDD_IN" and res.meter["rails"] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]


def test_sampler_rapl_counter_with_wraps(tmp_path):
    root = fixture_copy(tmp_path, "rapl")
    zone = os.path.join(root, RAPL, "intel-rapl:0")
    write_atomic(os.path.join(zone, "max_energy_range_uj"), "2000000")  # wraps every 0.4 s at 5 W
    t0 = time.monotonic()
    path = os.path.join(zone, "energy_uj")

    class Counter(ProfileWriter):
        def run(self):
            while not self.halt.is_set():
                uj = int(5e6 * (time.monotonic() - t0)) % 2000000  # 5 W
                write_atomic(self.path, str(uj))
                time.sleep(0.001)

    writer = Counter(path, None)
    write_atomic(path, "0")
    writer.start()
    try:
        with Sampler(open_meter("rapl", root=root), interval_s=0.02) as s:
            with s.window("run"):
                time.sleep(1.0)
        w = s.result().window("run")
    finally:
        writer.halt.set()
        writer.join()
    assert w.energy_j == pytest.approx(5.0 * w.duration_s, rel=0.01)
    assert w.mean_power_mw == pytest.approx(5000.0, rel=0.01)


def test_sensor_file_vanishing_keeps_samples(tmp_path):
    root = fixture_copy(tmp_path, "orin_nx_jp6")
    victim = os.path.join(root, ORIN_NX_HWMON, "curr2_input")
    s = Sampler(open_meter("ina3221-hwmon", root=root), interval_s=0.01)
    s.start()
    with s.window("run"):
        time.sleep(0.15)
        os.remove(victim)
        time.sleep(0.15)
    deadline = time.monotonic() + 5
    while s.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    res = s.stop()
    assert res.error is not None and "vanished" in res.error and victim in res.error
    assert not res.complete
    assert res.samples >= 3
    w = res.window("run")
    assert 0.2 < w.coverage < 0.9  # samples until the file went away
    assert w.mean_power_mw == pytest.approx(5295 + 0.0, rel=1e-6)  # VDD_IN, constant


def test_sampler_start_fails_cleanly(tmp_path):
    root = fixture_copy(tmp_path, "orin_nx_jp6")
    m = open_meter("ina3221-hwmon", root=root)
    os.remove(os.path.join(root, ORIN_NX_HWMON, "in1_input"))
    s = Sampler(m)
    with pytest.raises(MeasurementError, match="in1_input"):
        s.start()
    assert s.stop().samples == 0


def test_given_baseline_and_dict_result():
    m = open_meter("ina3221-iio", root=os.path.join(FIX, "nano_jp4"))
    with Sampler(m) as s:
        s.set_baseline(1000.0)
        with s.window("w"):
            time.sleep(0.05)
    d = s.result().to_dict()
    w = d["windows"][0]
    assert d["baseline"]["source"] == "given" and d["meter"]["total"] == "POM_5V_IN"
    assert w["mean_power_mw"] == pytest.approx(1022.0) and w["dynamic_power_mw"] == pytest.approx(22.0)
    assert w["dynamic_energy_j"] == pytest.approx(0.022 * w["duration_s"], rel=1e-6)
