"""``spikeedge bench`` on a board (``measure/bench.py``, ``board/environment.py``): power from a
board's sensor tree whose current rises while the model runs, the trace, no meter or a declared
board noted, and the environment record read from fixture trees, before and after a run."""

from __future__ import annotations

import stat
import sys
import threading
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from cli_helpers import call, one_json

from spikeedge.measure.bench import MAX_TRACE, bench_model, power_trace
from spikeedge.board.environment import environment, thermal
from spikeedge.board.meters import Reading
from bench_helpers import board_tree, mackey_glass_files, wrap_sessions, write_atomic


ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"


@pytest.fixture(scope="module")
def files(tmp_path_factory: Any) -> Dict[str, Path]:
    return mackey_glass_files(tmp_path_factory.mktemp("bench-models"))


def test_idle_active_and_dynamic_power_from_the_board_sensor(files: Dict[str, Path], tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """Jetson Orin NX tree: VDD_IN idles at 5056 mV x 1379 mA; from the first timed inference on
    the current is 2379 mA. Idle, active and dynamic power follow, and energy = power x time."""
    root = board_tree(tmp_path, "jetson-orin-nx")
    hw = root / ORIN_HWMON
    idle_w, busy_w = 5056 * 1379 / 1e6, 5056 * 2379 / 1e6
    # The numpy core: its inferences are long against the sensor's 5 ms update interval; the
    # compiled core's (~10x shorter) would let one lagging reading shift the window's mean by > 2%.
    monkeypatch.setenv("SPIKEEDGE_CORE", "numpy")
    wrap_sessions(monkeypatch, {2: lambda: write_atomic(hw / "curr1_input", "2379")})  # warm-up is inference 1
    db = tmp_path / "r.sqlite"
    rc, out, err = call(capsys, "bench", files["event"], "--task", "mackey-glass", "--trials", "3", "--samples", "3", "--warmup", "1",
                        "--meter", "auto", "--root", root, "--baseline", "0.3", "--db", db, "--json")
    assert rc == 0, err
    [r] = one_json(out)["runs"]
    assert r["board"] == "jetson-orin-nx"
    p = r["power"]
    assert p["label"] == "measured" and p["meter"] == "ina3221-hwmon" and "VDD_IN" in p["rails"] and p["total_rule"] == "VDD_IN"
    assert p["idle_w"] == pytest.approx(idle_w, rel=1e-9)  # measured before the change
    assert p["active_w"] == pytest.approx(busy_w, rel=0.02)  # the change lands at the window's start, within one 5 ms reading
    assert p["dynamic_w"] == pytest.approx(p["active_w"] - p["idle_w"], rel=1e-12)
    seconds = r["latency"]["mean_ms"] / 1e3
    assert p["energy_per_inference_j"]["total"] == pytest.approx(p["active_w"] * seconds, rel=1e-12)
    assert p["energy_per_inference_j"]["dynamic"] == pytest.approx(p["dynamic_w"] * seconds, rel=1e-12)
    assert 0 < p["sampling_rate_hz"] <= 1 / 0.005 + 1  # never faster than the sensor's update_interval
    t, w = p["trace"]["t_s"], p["trace"]["w"]
    assert 10 < len(t) == len(w) <= MAX_TRACE and t == sorted(t)
    assert min(w) == pytest.approx(idle_w) and max(w) == pytest.approx(busy_w)
    assert not [th for th in threading.enumerate() if th.name == "power-sampler"]


def test_power_trace_is_binned_to_2000_points() -> None:
    rs = [Reading(0.001 * i, 1000.0 + (i % 7), {}) for i in range(5003)]
    tr = power_trace(rs)
    assert len(tr["t_s"]) == len(tr["w"]) == MAX_TRACE
    assert np.mean(tr["w"]) == pytest.approx(np.mean([r.total_mw / 1e3 for r in rs]), rel=1e-3)  # bins keep the mean
    assert tr["t_s"][0] == pytest.approx(0.0005, abs=1e-3) and tr["t_s"][-1] == pytest.approx(5.0, abs=0.01)


def test_no_meter_means_no_power_and_a_note(files: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    rc, out, err = call(capsys, "bench", files["event"], "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0",
                        "--root", tmp_path, "--no-store", "--json")
    assert rc == 0, err
    res = one_json(out)
    [r] = res["runs"]
    assert r["power"] is None and r["board"] == "unknown" and any("no power figures" in n for n in r["notes"])
    assert res["stored"] is False and res["run_ids"] is None


def test_a_declared_board_is_recorded_with_a_note(files: Dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    """Where detection cannot tell (an empty root here; qemu in the field) --board names the profile."""
    base = ["bench", files["event"], "--task", "mackey-glass", "--trials", "1", "--samples", "1", "--warmup", "0", "--root", tmp_path,
            "--meter", "none", "--no-store"]
    rc, out, err = call(capsys, *base, "--board", "rpi4", "--json")
    assert rc == 0, err
    [r] = one_json(out)["runs"]
    assert r["board"] == "rpi4" and any("rpi4 as declared" in n and "unknown" in n for n in r["notes"])
    rc, out, err = call(capsys, *base, "--board", "rpi9")
    assert rc == 2 and out == "" and "rpi9" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the environment record


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def put(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


def test_environment_of_a_raspberry_pi_tree(tmp_path: Path) -> None:
    root = board_tree(tmp_path, "rpi5")
    put(root, "proc/sys/kernel/hostname", "pi5-lab")
    put(root, "proc/sys/kernel/ostype", "Linux")
    put(root, "proc/sys/kernel/osrelease", "6.6.51+rpt-rpi-2712")
    put(root, "proc/sys/kernel/version", "#1 SMP PREEMPT Debian 1:6.6.51-1+rpt3")
    for cpu in range(4):
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cpu, "ondemand")
    put(root, "sys/class/thermal/thermal_zone0/temp", "48312")
    put(root, "sys/class/thermal/thermal_zone1/temp", "51000")
    executable(root / "usr/bin/vcgencmd", '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x50005"\n')
    env = environment(str(root))
    assert env["hostname"] == "pi5-lab" and env["kernel"] == "Linux 6.6.51+rpt-rpi-2712 #1 SMP PREEMPT Debian 1:6.6.51-1+rpt3"
    assert env["cpu_model"] == "Raspberry Pi 5 Model B Rev 1.0" and env["governor"] == "ondemand"
    assert env["python"] == "%d.%d.%d" % sys.version_info[:3] and env["packages"]["numpy"] == np.__version__
    assert thermal(str(root)) == {"temperature_c": 51.0, "throttled": "0x50005"}


def test_environment_of_a_jetson_tree_with_a_capped_cpu(tmp_path: Path) -> None:
    root = board_tree(tmp_path, "jetson-orin-nx")
    for cpu, cap in ((0, "1984000"), (1, "1510400")):
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % cpu, "schedutil")
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/scaling_max_freq" % cpu, cap)
        put(root, "sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq" % cpu, "1984000")
    put(root, "sys/class/thermal/cooling_device0/type", "cpufreq-cpu0")
    put(root, "sys/class/thermal/cooling_device0/cur_state", "0")
    put(root, "sys/class/thermal/cooling_device0/max_state", "10")
    assert thermal(str(root)) == {"temperature_c": None, "throttled": "cpu1 capped at 1510 of 1984 MHz"}
    put(root, "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq", "1984000")
    assert thermal(str(root))["throttled"] == "ok"
    put(root, "sys/class/thermal/cooling_device0/cur_state", "3")
    assert thermal(str(root))["throttled"] == "cpufreq-cpu0 3/10"
    env = environment(str(root))
    assert env["cpu_model"].startswith("NVIDIA Jetson Orin NX") and env["governor"] == "schedutil"


def test_nothing_readable_is_none(tmp_path: Path) -> None:
    env = environment(str(tmp_path))
    assert env["hostname"] is None and env["kernel"] is None and env["cpu_model"] is None and env["governor"] is None
    assert thermal(str(tmp_path)) == {"temperature_c": None, "throttled": None}


def test_bench_records_the_state_before_and_after(files: Dict[str, Path], tmp_path: Path, monkeypatch: Any) -> None:
    """The temperature file is rewritten during the trials: before and after differ."""
    root = board_tree(tmp_path, "rpi5")
    zone = root / "sys/class/thermal/thermal_zone0/temp"
    put(root, "sys/class/thermal/thermal_zone0/temp", "45000")
    executable(root / "usr/bin/vcgencmd", '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x0"\n')
    wrap_sessions(monkeypatch, {2: lambda: write_atomic(zone, "71500")})
    r = bench_model(files["event"], "mackey-glass", trials=1, warmup=1, samples=1, root=str(root))
    env = r["environment"]
    assert r["board"] == "rpi5"
    assert env["temperature_c"] == {"before": 45.0, "after": 71.5} and env["throttled"] == {"before": "0x0", "after": "0x0"}
