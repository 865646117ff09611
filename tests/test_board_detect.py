"""Board detection (``board/detect.py``) from the fixture trees under
``tests/fixtures/boards/<board>/``, laid out as on each board (``../shared/reference/boards.md``):
``/proc/device-tree/model`` with its trailing NUL, the ``compatible`` list,
``/etc/nv_tegra_release``, the INA3221 hwmon (JetPack 5/6) and iio (JetPack 4) folders, an INA226
on the ina2xx driver, RAPL powercap zones and ``/proc/cpuinfo``. Variants (a tree without its
device tree, another L4T release, a missing sensor) are copies edited in a temporary folder; the
warnings say what does not fit the profile.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
from spikeedge.board import detect as detection
from spikeedge.errors import BoardError

from board_trees import BOARDS, FIXTURES, tree


# ----------------------------------------------------------------------------- detection from the fixture trees


DETECTED = {
    "rpi4": ("Raspberry Pi 4 Model B Rev 1.5", None),
    "rpi5": ("Raspberry Pi 5 Model B Rev 1.0", None),
    "jetson-nano": ("NVIDIA Jetson Nano Developer Kit", "R32.7.4"),
    "jetson-xavier-nx": ("NVIDIA Jetson Xavier NX Developer Kit", "R35.4.1"),
    "jetson-orin-nano": ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "R36.4.3"),
    "jetson-orin-nx": ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "R36.3.0"),
    "jetson-agx-orin": ("NVIDIA Jetson AGX Orin Developer Kit", "R35.4.1"),
    "x86-dev": (None, None),
}


@pytest.mark.parametrize("name", BOARDS)
def test_detect_every_board_from_its_fixture(name: str) -> None:
    found = detection.detect(FIXTURES / name)
    assert found.detected and found.board is not None and found.board.name == name, found.reason
    assert found.candidates == (name,)
    assert found.method == ("cpuinfo" if name == "x86-dev" else "device-tree")
    assert found.warnings == (), found.warnings  # every fixture has its meter where the profile says
    model, release = DETECTED[name]
    ev = found.evidence
    assert ev["device_tree_model"] == model  # the trailing NUL is gone
    assert (ev["l4t"] or {}).get("release") == release
    json.dumps(found.to_dict())  # the CLI prints it


def test_sensor_evidence_matches_the_sysfs_layouts() -> None:
    agx = detection.detect(FIXTURES / "jetson-agx-orin").evidence["power_sensors"]
    assert [(s["kind"], s["device"], s["rails"]) for s in agx] == [
        ("ina3221-hwmon", "1-0040", ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]),
        ("ina3221-hwmon", "1-0041", ["NC", "VDDQ_VDD2_1V8AO", "NC"]),
    ]
    assert agx[0]["path"] == "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"  # as on the board, not the fixture path
    nano = detection.detect(FIXTURES / "jetson-nano").evidence
    assert nano["power_sensors"] == [{"kind": "ina3221-iio", "device": "6-0040", "path": "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0",
                                      "rails": ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]}]
    assert nano["l4t"] == {"release": "R32.7.4", "board": "t210ref",
                           "line": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023"}
    assert nano["tools"] == {"tegrastats": "/usr/bin/tegrastats"}
    pi4 = detection.detect(FIXTURES / "rpi4").evidence["power_sensors"]
    assert [(s["kind"], s["device"], s["chip"]) for s in pi4] == [("ina2xx-hwmon", "1-0040", "ina226")]
    x86 = detection.detect(FIXTURES / "x86-dev").evidence
    # only the package zone: intel-rapl:0:0 (core), intel-rapl:0:1 (uncore) and intel-rapl-mmio:0 are left out
    assert [(s["device"], s["zone"], s["readable"]) for s in x86["power_sensors"]] == [("intel-rapl:0", "package-0", True)]
    assert x86["cpu_vendor"] == "GenuineIntel" and "i7-1260P" in x86["cpu_model"]


def test_unknown_board_is_a_result_not_an_exception(tmp_path: Path) -> None:
    found = detection.detect(FIXTURES / "unknown-arm")
    assert not found.detected and found.board is None and found.method == "none" and found.candidates == ()
    assert "not a supported board" in found.reason and "Pine64 RockPro64 v2.1" in found.reason
    assert found.to_dict()["board"] is None and found.to_dict()["detected"] is False
    empty = detection.detect(tmp_path)
    assert not empty.detected and "no device tree" in empty.reason


def test_detect_refuses_a_root_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(BoardError, match="--root"):
        detection.detect(tmp_path / "missing")


@pytest.mark.parametrize("name", [b for b in BOARDS if b != "x86-dev"])
def test_the_model_string_alone_identifies_each_board(tmp_path: Path, name: str) -> None:
    root = tree(tmp_path, name)
    (root / "proc" / "device-tree" / "compatible").unlink()
    found = detection.detect(root)
    assert found.board is not None and found.board.name == name and found.method == "device-tree"
    assert "model" in found.reason and "compatible" not in found.reason


def test_the_compatible_list_alone_identifies_the_orin_modules(tmp_path: Path) -> None:
    for name in ("jetson-orin-nano", "jetson-orin-nx"):
        root = tree(tmp_path, name)
        (root / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Orin Developer Kit\0")  # a generic carrier's model
        found = detection.detect(root)
        assert found.board is not None and found.board.name == name, found.reason


def test_pi_model_from_cpuinfo_when_the_device_tree_is_hidden(tmp_path: Path) -> None:
    root = tree(tmp_path, "rpi5")
    shutil.rmtree(str(root / "proc" / "device-tree"))
    found = detection.detect(root)
    assert found.board is not None and found.board.name == "rpi5"
    assert found.evidence["model_source"] == "/proc/cpuinfo"


@pytest.mark.parametrize("name", ["jetson-nano", "jetson-xavier-nx", "jetson-agx-orin"])
def test_jetson_without_device_tree_by_l4t_and_ina3221(tmp_path: Path, name: str) -> None:
    root = tree(tmp_path, name)
    shutil.rmtree(str(root / "proc" / "device-tree"))
    found = detection.detect(root)
    assert found.board is not None and found.board.name == name, found.reason
    assert found.method == "l4t+power-sensors"


def test_orin_nano_and_nx_without_device_tree_are_ambiguous(tmp_path: Path) -> None:
    root = tree(tmp_path, "jetson-orin-nano")
    shutil.rmtree(str(root / "proc" / "device-tree"))
    found = detection.detect(root)
    assert found.board is None and found.method == "none"
    assert found.candidates == ("jetson-orin-nano", "jetson-orin-nx")
    assert found.reason.startswith("ambiguous") and "1-0040" in found.reason


def test_l4t_alone_without_the_sensors_is_not_enough(tmp_path: Path) -> None:
    root = tree(tmp_path, "jetson-xavier-nx")
    shutil.rmtree(str(root / "proc" / "device-tree"))
    shutil.rmtree(str(root / "sys"))
    found = detection.detect(root)
    assert found.board is None and "L4T R35.4.1" in found.reason


# ----------------------------------------------------------------------------- warnings: what does not fit the profile


def _edit_and_detect(tmp_path: Path, name: str, edit: Callable[[Path], None]) -> detection.Detection:
    root = tree(tmp_path, name)
    edit(root)
    found = detection.detect(root)
    assert found.board is not None and found.board.name == name  # still detected
    return found


def test_warning_for_another_l4t_release(tmp_path: Path) -> None:
    def jetpack4(root: Path) -> None:
        (root / "etc" / "nv_tegra_release").write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64, DATE: Sat Feb 19 17:07:00 UTC 2022\n")

    (w,) = _edit_and_detect(tmp_path, "jetson-xavier-nx", jetpack4).warnings
    assert "R32.7.1" in w and "R35" in w


def test_warning_for_the_jetpack4_layout_on_a_jetpack5_profile(tmp_path: Path) -> None:
    def iio(root: Path) -> None:
        drivers = root / "sys" / "bus" / "i2c" / "drivers"
        shutil.rmtree(str(drivers / "ina3221"))
        folder = drivers / "ina3221x" / "7-0040" / "iio:device0"
        folder.mkdir(parents=True)
        for c, rail in enumerate(("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")):
            (folder / ("rail_name_%d" % c)).write_text(rail + "\n")

    (w,) = _edit_and_detect(tmp_path, "jetson-xavier-nx", iio).warnings
    assert "7-0040" in w and "ina3221-iio" in w


def test_warning_for_a_missing_chip(tmp_path: Path) -> None:
    def drop(root: Path) -> None:
        shutil.rmtree(str(root / "sys" / "bus" / "i2c" / "drivers" / "ina3221" / "1-0041"))

    (w,) = _edit_and_detect(tmp_path, "jetson-agx-orin", drop).warnings
    assert "1-0041" in w and "VDDQ_VDD2_1V8AO" in w and "tegrastats" in w


def test_warning_for_a_pi4_without_external_sensor(tmp_path: Path) -> None:
    (w,) = _edit_and_detect(tmp_path, "rpi4", lambda root: shutil.rmtree(str(root / "sys"))).warnings
    assert "ina2xx" in w and "1-0040" in w


def test_warning_for_a_pi5_without_vcgencmd(tmp_path: Path) -> None:
    (w,) = _edit_and_detect(tmp_path, "rpi5", lambda root: (root / "usr" / "bin" / "vcgencmd").unlink()).warnings
    assert "vcgencmd" in w


def test_warning_for_x86_without_rapl_and_amd_is_x86_too(tmp_path: Path) -> None:
    def amd(root: Path) -> None:
        shutil.rmtree(str(root / "sys"))
        cpuinfo = root / "proc" / "cpuinfo"
        cpuinfo.write_text(cpuinfo.read_text().replace("GenuineIntel", "AuthenticAMD"))

    found = _edit_and_detect(tmp_path, "x86-dev", amd)
    assert found.evidence["cpu_vendor"] == "AuthenticAMD"
    (w,) = found.warnings
    assert "intel-rapl" in w
