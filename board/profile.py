"""Board profiles: the ``Board`` dataclass and its parts, and the loading and validation of the
files of ``board/profiles/*.json`` (the data package beside this module). Slightly over 400
lines: the dataclasses and their validators read as one unit, and a third module would import
this one back (a cycle).

Python 3.8+, standard library only (no numpy): ``spikeedge boards`` must work on a bare board.
``docs/boards.md`` describes every field of the files; ``board/detect.py`` tells which profile
the running machine is.

- :func:`load_board_file` reads one file and checks it completely: unknown, missing and wrongly
  typed keys, unknown enum values (meter kind, backend, support level), and the rails (the total,
  the summed rails, the groups and each I2C chip's rails must all be among ``rails``). Every
  problem is a :class:`BoardError` of one line naming the file and the key.
- :func:`list_boards` and :func:`get_board` give the shipped profiles (read once) or a folder's.
"""

from __future__ import annotations

import json
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
    """Strings that identify the board; ``board/detect.py`` explains how each is used."""

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
class CpuPower:
    """Wall power of the board measured at rest and with every core busy, with where the figures
    come from: the CPU model ``spikeedge bench --meter estimate`` uses on this board (active power
    = idle + (load - idle) x busy threads / cores, times the inference time; ``measure/bench.py``).
    An estimate, labelled so; absent (null) where no measurement is known."""

    idle_w: float
    load_w: float
    cores: int
    source: str


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
    cpu_power: Optional[CpuPower]  # measured idle/load wall power, or None
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
            "cpu_power": None if self.cpu_power is None else {
                "idle_w": self.cpu_power.idle_w, "load_w": self.cpu_power.load_w, "cores": self.cpu_power.cores,
                "source": self.cpu_power.source},
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


def _watts(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1000:
        raise _Invalid("%s: expected watts, a number above 0, got %r" % (where, value))
    return float(value)


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
        "cpu_power": _optional(_object({"idle_w": _watts, "load_w": _watts, "cores": _integer, "source": _text})),
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
    cpu = d["cpu_power"]
    if cpu is not None and (cpu["load_w"] <= cpu["idle_w"] or cpu["cores"] < 1):
        raise _Invalid("cpu_power: load_w must exceed idle_w and cores be at least 1")
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
        cpu_power=None if cpu is None else CpuPower(**cpu),
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
