"""Which supported board this machine is, read from its file system: the device tree, the L4T
release, ``/proc/cpuinfo`` and the sysfs power sensors. Kept apart from ``board/profile.py``
(what a profile is) because it reads the machine, not the profile files.

Python 3.8+, standard library only. ``docs/boards.md`` describes how :func:`detect` decides.
:func:`detect` reads a file-system tree (``root``, ``/`` on a real board; a fixture tree in
tests): ``proc/device-tree/{model,compatible}``, ``etc/nv_tegra_release``, ``proc/cpuinfo`` and
the sysfs power sensors. It returns a :class:`Detection` (board or none, and the evidence); an
unknown machine is a result, not an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import BoardError
from .profile import Board, I2CChip, list_boards


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
