"""``spikeedge report``: the HTML page and its figures (results/report.py, results/plots.py), the
command, and the page opened in headless Chromium over the DevTools protocol (no console errors,
every image decoded, a screenshot with content). The Chromium tests skip only when no
``chromium`` is installed (``.ci/run`` installs Debian's)."""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

pytest.importorskip("matplotlib")

from spikeedge.results.plots import pareto_front, run_names  # noqa: E402
from spikeedge.results.report import render_report, write_report  # noqa: E402
from spikeedge.errors import DataError  # noqa: E402


# ----------------------------------------------------------------------------- records

def _record(**over: Any) -> Dict[str, Any]:
    """A valid ``spikeedge.bench/1`` record (spec of issue 9); ``over`` replaces top-level keys,
    and ``model__name=...`` style keys replace nested ones."""
    rng = [1.0 + 0.01 * ((i * 37) % 50) for i in range(400)]
    r = {
        "schema": "spikeedge.bench/1", "run_id": uuid.uuid4().hex, "created": "2026-11-23T10:00:00Z", "label": None,
        "model": {"path": "/models/m.seb", "name": "m.seb", "sha256": "a" * 64, "format": "bundle", "file_bytes": 50000,
                  "footprint_bytes": 200000, "connection_sparsity": 0.5, "neurons": 512, "synapses": 100000,
                  "pruning": {"method": "lnp", "density": 0.5}},
        "task": {"name": "mackey-glass", "metric": "smape", "value": 12.5, "higher_is_better": False, "samples": 30},
        "backend": "event", "threads": 1, "board": "rpi5",
        "protocol": {"batch": 1, "warmup": 10, "trials": 5, "samples_per_trial": 80, "steps_per_sample": 100},
        "latency": {"mean_ms": 1.2, "sem_ms": 0.01, "p50_ms": 1.2, "p99_ms": 1.45, "throughput_per_s": 830.0,
                    "trial_means_ms": [1.2, 1.21, 1.19, 1.2, 1.2], "samples_ms": rng, "preprocess_ms": 0.1},
        "repeatability": {"ok": True, "max_deviation": 0.01, "warning": None},
        "power": {"label": "measured", "meter": "rpi5-pmic", "rails": ["VDD_CORE"], "sampling_rate_hz": 10.0,
                  "idle_w": 2.1, "active_w": 3.4, "dynamic_w": 1.3,
                  "energy_per_inference_j": {"total": 0.0041, "dynamic": 0.0016},
                  "trace": {"t_s": [0.1 * i for i in range(60)], "w": [2.1 if i < 10 else 3.4 + 0.1 * (i % 3) for i in range(60)]}},
        "workload": {"activation_sparsity": 0.93, "synops_per_inference": {"dense": 1e7, "effective": 7e5},
                     "spike_rate": {"hidden": 0.07}},
        "environment": {"hostname": "pi", "kernel": "6.6.31+rpt-rpi-2712", "machine": "aarch64",
                        "cpu_model": "Cortex-A76", "governor": "performance",
                        "temperature_c": {"before": 45.0, "after": 52.5}, "throttled": {"before": "0x0", "after": "0x0"},
                        "python": "3.11.2", "packages": {"numpy": "1.26.4"}, "spikeedge": "0.1.0", "spikeedge_build": None},
    }
    for key, value in over.items():
        cur = r
        parts = key.split("__")
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = value
    return r


def _fleet() -> List[Dict[str, Any]]:
    """A realistic mix: two boards, three backends, three pruning levels, one estimate, one run
    without power, one not repeatable."""
    out = []
    for i, (density, value, ops) in enumerate(((1.0, 10.0, 2e6), (0.5, 11.0, 8e5), (0.2, 15.0, 3e5), (0.3, 18.0, 9e5))):
        for board in ("rpi5", "jetson-orin-nano"):
            for backend in ("event", "onnx"):
                out.append(_record(created="2026-11-2%dT10:%02d:00Z" % (i, len(out)), board=board, backend=backend,
                                   model__name="hrsnn-d%.1f.seb" % density, model__sha256="%x" % i * 64,
                                   model__pruning={"method": "lnp", "density": density},
                                   task__value=value, workload__synops_per_inference={"dense": 1e7, "effective": ops},
                                   latency__mean_ms=1.0 + i + (backend == "onnx"),
                                   power__energy_per_inference_j={"total": 0.001 * (i + 1), "dynamic": 0.0004 * (i + 1)}))
    out.append(_record(backend="tflite", board="rpi5", power__label="estimate", power__trace={"t_s": [], "w": []},
                       power__idle_w=None, power__energy_per_inference_j={"total": 2e-5, "dynamic": None}))
    out.append(_record(backend="event", board="x86-host", power=None, label="nightly"))
    out.append(_record(backend="event", board="rpi5", repeatability={"ok": False, "max_deviation": 0.12,
                                                                      "warning": "trial means differ by 12% (> 5%)"},
                       environment__throttled={"before": "0x0", "after": "0x50005"}))
    return out


# ----------------------------------------------------------------------------- pure parts

def test_pareto_front_respects_direction() -> None:
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (4.0, 70.0), (2.0, 40.0), (5.0, 70.0)]
    # higher is better: (3, 55) loses to (2, 60); (2, 40) to (1, 50); (5, 70) to (4, 70)
    assert pareto_front(pts, higher_is_better=True) == [0, 1, 3]
    # lower is better: only the cheapest-best survive: (1, 50) and (2, 40)
    assert pareto_front(pts, higher_is_better=False) == [0, 4]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)], True) == [0, 1]  # equal points dominate neither
    assert pareto_front([], True) == []


def test_run_names_unique_when_runs_share_model_board_backend() -> None:
    a, b = _record(), _record()
    names = run_names([a, b, _record(backend="onnx")])
    assert len(set(names)) == 3
    assert names[0].endswith("#" + a["run_id"][:6]) and names[1].endswith("#" + b["run_id"][:6])
    assert "#" not in names[2]


def _images(page: str) -> List[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_and_has_every_section() -> None:
    recs = _fleet()
    page = render_report(recs)
    assert page.startswith("<!DOCTYPE html>")
    for section in ("summary", "warnings", "latency", "energy", "pareto", "power", "environment"):
        assert 'id="%s"' % section in page, section
    imgs = _images(page)
    assert len(imgs) == 4 and all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in imgs)
    assert len(page.split("<img")) - 1 == 4, "an <img> that is not an embedded PNG"
    # No network at all: no URL scheme anywhere, every src/href is a data: URI or an in-page anchor,
    # no CSS url()/@import, no script.
    assert "http://" not in page and "https://" not in page
    for attr in re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]*)', page, flags=re.I):
        assert attr.startswith("data:image/png;base64,") or attr.startswith("#"), attr
    text = re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", page)
    assert "//" not in text, text[text.index("//") - 80: text.index("//") + 80]
    assert "url(" not in text and "@import" not in text and "<script" not in text.lower() and "<link" not in text.lower()
    # every run is in the summary table, newest first
    assert page.count("<tr title=") == len(recs)
    ids = re.findall(r'<code title="([0-9a-f]{32})">', page)
    by_id = sorted(recs, key=lambda r: r["run_id"])
    by_time = [r["run_id"] for r in sorted(by_id, key=lambda r: r["created"], reverse=True)]
    assert ids == by_time
    # flags and labels
    assert "not repeatable" in page and "trial means differ by 12% (&gt; 5%)" in page
    assert "throttled" in page and "0x50005" in page
    assert '<span class="badge estimate">estimate</span>' in page and '<span class="badge measured">measured</span>' in page
    assert "20 µJ" in page  # the estimate's total, with an SI prefix
    assert "No trace for:" in page  # the estimate and the run without power
    # the Pareto front list: d=1.0 (2e6 ops, 10.0) and d=0.5 and d=0.2 are non-dominated (smape: lower is
    # better); d=0.3 (9e5 ops, 18.0) is dominated by d=0.5 (8e5, 11.0)
    front = page[page.index("On the Pareto front"):]
    front = front[: front.index("</table>")]
    assert re.findall(r"<tr><td>mackey-glass</td><td>([^<]+)</td><td>([^<]+)</td>", front) == [
        ("hrsnn-d0.2 (d=0.2)", "event, onnx"), ("m (d=0.5)", "event, tflite"),
        ("hrsnn-d0.5 (d=0.5)", "event, onnx"), ("hrsnn-d1.0 (d=1)", "event, onnx")]  # a point is a model, named without the file suffix
    assert "hrsnn-d0.3" not in front
    # environment per board: every board has a heading, the kernel is shown
    for board in ("rpi5", "jetson-orin-nano", "x86-host"):
        assert "<h3>%s</h3>" % board in page
    assert "6.6.31+rpt-rpi-2712" in page and "numpy 1.26.4" in page


def test_report_from_the_shared_synthetic_records() -> None:
    """Records as tests/results_records.py makes them (noisy log-normal samples with slow outliers,
    a three-point trace) render too."""
    from results_records import make_record

    recs = [make_record(seed=i, backend=b, board=board, power=i % 3 != 2, mean_ms=1.0 + i)
            for i, (b, board) in enumerate((("event", "rpi5"), ("onnx", "rpi5"), ("tflite", "rpi5"),
                                            ("event", "jetson-orin-nano"), ("onnx", "jetson-orin-nano")))]
    page = render_report(recs)
    assert len(_images(page)) == 4
    assert page.count("<tr title=") == 5 and page.count("no meter") == 1


def test_same_records_same_page() -> None:
    recs = _fleet()
    assert render_report(recs) == render_report(list(reversed(copy.deepcopy(recs))))


def test_everything_from_records_is_escaped() -> None:
    evil = '<img src=x onerror=alert(1)>"&\' $\\frac{$ _^%'
    rec = _record(label=evil, board=evil, backend=evil, model__name=evil, task__metric=evil, task__name=evil,
                  environment__kernel=evil, environment__packages={evil: evil}, environment__governor=evil,
                  repeatability={"ok": False, "max_deviation": 0.2, "warning": evil}, power__meter=evil)
    page = render_report([rec], title=evil)
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert html.escape(evil, quote=True) in page
    assert len(_images(page)) == 4


def test_missing_data_omits_plots_with_a_note() -> None:
    rec = _record(power=None, task__value=None, latency__samples_ms=[], latency__trial_means_ms=[])
    page = render_report([rec])
    assert "<img" not in page
    assert "No run has power data" in page and "No run has a power trace" in page
    assert "No run has both a task metric and synaptic operations" in page and "No run has latency samples" in page
    assert "no meter" in page
    # a record with sections missing altogether still renders
    bare = {"schema": "spikeedge.bench/1", "run_id": "f" * 32, "created": "2026-01-01T00:00:00Z", "board": "b", "backend": "event"}
    assert "<h3>b</h3>" in render_report([bare])
    with pytest.raises(DataError, match="no runs"):
        render_report([])


def test_plots_show_the_data() -> None:
    """The figures carry the numbers: the latency axis spans the samples, the Pareto front line
    goes through the front's points, estimates are hatched and measured bars are not."""
    from spikeedge.results.plots import energy_figure, latency_figure, pareto_figure, power_figure

    recs = _fleet()
    ax = latency_figure(recs).axes[0]
    lo, hi = ax.get_xlim()
    assert lo <= 1.0 and hi >= 1.49
    assert len(ax.get_yticklabels()) == len(recs) - 0  # every run has samples

    ax = pareto_figure(recs).axes[0]
    (front,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    steps = sorted(set(zip(front.get_xdata(), front.get_ydata())))
    # d=0.2, the base record, d=0.5, d=1.0 and the line's end at the right; d=0.3 (9e5, 18) is dominated
    assert steps[:4] == [(3e5, 15.0), (7e5, 12.5), (8e5, 11.0), (2e6, 10.0)] and len(steps) == 5

    fig = energy_figure(recs)
    bars = [p for a in fig.axes for p in a.patches if p.get_height() > 0]
    hatched = [p for p in bars if p.get_hatch()]
    assert len(hatched) == 1 and abs(hatched[0].get_height() - 2e-5 * 1e3) < 1e-12  # the one estimate, in mJ
    assert len(bars) - len(hatched) >= 16

    fig = power_figure(recs)
    assert fig is not None and len(fig.axes) == 8  # capped; the estimate has no trace
    idle = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert idle and idle[0].get_ydata()[0] == 2.1


def _three_forms(board: str = "x86-dev", created: str = "2026-11-23T10:00:00Z") -> List[Dict[str, Any]]:
    """One model benched in its three forms, as `spikeedge bench m.seb --backend event,onnx,tflite`
    does: three files (three sha256s), one backend each, the same counts, an estimate of 1.7 nJ."""
    est = {"label": "estimate", "meter": "estimate", "rails": ["estimate"], "sampling_rate_hz": None, "idle_w": None,
           "active_w": 5e-8, "dynamic_w": 5e-8, "energy_per_inference_j": {"total": 1.72e-9, "dynamic": 1.72e-9},
           "trace": {"t_s": [], "w": []}}
    return [_record(backend=backend, board=board, created=created, model__name="mg-lnp50" + suffix,
                    model__sha256=digit * 64, model__format=fmt, power=est, workload__synops_per_inference={"dense": 9e4, "effective": 5.7e4})
            for backend, suffix, fmt, digit in (("event", ".seb", "bundle", "1"), ("onnx", ".onnx", "onnx", "2"), ("tflite", ".tflite", "tflite", "3"))]


def test_the_forms_of_one_model_share_a_point_and_a_panel() -> None:
    """A bundle and the ONNX/TFLite graphs exported from it are one model: one Pareto point listing
    the three backends (not three points with their labels drawn over each other), one energy
    panel with a bar per backend and per board (not one panel per file), the axis in nJ (not
    "1e-6" mJ), and no "dynamic above idle" tick on estimates, which have no idle level."""
    from spikeedge.results.plots import energy_figure, pareto_points

    recs = _three_forms() + _three_forms(board="rpi4", created="2026-11-23T11:00:00Z")
    [pts] = pareto_points(recs).values()
    assert len(pts) == 1 and pts[0].backends == ("event", "onnx", "tflite") and pts[0].label.startswith("mg-lnp50 (d=0.5")
    fig = energy_figure(recs)
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 1 and panels[0].get_title() == "mg-lnp50"
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["x86-dev", "rpi4"]
    assert panels[0].get_ylabel() == "nJ per inference"
    heights = [p.get_height() for p in panels[0].patches]
    assert len(heights) == 6 and all(abs(h - 1.72) < 1e-9 for h in heights)
    assert not panels[0].get_lines()  # no dynamic tick without an idle level


def test_forms_with_nearly_the_same_synops_and_the_same_metric_share_a_point() -> None:
    """The field run: digits-sca50 gave accuracy 0.920177 on all three backends, TFLite 60889.1
    SynOps against 60888.6: two points 0.5 ops apart whose labels overprinted each other."""
    from spikeedge.results.plots import pareto_points

    recs = _three_forms()
    recs[2]["workload"]["synops_per_inference"]["effective"] += 0.5
    [pts] = pareto_points(recs).values()
    assert [p.backends for p in pts] == [("event", "onnx", "tflite")]
    recs[2]["task"]["value"] += 0.05  # a different metric stays a point of its own
    [pts] = pareto_points(recs).values()
    assert sorted(p.backends for p in pts) == [("event", "onnx"), ("tflite",)]


def test_a_pareto_point_takes_the_most_complete_score() -> None:
    """A quick check of the same bundle on a slow board (3 windows, newer) replaced the full
    30-window score of that model and backend in the plot; the run over the most samples counts
    (the newest among equals)."""
    from spikeedge.results.plots import pareto_points

    full = _record(created="2026-11-23T10:00:00Z", task__value=24.2, task__samples=30)
    quick = _record(created="2026-11-23T12:00:00Z", board="rpi4", task__value=25.0, task__samples=3)
    rerun = _record(created="2026-11-23T13:00:00Z", task__value=24.3, task__samples=30)
    [pts] = pareto_points([quick, full]).values()
    assert [p.value for p in pts] == [24.2]
    [pts] = pareto_points([rerun, quick, full]).values()
    assert [p.value for p in pts] == [24.3]


def test_write_report_atomic_with_pngs(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    info = write_report(_fleet(), out, png_dir=tmp_path / "png")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["energy.png", "latency.png", "pareto.png", "power.png"]
    assert info["plots"] == ["energy", "latency", "pareto", "power"] and info["omitted"] == {}
    embedded = _images(out.read_text(encoding="utf-8"))
    assert (tmp_path / "png" / "latency.png").read_bytes() in embedded  # the slide PNG is the embedded one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(DataError, match="does not exist"):
        write_report(_fleet(), tmp_path / "missing" / "r.html")
    assert not (tmp_path / "missing").exists()


# ----------------------------------------------------------------------------- the command

def _store_with(db: Path, records: List[Dict[str, Any]]) -> None:
    from spikeedge.results.store import Store

    with Store(db) as store:
        store.add_runs(records)


def test_cli_report(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("spikeedge.results.store")
    from cli_helpers import assert_user_error, call, one_json

    db = tmp_path / "r.sqlite"
    recs = _fleet()
    _store_with(db, recs)
    out = tmp_path / "report.html"
    rc, stdout, err = call(capsys, "report", "-o", out, "--db", db, "--png-dir", tmp_path / "png", "--json")
    assert rc == 0, err
    result = one_json(stdout)
    assert result["runs"] == len(recs) and result["output"] == str(out)
    assert len(result["pngs"]) == 4 and out.is_file()

    rc, stdout, err = call(capsys, "report", "-o", out, "--db", db, "--board", "x86-host", "--json")
    assert rc == 0, err
    assert one_json(stdout)["runs"] == 1
    assert one_json(stdout)["omitted"]["energy"]

    rc, stdout, err = call(capsys, "report", "-o", tmp_path / "none.html", "--db", db, "--board", "nope")
    assert_user_error(rc, stdout, err, str(db))
    assert not (tmp_path / "none.html").exists()

    rc, stdout, err = call(capsys, "report", "-o", tmp_path / "x.html", "--db", tmp_path / "absent.sqlite")
    assert_user_error(rc, stdout, err, "absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()  # a report never creates a database


# ----------------------------------------------------------------------------- headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")


class _WebSocket:
    """The least of RFC 6455 a DevTools client needs: the handshake, masked text frames out,
    (possibly fragmented) text frames in. Local loopback only."""

    def __init__(self, url: str, timeout: float) -> None:
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m, url
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (m.group(3), m.group(1), m.group(2), key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "DevTools closed the connection during the handshake"
            head += chunk
        assert head.split(b"\r\n")[0].split()[1] == b"101", head

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            buf += chunk
        return buf

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):  # ping/pong: nothing to do for a short session
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class _Browser:
    """headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="spikeedge-chromium-")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "--window-size=1280,2000",
             "--user-data-dir=%s" % self.profile, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError("chromium did not start its DevTools server: %s" % err[-2000:])
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        ws_url = None
        while ws_url is None:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=timeout) as f:
                pages = [t for t in json.load(f) if t.get("type") == "page"]
            if pages:
                ws_url = pages[0]["webSocketDebuggerUrl"]
            elif time.monotonic() > deadline:
                raise RuntimeError("chromium has no page target")
            else:
                time.sleep(0.05)
        self.ws = _WebSocket(ws_url, timeout)
        self.next_id = 0
        self.events = []  # type: List[Dict[str, Any]]

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == event for e in self.events):
            assert time.monotonic() < deadline, "no %s within %.0f s" % (event, self.timeout)
            self.events.append(json.loads(self.ws.recv()))
            if "method" not in self.events[-1]:
                self.events.pop()

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


_IMAGE_CHECK = """JSON.stringify(Array.from(document.images).map(function (im) {
  return {alt: im.alt, complete: im.complete, width: im.naturalWidth, height: im.naturalHeight}; }))"""


def _open(browser: _Browser, page: Path) -> Dict[str, Any]:
    """Load ``page``; return its console errors, failed loads, images and a screenshot (PNG bytes)."""
    browser.events.clear()
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(domain + ".enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=2000, deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url=page.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    images = json.loads(browser.call("Runtime.evaluate", expression=_IMAGE_CHECK, returnByValue=True)["result"]["value"])
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    errors = []
    for e in browser.events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console.%s: %s" % (p["type"], p.get("args")))
        elif e["method"] == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            errors.append("exception: %s %s" % (details.get("text"), details.get("exception", {}).get("description", "")))
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append("log: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        elif e["method"] == "Network.loadingFailed":
            errors.append("load failed: %s" % p.get("errorText"))
        elif e["method"] == "Network.requestWillBeSent" and not p.get("request", {}).get("url", "").startswith(("file:", "data:")):
            errors.append("network request: %s" % p["request"]["url"])
    return {"errors": errors, "images": images, "screenshot": shot}


def _content(png: bytes) -> Tuple[float, int]:
    """(fraction of pixels that are not near-white, number of distinct colours) of a PNG."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    rgb = (img * 255).astype(np.uint8).reshape(-1, 3)
    nonwhite = float((rgb.min(axis=1) < 235).mean())
    return nonwhite, len(np.unique(rgb, axis=0))


def _loaded(images: List[Dict[str, Any]]) -> bool:
    return bool(images) and all(im["complete"] and im["width"] > 0 and im["height"] > 0 for im in images)


@needs_chromium
@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    good = tmp_path / "report.html"
    write_report(_fleet(), good)
    text = good.read_text(encoding="utf-8")
    # The negative case: the same page with one figure's bytes corrupted must be caught.
    broken = tmp_path / "broken.html"
    i = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(text[:i] + "AAAA" + text[i + 4:], encoding="utf-8")
    # A page that loads nothing visible must fail the content check.
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    # And the error collector must see what it is there to see.
    noisy = tmp_path / "noisy.html"
    noisy.write_text('<!DOCTYPE html><html><body><img src="absent.png"><script>console.error("boom")</script>'
                     '<script>throw new Error("bang")</script></body></html>', encoding="utf-8")

    browser = _Browser()
    try:
        ok = _open(browser, good)
        bad = _open(browser, broken)
        empty = _open(browser, blank)
        loud = _open(browser, noisy)
    finally:
        browser.close()

    assert ok["errors"] == [], ok["errors"]
    assert len(ok["images"]) == 4 and _loaded(ok["images"]), ok["images"]
    assert all(im["width"] >= 400 for im in ok["images"])
    nonwhite, colours = _content(ok["screenshot"])
    assert nonwhite > 0.01 and colours > 20, (nonwhite, colours)

    assert not _loaded(bad["images"])
    assert [im["alt"] for im in bad["images"] if im["width"] == 0] == ["Latency distributions"]
    nonwhite, colours = _content(empty["screenshot"])
    assert nonwhite < 0.01 and colours < 5
    found = " | ".join(loud["errors"])
    assert "boom" in found and "bang" in found and "load failed" in found, found
