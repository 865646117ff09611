"""``spikeedge power watch|record`` and ``spikeedge profile`` on fixture sensor trees laid out as
on the boards (``tests/fixtures/power``): the numbers follow from the fixtures' known power."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error, call, one_json

ROOT = Path(__file__).resolve().parent.parent
ORIN = str(ROOT / "tests" / "fixtures" / "power" / "orin_nx_jp6")
ORIN_VDD_IN_MW = 5295.0  # the fixture's VDD_IN: in1_input x curr1_input / 1000


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: Any) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_exact import random_model

    from spikeedge.offline.quantize import quantize_hrsnn
    from spikeedge.runtime import bundle as fmt

    model = random_model("direct", "subtract", n=60, n_inputs=1)
    path = tmp_path_factory.mktemp("model") / "m.seb"
    fmt.save(quantize_hrsnn(model, np.random.default_rng(0).random((200, 1))), path)
    return path


def test_power_watch_reads_the_board_rails(capsys: Any) -> None:
    rc, out, err = call(capsys, "power", "watch", "--meter", "ina3221-hwmon", "--root", ORIN, "--duration", "0.4", "--json")
    assert rc == 0, err
    r = one_json(out)
    assert r["samples"] >= 5 and r["meter"]["total"] == "VDD_IN"
    assert r["rails"]["VDD_IN"]["mean_mw"] == pytest.approx(ORIN_VDD_IN_MW)
    assert r["rails"]["total"]["mean_mw"] == pytest.approx(ORIN_VDD_IN_MW)
    assert r["sampling_rate_hz"] <= 1 / r["meter"]["min_interval_s"] + 1e-6  # never faster than the sensor refreshes


def test_power_record_energy_of_a_command(capsys: Any) -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    rc, out, err = call(capsys, "power", "record", "--meter", "ina3221-hwmon", "--root", ORIN, "--baseline", "0.2", "--json", "--", *cmd)
    assert rc == 0, err
    r = one_json(out)
    assert r["returncode"] == 0 and r["command"] == cmd and r["label"] == "measured"
    assert r["mean_power_mw"]["gross"] == pytest.approx(ORIN_VDD_IN_MW, rel=1e-6)  # constant fixture power
    assert r["energy_j"]["gross"] == pytest.approx(ORIN_VDD_IN_MW / 1e3 * r["seconds"], rel=0.05)
    assert abs(r["energy_j"]["dynamic"]) < 1e-6  # no power above the idle baseline


def test_power_record_failing_command_exits_1(capsys: Any) -> None:
    rc, out, err = call(capsys, "power", "record", "--meter", "ina3221-hwmon", "--root", ORIN, "--baseline", "0", "--json", "--",
                        sys.executable, "-c", "raise SystemExit(3)")
    assert rc == 1
    assert one_json(out)["returncode"] == 3 and "exited with 3" in err


@pytest.mark.parametrize("argv,names", [
    (["power", "record", "--meter", "ina3221-hwmon", "--root", ORIN], ["command"]),
    (["power", "watch", "--meter", "rapl", "--root", "/nonexistent-root", "--duration", "0.1"], ["rapl"]),
    (["power", "watch", "--meter", "flux-capacitor", "--duration", "0.1"], ["flux-capacitor"]),
    (["power", "watch", "--meter", "ina3221-hwmon", "--root", ORIN, "--duration", "0"], ["--duration"]),
    (["profile", "missing.seb", "--task", "mackey-glass"], ["missing.seb"]),
])
def test_power_and_profile_user_errors(capsys: Any, argv: Any, names: Any) -> None:
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, out, err, *names)


def test_profile_with_the_estimate_meter(capsys: Any, bundle_path: Path) -> None:
    rc, out, err = call(capsys, "profile", str(bundle_path), "--task", "mackey-glass", "--samples", "3", "--meter", "estimate", "--json")
    assert rc == 0, err
    r = one_json(out)
    assert r["inferences"] == 3 and r["steps_per_inference"] == 750
    assert set(r["phases_share"]) == {"encode", "accumulate", "neuron", "readout"}
    assert sum(r["phases_share"].values()) == pytest.approx(1.0)
    assert 0 < r["spike_rate"]["hidden"] < 1 and r["synops_per_inference"] > 0
    assert r["memory"]["traced_peak_bytes"] > 0
    assert r["power"]["label"] == "estimate"
    assert r["power"]["energy_per_inference_j"]["gross"] == pytest.approx(r["synops_per_inference"] * 0.03e-12, rel=1e-9)


def test_profile_with_a_board_meter(capsys: Any, bundle_path: Path) -> None:
    rc, out, err = call(capsys, "profile", str(bundle_path), "--task", "mackey-glass", "--samples", "2", "--repeats", "3",
                        "--meter", "ina3221-hwmon", "--root", ORIN, "--baseline", "0.2", "--json")
    assert rc == 0, err
    r = one_json(out)
    p = r["power"]
    assert p["label"] == "measured" and p["meter"]["total"] == "VDD_IN" and p["baseline_mw"] == pytest.approx(ORIN_VDD_IN_MW)
    assert p["energy_per_inference_j"]["gross"] == pytest.approx(ORIN_VDD_IN_MW / 1e3 * p["window_s"] / 6, rel=1e-6)
    assert abs(p["energy_per_inference_j"]["dynamic"]) < 1e-6


def test_profile_without_a_meter_says_so(capsys: Any, bundle_path: Path, tmp_path: Path) -> None:
    rc, out, err = call(capsys, "profile", str(bundle_path), "--task", "mackey-glass", "--samples", "1", "--root", str(tmp_path), "--json")
    assert rc == 0, err
    r = one_json(out)
    assert "power" not in r and "no power figures" in r["power_note"]
