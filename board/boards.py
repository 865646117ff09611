"""Board profiles: load and validate ``board/profiles/*.json``, and detect which board this is.

Python 3.8+, standard library only (no numpy): ``spikeedge boards`` must work on a bare board.
``docs/boards.md`` describes every field of the files and how :func:`detect` decides.

- :func:`load_board_file` reads one file and checks it completely: unknown, missing and wrongly
  typed keys, unknown enum values (meter kind, backend, support level), and the rails (the total,
  the summed rails, the groups and each I2C chip's rails must all be among ``rails``). Every
  problem is a :class:`BoardError` of one line naming the file and the key.
- :func:`detect` reads a file-system tree (``root``, ``/`` on a real board; a fixture tree in
  tests): ``proc/device-tree/{model,compatible}``, ``etc/nv_tegra_release``, ``proc/cpuinfo`` and
  the sysfs power sensors. It returns a :class:`Detection` (board or none, and the evidence); an
  unknown machine is a result, not an exception.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import BoardError

SCHEMA_VERSION = 1
METER_KINDS = ("ina3221-hwmon", "ina3221-iio", "tegrastats", "rpi5-pmic", "ina2xx-hwmon", "rapl", "none")
BACKENDS = ("event", "onnx", "tflite")
SUPPORT_LEVELS = ("supported", "best-effort", "development", "unsupported")
ARCHES = ("aarch64", "x86_64")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ADDRESS = re.compile(r"^0x[0-9a-f]{2}$")
_L4T_PATTERN = re.compile(r"^R\d+(\.\d+){0,2}$")


# ----------------------------------------------------------------------------- the profile


@dataclass(frozen=True)
class Identity:
    """Strings that identify the board; :func:`detect` explains how each is used."""

    model_prefixes: Tuple[str, ...]  # /proc/device-tree/model starts with one of these
    model_substrings: Tuple[str, ...]  # ... or contains one of these
    compatible: Tuple[str, ...]  # substrings of one entry of /proc/device-tree/compatible
    l4t_releases: Tuple[str, ...]  # /etc/nv_tegra_release patterns: "R36" or "R35.4" (prefix by parts)
    cpu_vendors: Tuple[str, ...]  # /proc/cpuinfo vendor_id (x86)


@dataclass(frozen=True)
class Software:
    os: str  # the operating system the profile is for
    python: str  # its system Python, e.g. "3.10"
    glibc: Optional[str]  # its glibc (decides which wheels install); None: varies


@dataclass(frozen=True)
class I2CChip:
    """One power-monitor chip: I2C bus number, 7-bit address and the rails it measures."""

    bus: int
    address: int
    rails: Tuple[str, ...]

    @property
    def device(self) -> str:
        """The kernel's device name, e.g. ``1-0040`` (as under ``/sys/bus/i2c/drivers/*/``)."""
        return "%d-%04x" % (self.bus, self.address)


@dataclass(frozen=True)
class PowerMeter:
    kind: str  # one of METER_KINDS
    fallback: Optional[str]  # another kind to use when ``kind`` is not readable (e.g. tegrastats)
    rails: Tuple[str, ...]  # every rail the meter reports that matters
    total: Optional[str]  # the rail that is the whole board or module, if there is one
    sum: Tuple[str, ...]  # otherwise: the rails to add up for the total
    groups: Dict[str, Tuple[str, ...]]  # named subsets, e.g. {"cpu": ("VDD_CORE",)}
    i2c: Tuple[I2CChip, ...]  # where the chips sit, where known
    notes: Tuple[str, ...]

    @property
    def total_rails(self) -> Tuple[str, ...]:
        """The rails whose power makes the board's total."""
        return (self.total,) if self.total else self.sum


@dataclass(frozen=True)
class Backend:
    recommended: str  # one of BACKENDS
    reason: str


@dataclass(frozen=True)
class Board:
    name: str  # short id, equal to the file name without .json
    display_name: str
    arch: str
    support: str  # one of SUPPORT_LEVELS
    identity: Identity
    software: Software
    power_meter: PowerMeter
    backend: Backend
    install_notes: Tuple[str, ...]
    source: Path = field(compare=False)  # the file it was read from

    def to_dict(self) -> Dict[str, Any]:
        """The profile as its JSON file holds it (same keys, same order)."""
        pm, ident = self.power_meter, self.identity
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "display_name": self.display_name,
            "arch": self.arch,
            "support": self.support,
            "identity": {
                "model_prefixes": list(ident.model_prefixes),
                "model_substrings": list(ident.model_substrings),
                "compatible": list(ident.compatible),
                "l4t_releases": list(ident.l4t_releases),
                "cpu_vendors": list(ident.cpu_vendors),
            },
            "software": {"os": self.software.os, "python": self.software.python, "glibc": self.software.glibc},
            "power_meter": {
                "kind": pm.kind,
                "fallback": pm.fallback,
                "rails": list(pm.rails),
                "total": pm.total,
                "sum": list(pm.sum),
                "groups": {k: list(v) for k, v in pm.groups.items()},
                "i2c": [{"bus": c.bus, "address": "0x%02x" % c.address, "rails": list(c.rails)} for c in pm.i2c],
                "notes": list(pm.notes),
            },
            "backend": {"recommended": self.backend.recommended, "reason": self.backend.reason},
            "install_notes": list(self.install_notes),
        }


# ----------------------------------------------------------------------------- validation


class _Invalid(Exception):
    """One problem in a board file: ``where`` (a dotted key path) and what is wrong."""


Check = Callable[[Any, str], Any]


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid("%s: expected a string, got %s" % (where, _type_name(value)))
    if not value.strip():
        raise _Invalid("%s: empty string" % where)
    return value


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("%s: expected an integer, got %s" % (where, _type_name(value)))
    return value


def _optional(check: Check) -> Check:
    def run(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)

    return run


def _one_of(choices: Sequence[str]) -> Check:
    def run(value: Any, where: str) -> str:
        value = _text(value, where)
        if value not in choices:
            raise _Invalid("%s: unknown value %r (known: %s)" % (where, value, ", ".join(choices)))
        return value

    return run


def _list_of(check: Check) -> Check:
    def run(value: Any, where: str) -> Tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Invalid("%s: expected a list, got %s" % (where, _type_name(value)))
        return tuple(check(item, "%s[%d]" % (where, i)) for i, item in enumerate(value))

    return run


def _object(fields: Dict[str, Check]) -> Check:
    """An object with exactly these keys, each checked."""

    def run(value: Any, where: str) -> Dict[str, Any]:
        label = where or "top level"
        if not isinstance(value, dict):
            raise _Invalid("%s: expected an object, got %s" % (label, _type_name(value)))
        unknown = [k for k in value if k not in fields]
        if unknown:
            raise _Invalid("%s: unknown key %r (known: %s)" % (label, unknown[0], ", ".join(fields)))
        missing = [k for k in fields if k not in value]
        if missing:
            raise _Invalid("%s: missing key %r" % (label, missing[0]))
        return {k: check(value[k], "%s.%s" % (where, k) if where else k) for k, check in fields.items()}

    return run


def _map_of(check: Check) -> Check:
    def run(value: Any, where: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise _Invalid("%s: expected an object, got %s" % (where, _type_name(value)))
        return {_text(k, where): check(v, "%s.%s" % (where, k)) for k, v in value.items()}

    return run


def _address(value: Any, where: str) -> int:
    text = _text(value, where)
    if not _ADDRESS.match(text) or not 0x03 <= int(text, 16) <= 0x77:
        raise _Invalid("%s: %r is not a 7-bit I2C address written as 0x03..0x77 (lower case)" % (where, text))
    return int(text, 16)


def _l4t(value: Any, where: str) -> str:
    text = _text(value, where)
    if not _L4T_PATTERN.match(text):
        raise _Invalid("%s: %r is not an L4T release pattern such as R36 or R35.4" % (where, text))
    return text


_FILE = _object(
    {
        "schema_version": _integer,
        "name": _text,
        "display_name": _text,
        "arch": _one_of(ARCHES),
        "support": _one_of(SUPPORT_LEVELS),
        "identity": _object(
            {
                "model_prefixes": _list_of(_text),
                "model_substrings": _list_of(_text),
                "compatible": _list_of(_text),
                "l4t_releases": _list_of(_l4t),
                "cpu_vendors": _list_of(_text),
            }
        ),
        "software": _object({"os": _text, "python": _text, "glibc": _optional(_text)}),
        "power_meter": _object(
            {
                "kind": _one_of(METER_KINDS),
                "fallback": _optional(_one_of(METER_KINDS)),
                "rails": _list_of(_text),
                "total": _optional(_text),
                "sum": _list_of(_text),
                "groups": _map_of(_list_of(_text)),
                "i2c": _list_of(_object({"bus": _integer, "address": _address, "rails": _list_of(_text)})),
                "notes": _list_of(_text),
            }
        ),
        "backend": _object({"recommended": _one_of(BACKENDS), "reason": _text}),
        "install_notes": _list_of(_text),
    }
)


def _check_rails(pm: Dict[str, Any]) -> None:
    rails = pm["rails"]
    known = ", ".join(rails) or "none"

    def among(names: Sequence[str], where: str) -> None:
        for name in names:
            if name not in rails:
                raise _Invalid("%s: %r is not one of the rails (%s)" % (where, name, known))

    if len(set(rails)) != len(rails):
        raise _Invalid("power_meter.rails: %r is listed twice" % next(r for r in rails if rails.count(r) > 1))
    if pm["kind"] == "none":
        if rails or pm["total"] or pm["sum"] or pm["i2c"] or pm["groups"]:
            raise _Invalid("power_meter: kind 'none' takes no rails, total, sum, groups or i2c")
        if pm["fallback"] is not None:
            raise _Invalid("power_meter.fallback: kind 'none' has no fallback")
        return
    if not rails:
        raise _Invalid("power_meter.rails: a %r meter needs at least one rail" % pm["kind"])
    if pm["fallback"] in (pm["kind"], "none"):
        raise _Invalid("power_meter.fallback: %r is not another meter (use null for none)" % pm["fallback"])
    if pm["total"] is not None:
        among([pm["total"]], "power_meter.total")
        if pm["sum"]:
            raise _Invalid("power_meter.sum: give either a total rail or the rails to sum, not both")
    elif not pm["sum"]:
        raise _Invalid("power_meter: no total rail and no rails to sum: the board's power would be undefined")
    among(pm["sum"], "power_meter.sum")
    for name, members in pm["groups"].items():
        among(members, "power_meter.groups.%s" % name)
    chips = set()
    for i, chip in enumerate(pm["i2c"]):
        among(chip["rails"], "power_meter.i2c[%d].rails" % i)
        if (chip["bus"], chip["address"]) in chips:
            raise _Invalid("power_meter.i2c[%d]: bus %d address 0x%02x is listed twice" % (i, chip["bus"], chip["address"]))
        chips.add((chip["bus"], chip["address"]))


def _reject_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Invalid("key %r appears twice" % key)
        out[key] = value
    return out


def _parse(path: Path) -> Board:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Invalid("no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid("unreadable: %s" % exc) from None
    try:
        raw = json.loads(text, object_pairs_hook=_reject_duplicates)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise _Invalid("not valid JSON: %s" % exc) from None
    if isinstance(raw, dict) and "schema_version" in raw and raw["schema_version"] != SCHEMA_VERSION:
        raise _Invalid("schema_version: %r, this spikeedge reads version %d" % (raw["schema_version"], SCHEMA_VERSION))
    d = _FILE(raw, "")
    if not _NAME.match(d["name"]):
        raise _Invalid("name: %r is not a short id (lower-case letters, digits and '-')" % d["name"])
    if d["name"] != path.stem:
        raise _Invalid("name: %r differs from the file name %r" % (d["name"], path.name))
    ident = d["identity"]
    if not (ident["model_prefixes"] or ident["model_substrings"] or ident["compatible"] or ident["cpu_vendors"]):
        raise _Invalid("identity: nothing identifies the board (give model_prefixes, model_substrings, compatible or cpu_vendors)")
    pm = d["power_meter"]
    _check_rails(pm)
    return Board(
        name=d["name"],
        display_name=d["display_name"],
        arch=d["arch"],
        support=d["support"],
        identity=Identity(**ident),
        software=Software(**d["software"]),
        power_meter=PowerMeter(
            kind=pm["kind"],
            fallback=pm["fallback"],
            rails=pm["rails"],
            total=pm["total"],
            sum=pm["sum"],
            groups=pm["groups"],
            i2c=tuple(I2CChip(**chip) for chip in pm["i2c"]),
            notes=pm["notes"],
        ),
        backend=Backend(**d["backend"]),
        install_notes=d["install_notes"],
        source=path,
    )


def load_board_file(path: Union[str, Path]) -> Board:
    """Read and validate one board file; any problem is a one-line :class:`BoardError`."""
    path = Path(path)
    try:
        return _parse(path)
    except _Invalid as exc:
        raise BoardError("%s: %s" % (path, exc)) from None


def boards_dir() -> Path:
    """Where the shipped board files live (the ``spikeedge.board.profiles`` package)."""
    from . import profiles as data

    return data.DATA_DIR


def load_boards(directory: Optional[Union[str, Path]] = None) -> Dict[str, Board]:
    """Every ``*.json`` board file of ``directory`` (default: the shipped ones), by name."""
    if directory is None:
        return dict(_shipped())
    return _load_dir(Path(directory))


def _load_dir(directory: Path) -> Dict[str, Board]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise BoardError("%s: no board files (*.json)" % directory)
    return {b.name: b for b in (load_board_file(f) for f in files)}


@lru_cache(maxsize=None)
def _shipped() -> Tuple[Tuple[str, Board], ...]:
    return tuple(_load_dir(boards_dir()).items())


def list_boards(directory: Optional[Union[str, Path]] = None) -> List[Board]:
    """The boards, sorted by name."""
    return [b for _, b in sorted(load_boards(directory).items())]


def get_board(name: str, directory: Optional[Union[str, Path]] = None) -> Board:
    """One board by its short id; an unknown name is a :class:`BoardError` listing the known ones."""
    boards = load_boards(directory)
    if name not in boards:
        raise BoardError("unknown board %r (known: %s)" % (name, ", ".join(sorted(boards))))
    return boards[name]


# ----------------------------------------------------------------------------- what the file system shows


def _under(root: Path, rel: str) -> Path:
    return root / rel.lstrip("/")


def _show(root: Path, path: Path) -> str:
    """``path`` as it is on the board: ``/sys/...`` whatever the root."""
    try:
        return "/" + path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:  # absent, a directory, or root-only
        return None


def _read_text(path: Path) -> Optional[str]:
    data = _read(path)
    return None if data is None else data.decode("utf-8", "replace").strip()


def _device_tree(root: Path) -> Tuple[Optional[str], Tuple[str, ...]]:
    """The model string (NUL-terminated on real boards) and the compatible list."""
    model: Optional[str] = None
    compatible: Tuple[str, ...] = ()
    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        if model is None:
            raw = _read(_under(root, base) / "model")
            if raw is not None:
                model = raw.split(b"\0")[0].decode("utf-8", "replace").strip() or None
        if not compatible:
            raw = _read(_under(root, base) / "compatible")
            if raw is not None:
                compatible = tuple(s.decode("utf-8", "replace").strip() for s in raw.split(b"\0") if s.strip())
    return model, compatible


_TEGRA = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9][0-9.]*)")
_TEGRA_BOARD = re.compile(r"BOARD:\s*([^,\s]+)")


def _l4t_release(root: Path) -> Optional[Dict[str, Optional[str]]]:
    """``# R35 (release), REVISION: 4.1, GCID: ..., BOARD: t186ref, ...`` -> release R35.4.1."""
    text = _read_text(_under(root, "etc/nv_tegra_release"))
    if not text:
        return None
    line = text.splitlines()[0].strip()
    m = _TEGRA.search(line)
    if not m:
        return {"release": None, "line": line}  # present but not in a form we know
    out: Dict[str, Optional[str]] = {"release": "R%s.%s" % (m.group(1), m.group(2).rstrip(".")), "line": line}
    b = _TEGRA_BOARD.search(line)
    if b:
        out["board"] = b.group(1)
    return out


def _cpuinfo(root: Path) -> Dict[str, str]:
    """The first value of each key of ``/proc/cpuinfo`` (``vendor_id``, ``Model``, ...)."""
    text = _read_text(_under(root, "proc/cpuinfo")) or ""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _labels(folder: Path, names: Sequence[str]) -> List[str]:
    return [_read_text(folder / n) or "" for n in names]


def _power_sensors(root: Path) -> List[Dict[str, Any]]:
    """The power monitors visible in sysfs, in a fixed order."""
    found: List[Dict[str, Any]] = []
    drivers = _under(root, "sys/bus/i2c/drivers")
    for hw in sorted(drivers.glob("ina3221/*-*/hwmon/hwmon*")):
        labels = [_read_text(hw / ("in%d_label" % k)) or _read_text(hw / ("curr%d_label" % k)) or "" for k in (1, 2, 3)]
        found.append({"kind": "ina3221-hwmon", "device": hw.parent.parent.name, "path": _show(root, hw), "rails": labels})
    for iio in sorted(drivers.glob("ina3221x/*-*/iio:device*")):
        found.append({"kind": "ina3221-iio", "device": iio.parent.name, "path": _show(root, iio), "rails": _labels(iio, ["rail_name_%d" % c for c in (0, 1, 2)])})
    for hw in sorted(drivers.glob("ina2xx/*-*/hwmon/hwmon*")):
        found.append({"kind": "ina2xx-hwmon", "device": hw.parent.parent.name, "path": _show(root, hw), "chip": _read_text(hw / "name") or ""})
    for zone in sorted(_under(root, "sys/class/powercap").glob("intel-rapl:*")):
        if zone.name.count(":") != 1:  # intel-rapl:0:0 and the like are subzones of a package
            continue
        energy = zone / "energy_uj"
        found.append({"kind": "rapl", "device": zone.name, "path": _show(root, zone), "zone": _read_text(zone / "name") or "",
                      "readable": energy.is_file() and os.access(str(energy), os.R_OK)})
    return found


_TOOLS = {"tegrastats": "tegrastats", "rpi5-pmic": "vcgencmd"}


def _tools(root: Path) -> Dict[str, str]:
    out = {}
    for tool in sorted(set(_TOOLS.values())):
        for folder in ("usr/bin", "usr/local/bin", "bin"):
            p = _under(root, folder) / tool
            if p.is_file():
                out[tool] = _show(root, p)
                break
    return out


# ----------------------------------------------------------------------------- matching


def _model_matches(board: Board, model: Optional[str]) -> bool:
    if not model:
        return False
    ident = board.identity
    return any(model.startswith(p) for p in ident.model_prefixes) or any(s in model for s in ident.model_substrings)


def _compatible_matches(board: Board, compatible: Sequence[str]) -> bool:
    return any(s in entry for s in board.identity.compatible for entry in compatible)


def _l4t_matches(board: Board, release: Optional[str]) -> bool:
    """``R35`` matches R35.x.y, ``R35.4`` matches R35.4.y (by whole parts, so R3 matches nothing)."""
    if not release:
        return False
    parts = release.split(".")
    return any(parts[: len(p.split("."))] == p.split(".") for p in board.identity.l4t_releases)


_SENSOR_KINDS = {"ina3221-hwmon": ("ina3221-hwmon", "ina3221-iio"), "ina3221-iio": ("ina3221-iio", "ina3221-hwmon"), "ina2xx-hwmon": ("ina2xx-hwmon",)}


def _chip_sensor(chip: I2CChip, kinds: Sequence[str], sensors: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The sensor at ``chip``'s bus and address (of one of ``kinds``) that shows its rails."""
    for s in sensors:
        if s["kind"] in kinds and s["device"] == chip.device:
            if "rails" not in s or all(r in s["rails"] for r in chip.rails):
                return s
    return None


def _sensors_match(board: Board, sensors: Sequence[Dict[str, Any]]) -> bool:
    """Every INA3221 chip of the profile is there with its rail labels (JetPack 4 or 5+ layout)."""
    pm = board.power_meter
    kinds = _SENSOR_KINDS.get(pm.kind)
    if not kinds or not kinds[0].startswith("ina3221") or not pm.i2c:
        return False
    return all(_chip_sensor(chip, kinds, sensors) is not None for chip in pm.i2c)


def _warnings(board: Board, ev: Dict[str, Any]) -> List[str]:
    """What does not fit the profile: another L4T release, a missing or unreadable meter."""
    out: List[str] = []
    pm, sensors, l4t = board.power_meter, ev["power_sensors"], ev["l4t"]
    if board.identity.l4t_releases:
        release = l4t.get("release") if l4t else None
        if not release:
            out.append("no L4T release in /etc/nv_tegra_release; the profile expects %s" % " or ".join(board.identity.l4t_releases))
        elif not _l4t_matches(board, release):
            out.append("L4T %s is not a release this profile is for (%s)" % (release, " or ".join(board.identity.l4t_releases)))
    if pm.kind in ("ina3221-hwmon", "ina3221-iio", "ina2xx-hwmon"):
        kinds = _SENSOR_KINDS[pm.kind]
        for chip in pm.i2c:
            s = _chip_sensor(chip, kinds, sensors)
            if s is None:
                what = "INA3221" if pm.kind.startswith("ina3221") else "INA219/INA226 bound to the ina2xx driver"
                fallback = " (tegrastats may still work)" if pm.fallback == "tegrastats" and "tegrastats" in ev["tools"] else ""
                out.append("no %s at %s (rails %s) in sysfs: no %s power readings%s" % (what, chip.device, ", ".join(chip.rails), pm.kind, fallback))
            elif s["kind"] != pm.kind:
                out.append("%s at %s uses the %s layout; the profile expects %s" % ("INA3221", chip.device, s["kind"], pm.kind))
    elif pm.kind == "rapl":
        zones = [s for s in sensors if s["kind"] == "rapl"]
        if not zones:
            out.append("no /sys/class/powercap/intel-rapl:N: no RAPL energy readings")
        elif not all(z["readable"] for z in zones):
            out.append("RAPL energy_uj is not readable (root only since Linux 5.10): run power commands as root")
    if pm.kind in _TOOLS and _TOOLS[pm.kind] not in ev["tools"]:
        out.append("%s not found: no %s power readings" % (_TOOLS[pm.kind], pm.kind))
    return out


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found: the board (or None), how, and the evidence it read."""

    board: Optional[Board]
    method: str  # "device-tree", "cpuinfo", "l4t+power-sensors" or "none"
    reason: str  # one sentence for people
    candidates: Tuple[str, ...]  # the boards that fit (more than one: ambiguous)
    evidence: Dict[str, Any]
    warnings: Tuple[str, ...]
    root: str

    @property
    def detected(self) -> bool:
        return self.board is not None

    def to_dict(self) -> Dict[str, Any]:
        b = self.board
        return {
            "detected": b is not None,
            "board": b.name if b else None,
            "display_name": b.display_name if b else None,
            "support": b.support if b else None,
            "power_meter": b.power_meter.kind if b else None,
            "backend": b.backend.recommended if b else None,
            "method": self.method,
            "reason": self.reason,
            "candidates": list(self.candidates),
            "warnings": list(self.warnings),
            "evidence": self.evidence,
            "root": self.root,
        }


def _evidence(root: Path) -> Dict[str, Any]:
    model, compatible = _device_tree(root)
    cpu = _cpuinfo(root)
    model_source = "/proc/device-tree/model" if model else None
    if model is None and cpu.get("Model"):  # Raspberry Pi kernels repeat the model in cpuinfo
        model, model_source = cpu["Model"], "/proc/cpuinfo"
    return {
        "device_tree_model": model,
        "model_source": model_source,
        "device_tree_compatible": list(compatible),
        "l4t": _l4t_release(root),
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_model": cpu.get("model name"),
        "power_sensors": _power_sensors(root),
        "tools": _tools(root),
    }


def detect(root: Union[str, Path] = "/", boards: Optional[Sequence[Board]] = None) -> Detection:
    """Which supported board the tree at ``root`` is, in this order:

    1. the device tree: ``compatible`` entries, then the ``model`` string (prefixes, substrings);
    2. x86: ``vendor_id`` of ``/proc/cpuinfo``;
    3. a Jetson without a readable device tree: the L4T release together with the INA3221 chips
       (bus, address and rail labels) that sysfs shows.

    The first rule that fits exactly one board decides; several boards fitting is reported as
    ambiguous with the candidates; nothing fitting is an unknown board. Never raises for an
    unknown machine; a ``root`` that is not a folder is a :class:`BoardError`.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise BoardError("--root: %s is not a folder" % root)
    all_boards = list(boards) if boards is not None else list_boards()
    ev = _evidence(root_path)
    model, compatible, l4t = ev["device_tree_model"], ev["device_tree_compatible"], ev["l4t"]
    release = l4t.get("release") if l4t else None

    def result(fits: List[Board], method: str, why: str) -> Detection:
        names = tuple(b.name for b in fits)
        if len(fits) == 1:
            return Detection(fits[0], method, why, names, ev, tuple(_warnings(fits[0], ev)), str(root))
        return Detection(None, "none", "ambiguous: %s fits %s" % (why, ", ".join(names)), names, ev, (), str(root))

    by_compat = [b for b in all_boards if _compatible_matches(b, compatible)]
    by_model = [b for b in all_boards if _model_matches(b, model)]
    if by_compat:
        both = [b for b in by_compat if b in by_model]
        fits = both if len(by_compat) > 1 and both else by_compat
        entries = [e for e in compatible if any(_compatible_matches(b, [e]) for b in fits)]
        why = "device-tree compatible %s" % ", ".join(entries)
        return result(fits, "device-tree", why + (" and model %r" % model if model and all(b in by_model for b in fits) else ""))
    if by_model:
        return result(by_model, "device-tree", "device-tree model %r" % model)
    vendor = ev["cpu_vendor"]
    by_vendor = [b for b in all_boards if vendor and vendor in b.identity.cpu_vendors]
    if by_vendor:
        return result(by_vendor, "cpuinfo", "/proc/cpuinfo vendor_id %s" % vendor)
    if release:
        by_sensors = [b for b in all_boards if _l4t_matches(b, release) and _sensors_match(b, ev["power_sensors"])]
        if by_sensors:
            chips = sorted({c.device for b in by_sensors for c in b.power_meter.i2c})
            return result(by_sensors, "l4t+power-sensors", "L4T %s with INA3221 at %s" % (release, ", ".join(chips)))
    seen = []
    if model:
        seen.append("device-tree model %r" % model)
    if release:
        seen.append("L4T %s" % release)
    if vendor:
        seen.append("cpu vendor %s" % vendor)
    why = "not a supported board (%s)" % ("; ".join(seen) if seen else "no device tree, L4T release or x86 cpuinfo under %s" % root)
    return Detection(None, "none", why, (), ev, (), str(root))
