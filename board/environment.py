"""What a benchmark ran on: the environment record of ``spikeedge bench``.

A latency or energy figure means little without the machine state behind it: which kernel and
CPU, which frequency governor (``powersave`` can halve a Pi's speed), how hot the chip was and
whether firmware or the kernel throttled it during the run, and which interpreter versions ran
the model. ``environment(root)`` reads the static part once; ``thermal(root)`` is read before
and after the timed trials, so a run that heated the board into throttling shows it.

Everything from the file system is read under ``root`` (default ``/``) so that tests point it
at fixture trees laid out as on the boards (``tests/fixtures/boards``); values that cannot be
read are ``None``, never guessed. Only the interpreter's own facts (Python, packages, the
build digest of its virtual environment, the CPU architecture) come from the running process.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from typing import Any, Dict, List, Optional

# The interpreters a run may use, and numpy: their versions decide speed and (TFLite) results.
PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "spikeedge")


def _read(root: str, rel: str) -> Optional[str]:
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read().decode("utf-8", "replace").strip().strip("\x00").strip()
    except OSError:
        return None


def _is_host(root: str) -> bool:
    return os.path.realpath(root) == os.path.realpath("/")


def _cpu_model(root: str) -> Optional[str]:
    """``model name`` of ``/proc/cpuinfo`` (x86, most arm64 kernels), else the board's
    ``Model`` line or the device-tree model (Raspberry Pi and Jetson kernels name no CPU)."""
    info = _read(root, "proc/cpuinfo") or ""
    found: Dict[str, str] = {}
    for line in info.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            found.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "cpu model", "processor name", "hardware", "model"):
        if found.get(key) and not found[key].isdigit():
            return found[key]
    return _read(root, "proc/device-tree/model")


def _governor(root: str) -> Optional[str]:
    """The cpufreq governor; several different ones (per cluster) are joined with commas."""
    files = sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")))
    names: List[str] = []
    for path in files:
        value = _read("/", path)
        if value and value not in names:
            names.append(value)
    return ",".join(names) if names else None


def max_temperature_c(root: str = "/") -> Optional[float]:
    """The hottest thermal zone in °C (sysfs gives millidegrees); unreadable zones are skipped."""
    best: Optional[float] = None
    for path in glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*/temp")):
        text = _read("/", path)
        try:
            value = float(text) / 1000.0 if text else None
        except ValueError:
            continue
        if value is not None and -40.0 < value < 200.0 and (best is None or value > best):
            best = value
    return best


def _vcgencmd(root: str) -> Optional[str]:
    if _is_host(root):
        return shutil.which("vcgencmd")
    path = os.path.join(root, "usr/bin/vcgencmd")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def throttled(root: str = "/") -> Optional[str]:
    """Throttling evidence, as a short string; ``None`` when this machine shows none either way.

    Raspberry Pi: the firmware's ``vcgencmd get_throttled`` bit mask as printed (``0x0``: never
    throttled; bit 2 throttled now, bit 18 since boot; docs/bench.md lists the bits). Other
    Linux boards: ``ok``, or what limits the CPU now: a cpufreq ceiling below the hardware
    maximum (the thermal governor lowers it on Jetsons) and thermal cooling devices engaged.
    """
    exe = _vcgencmd(root)
    if exe is not None:
        try:
            p = subprocess.run([exe, "get_throttled"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=5)
            m = re.search(r"throttled=(0x[0-9a-fA-F]+)", p.stdout)
            if m:
                return m.group(1).lower()
        except (OSError, subprocess.SubprocessError):
            pass
    found = False
    limits: List[str] = []
    for cpu in sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq"))):
        cap, hw = _read("/", os.path.join(cpu, "scaling_max_freq")), _read("/", os.path.join(cpu, "cpuinfo_max_freq"))
        if cap and hw and cap.isdigit() and hw.isdigit():
            found = True
            if int(cap) < int(hw):
                limits.append("%s capped at %d of %d MHz" % (os.path.basename(os.path.dirname(cpu)), int(cap) // 1000, int(hw) // 1000))
    for dev in sorted(glob.glob(os.path.join(root, "sys/class/thermal/cooling_device*"))):
        cur, top = _read("/", os.path.join(dev, "cur_state")), _read("/", os.path.join(dev, "max_state"))
        if cur and cur.isdigit():
            found = True
            if int(cur) > 0:
                limits.append("%s %s/%s" % (_read("/", os.path.join(dev, "type")) or os.path.basename(dev), cur, top or "?"))
    if limits:
        return "; ".join(limits)
    return "ok" if found else None


def thermal(root: str = "/") -> Dict[str, Any]:
    """The part of the record read before and after the trials."""
    return {"temperature_c": max_temperature_c(root), "throttled": throttled(root)}


def package_versions() -> Dict[str, Optional[str]]:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 is not supported, but say nothing rather than fail
        return {name: None for name in PACKAGES}
    out: Dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except Exception:  # PackageNotFoundError, or a broken distribution
            out[name] = None
    return out


def build_digest() -> Optional[str]:
    """The runtime build id ``spikeedge flash`` wrote into this virtual environment
    (``<venv>/spikeedge-build``): which source the board runs, beyond the version number."""
    text = _read(sys.prefix, "spikeedge-build")
    return text or None


def environment(root: str = "/") -> Dict[str, Any]:
    """The static part of the record (``temperature_c``/``throttled`` are filled by the caller
    from ``thermal`` before and after)."""
    from .. import __version__

    host = _is_host(root)
    uname = platform.uname()
    hostname = _read(root, "proc/sys/kernel/hostname") or _read(root, "etc/hostname") or (socket.gethostname() if host else None)
    release = _read(root, "proc/sys/kernel/osrelease")
    version = _read(root, "proc/sys/kernel/version")
    if release:
        kernel: Optional[str] = " ".join(x for x in ((_read(root, "proc/sys/kernel/ostype") or "Linux"), release, version) if x)
    else:
        kernel = " ".join((uname.system, uname.release, uname.version)) if host else None
    return {
        "hostname": hostname,
        "kernel": kernel,
        "machine": uname.machine,
        "cpu_model": _cpu_model(root),
        "governor": _governor(root),
        "temperature_c": {"before": None, "after": None},
        "throttled": {"before": None, "after": None},
        "python": platform.python_version(),
        "packages": package_versions(),
        "spikeedge": __version__,
        "spikeedge_build": build_digest(),
    }


__all__ = ["environment", "thermal", "max_temperature_c", "throttled", "package_versions", "build_digest"]
