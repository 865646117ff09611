"""Board profiles (``board/profiles/*.json``, ``board/profile.py``) and ``spikeedge boards``;
detection (``board/detect.py``) is tests/test_board_detect.py.

The fixture trees under ``tests/fixtures/boards/<board>/`` are laid out as on each board
(``../shared/reference/boards.md``); ``tests/board_trees.py`` names them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from spikeedge.board import profile
from spikeedge.errors import BoardError

from cli_helpers import assert_user_error, call, one_json
from board_trees import BOARDS, FIXTURES, tree


ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "board" / "profiles"  # the shipped JSON files


# ----------------------------------------------------------------------------- the shipped files


def test_the_shipped_boards_are_the_eight_supported_ones() -> None:
    assert [b.name for b in profile.list_boards()] == BOARDS
    assert sorted(p.stem for p in PROFILES.glob("*.json")) == BOARDS


@pytest.mark.parametrize("name", BOARDS)
def test_every_board_file_validates_and_round_trips(name: str) -> None:
    path = PROFILES / ("%s.json" % name)
    board = profile.load_board_file(path)
    assert board.name == name and board.source == path
    assert board.to_dict() == json.loads(path.read_text(encoding="utf-8"))  # every field kept, nothing added


# the facts of ../shared/reference/boards.md, pinned
FACTS: Dict[str, Dict[str, Any]] = {
    "rpi4": {"python": "3.11", "glibc": "2.36", "kind": "ina2xx-hwmon", "total": ("EXT_5V_IN",), "chips": ["1-0040"], "support": "supported"},
    "rpi5": {"python": "3.11", "glibc": "2.36", "kind": "rpi5-pmic", "total_count": 12, "chips": [], "support": "supported"},
    "jetson-nano": {"python": "3.6", "glibc": "2.27", "kind": "ina3221-iio", "total": ("POM_5V_IN",), "chips": ["6-0040"], "support": "best-effort"},
    "jetson-xavier-nx": {"python": "3.8", "glibc": "2.31", "kind": "ina3221-hwmon", "total": ("VDD_IN",), "chips": ["7-0040"], "support": "supported"},
    "jetson-orin-nano": {"python": "3.10", "glibc": "2.35", "kind": "ina3221-hwmon", "total": ("VDD_IN",), "chips": ["1-0040"], "support": "supported"},
    "jetson-orin-nx": {"python": "3.10", "glibc": "2.35", "kind": "ina3221-hwmon", "total": ("VDD_IN",), "chips": ["1-0040"], "support": "supported"},
    "jetson-agx-orin": {"python": "3.10", "glibc": "2.35", "kind": "ina3221-hwmon",
                        "total": ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"), "chips": ["1-0040", "1-0041"], "support": "supported"},
    "x86-dev": {"python": "3.8+", "glibc": None, "kind": "rapl", "total": ("package-0",), "chips": [], "support": "development"},
}


@pytest.mark.parametrize("name", BOARDS)
def test_board_profile_facts(name: str) -> None:
    board, facts = profile.get_board(name), FACTS[name]
    pm = board.power_meter
    assert (board.software.python, board.software.glibc, pm.kind, board.support) == (facts["python"], facts["glibc"], facts["kind"], facts["support"])
    assert [c.device for c in pm.i2c] == facts["chips"]
    if "total" in facts:
        assert pm.total_rails == facts["total"]
    else:
        assert len(pm.total_rails) == facts["total_count"] and pm.total is None
    assert board.backend.recommended in profile.BACKENDS and board.backend.reason.strip()
    assert board.install_notes


def test_agx_orin_sums_its_rails_and_pi5_groups_cpu_and_dram() -> None:
    agx = profile.get_board("jetson-agx-orin").power_meter
    assert agx.total is None and set(agx.sum) == set(agx.rails)
    assert [c.rails for c in agx.i2c] == [("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"), ("VDDQ_VDD2_1V8AO",)]
    pi5 = profile.get_board("rpi5").power_meter
    assert pi5.groups == {"cpu": ("VDD_CORE",), "dram": ("DDR_VDD2", "DDR_VDDQ")}
    for name in ("jetson-nano", "jetson-xavier-nx", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin"):
        assert profile.get_board(name).power_meter.fallback == "tegrastats"


def test_install_notes_carry_the_known_traps() -> None:
    notes = {n: " ".join(profile.get_board(n).install_notes) for n in BOARDS}
    assert "PEP 668" in notes["rpi4"] and "PEP 668" in notes["rpi5"]
    assert "2.13" in notes["jetson-xavier-nx"] and "glibc 2.34" in notes["jetson-xavier-nx"]
    assert "3.8" in notes["jetson-nano"] and "best effort" in notes["jetson-nano"]


def test_pyproject_ships_the_board_files() -> None:
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "spikeedge.board.profiles" in setup["packages"]
    assert setup["package-data"]["spikeedge.board.profiles"] == ["*.json"]
    assert (ROOT / "board" / "profiles" / "__init__.py").is_file()


# ----------------------------------------------------------------------------- malformed board files


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    keys = path.split(".")

    def edit(d: Dict[str, Any]) -> None:
        target: Any = d
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        target[keys[-1]] = value

    return edit


def _drop(path: str) -> Callable[[Dict[str, Any]], None]:
    keys = path.split(".")

    def edit(d: Dict[str, Any]) -> None:
        target = d
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return edit


def _both(*edits: Callable[[Dict[str, Any]], None]) -> Callable[[Dict[str, Any]], None]:
    def edit(d: Dict[str, Any]) -> None:
        for e in edits:
            e(d)

    return edit


BAD = {
    "unknown key": (_set("colour", "red"), "top level: unknown key 'colour'"),
    "unknown nested key": (_set("identity.serial", "x"), "identity: unknown key 'serial'"),
    "missing key": (_drop("backend"), "top level: missing key 'backend'"),
    "missing nested key": (_drop("power_meter.rails"), "power_meter: missing key 'rails'"),
    "name not a string": (_set("name", 5), "name: expected a string, got a number"),
    "bus as text": (_set("power_meter.i2c.0.bus", "7"), "power_meter.i2c[0].bus: expected an integer, got a string"),
    "bus as bool": (_set("power_meter.i2c.0.bus", True), "power_meter.i2c[0].bus: expected an integer, got true/false"),
    "rails not a list": (_set("power_meter.rails", "VDD_IN"), "power_meter.rails: expected a list"),
    "empty display name": (_set("display_name", " "), "display_name: empty string"),
    "unknown meter kind": (_set("power_meter.kind", "shunt-magic"), "power_meter.kind: unknown value 'shunt-magic'"),
    "unknown fallback": (_set("power_meter.fallback", "multimeter"), "power_meter.fallback: unknown value 'multimeter'"),
    "unknown backend": (_set("backend.recommended", "tensorrt"), "backend.recommended: unknown value 'tensorrt'"),
    "unknown support": (_set("support", "maybe"), "support: unknown value 'maybe'"),
    "total not a rail": (_set("power_meter.total", "VDD_GPU"), "power_meter.total: 'VDD_GPU' is not one of the rails (VDD_IN, VDD_CPU_GPU_CV, VDD_SOC)"),
    "chip rail not a rail": (_set("power_meter.i2c.0.rails", ["VDD_IN", "VDD_DDR"]), "power_meter.i2c[0].rails: 'VDD_DDR' is not one of the rails"),
    "summed rail not a rail": (_both(_set("power_meter.total", None), _set("power_meter.sum", ["VDD_IN", "VDD_X"])), "power_meter.sum: 'VDD_X' is not one of the rails"),
    "group rail not a rail": (_set("power_meter.groups", {"cpu": ["VDD_CPU"]}), "power_meter.groups.cpu: 'VDD_CPU' is not one of the rails"),
    "total and sum": (_set("power_meter.sum", ["VDD_SOC"]), "power_meter.sum: give either a total rail or the rails to sum, not both"),
    "neither total nor sum": (_set("power_meter.total", None), "power_meter: no total rail and no rails to sum"),
    "rail twice": (_set("power_meter.rails", ["VDD_IN", "VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]), "power_meter.rails: 'VDD_IN' is listed twice"),
    "meter none with rails": (_both(_set("power_meter.kind", "none"), _set("power_meter.fallback", None)), "power_meter: kind 'none' takes no rails"),
    "fallback is itself": (_set("power_meter.fallback", "ina3221-hwmon"), "power_meter.fallback: 'ina3221-hwmon' is not another meter"),
    "address out of range": (_set("power_meter.i2c.0.address", "0x80"), "power_meter.i2c[0].address: '0x80' is not a 7-bit I2C address"),
    "address as number": (_set("power_meter.i2c.0.address", 64), "power_meter.i2c[0].address: expected a string, got a number"),
    "chip twice": (_set("power_meter.i2c", [{"bus": 7, "address": "0x40", "rails": []}] * 2), "power_meter.i2c[1]: bus 7 address 0x40 is listed twice"),
    "bad l4t pattern": (_set("identity.l4t_releases", ["35"]), "identity.l4t_releases[0]: '35' is not an L4T release pattern"),
    "nothing identifies": (_both(_set("identity.model_substrings", []), _set("identity.compatible", [])), "identity: nothing identifies the board"),
    "other schema version": (_set("schema_version", 2), "schema_version: 2, this spikeedge reads version 1"),
    "name is not the file name": (_set("name", "xavier"), "name: 'xavier' differs from the file name 'jetson-xavier-nx.json'"),
    "name not an id": (_set("name", "Xavier NX"), "name: 'Xavier NX' is not a short id"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_board_file_is_one_line_naming_file_and_problem(tmp_path: Path, case: str) -> None:
    edit, expected = BAD[case]
    data = json.loads((PROFILES / "jetson-xavier-nx.json").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "jetson-xavier-nx.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    with pytest.raises(BoardError) as info:
        profile.load_board_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("%s: " % path), message
    assert expected in message, message


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"name": "x",}', "not valid JSON"),
        ('{"name": "a", "name": "b"}', "key 'name' appears twice"),
        ("[1, 2]", "top level: expected an object, got a list"),
        ("", "not valid JSON"),
    ],
)
def test_unparseable_board_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BoardError, match="broken.json: .*%s" % expected):
        profile.load_board_file(path)


def test_a_folder_with_one_bad_file_names_that_file(tmp_path: Path) -> None:
    for name in ("rpi4", "rpi5"):
        shutil.copy(str(PROFILES / ("%s.json" % name)), str(tmp_path))
    assert [b.name for b in profile.list_boards(tmp_path)] == ["rpi4", "rpi5"]
    (tmp_path / "zz-bad.json").write_text('{"schema_version": 1}', encoding="utf-8")
    with pytest.raises(BoardError, match=r"zz-bad\.json: top level: missing key 'name'"):
        profile.list_boards(tmp_path)
    with pytest.raises(BoardError, match="no board files"):
        profile.list_boards(tmp_path / "nothing-here")


def test_unknown_board_name_lists_the_known_ones() -> None:
    with pytest.raises(BoardError) as info:
        profile.get_board("raspberry-pi-6")
    assert "'raspberry-pi-6'" in str(info.value) and ", ".join(BOARDS) in str(info.value)


# ----------------------------------------------------------------------------- the command


def test_cli_list_json(capsys: Any) -> None:
    rc, out, err = call(capsys, "boards", "list", "--json")
    assert rc == 0, err
    rows = one_json(out)["boards"]
    assert [r["name"] for r in rows] == BOARDS
    agx = rows[0]
    assert agx["power_meter"] == "ina3221-hwmon" and len(agx["power_total"]) == 4 and agx["backend"] == "onnx"


def test_cli_list_human_is_a_table(capsys: Any) -> None:
    rc, out, err = call(capsys, "boards", "list")
    assert rc == 0, err
    assert not out.lstrip().startswith("{")
    for name in BOARDS:
        assert name in out


@pytest.mark.parametrize("name", ["rpi5", "jetson-agx-orin"])
def test_cli_show_json_is_the_profile(capsys: Any, name: str) -> None:
    rc, out, err = call(capsys, "boards", "show", name, "--json")
    assert rc == 0, err
    assert one_json(out) == json.loads((PROFILES / ("%s.json" % name)).read_text(encoding="utf-8"))
    rc, out, err = call(capsys, "boards", "show", name)
    assert rc == 0, err
    assert profile.get_board(name).display_name in out and not out.lstrip().startswith("{")


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_cli_show_unknown_board_exits_2(capsys: Any, as_json: Any) -> None:
    rc, out, err = call(capsys, "boards", "show", "rpi9", *as_json)
    assert_user_error(rc, out, err, "'rpi9'", "rpi5", "jetson-orin-nano")


@pytest.mark.parametrize("name", BOARDS)
def test_cli_detect_json_from_each_fixture(capsys: Any, name: str) -> None:
    rc, out, err = call(capsys, "boards", "detect", "--root", FIXTURES / name, "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["detected"] is True and result["board"] == name
    assert result["root"] == str(FIXTURES / name)


def test_cli_detect_unknown_board_exits_0(capsys: Any) -> None:
    rc, out, err = call(capsys, "boards", "detect", "--root", FIXTURES / "unknown-arm", "--json")
    assert rc == 0, err
    result = one_json(out)
    assert result["detected"] is False and result["board"] is None and "Pine64" in result["reason"]
    rc, out, err = call(capsys, "boards", "detect", "--root", FIXTURES / "unknown-arm")
    assert rc == 0, err
    assert "no supported board detected" in out


def test_cli_detect_human_shows_board_sensors_and_warnings(tmp_path: Path, capsys: Any) -> None:
    root = tree(tmp_path, "jetson-agx-orin")
    shutil.rmtree(str(root / "sys" / "bus" / "i2c" / "drivers" / "ina3221" / "1-0041"))
    rc, out, err = call(capsys, "boards", "detect", "--root", root)
    assert rc == 0, err
    assert "NVIDIA Jetson AGX Orin" in out and "ina3221-hwmon 1-0040" in out
    assert "warning:" in out and "1-0041" in out


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_cli_detect_bad_root_exits_2(tmp_path: Path, capsys: Any, as_json: Any) -> None:
    rc, out, err = call(capsys, "boards", "detect", "--root", tmp_path / "no-such-dir", *as_json)
    assert_user_error(rc, out, err, "--root", "no-such-dir")


def test_cli_broken_shipped_file_exits_2(monkeypatch: Any, tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "rpi5.json").write_text('{"schema_version": 1, "name": "rpi5"}', encoding="utf-8")
    monkeypatch.setattr(profile, "boards_dir", lambda: tmp_path)
    profile._shipped.cache_clear()
    try:
        rc, out, err = call(capsys, "boards", "list", "--json")
    finally:
        profile._shipped.cache_clear()
    assert_user_error(rc, out, err, "rpi5.json", "missing key 'display_name'")
