"""``spikeedge report``: the HTML page and its figures (results/report.py, results/plots.py,
results/selection.py) and the command. The page opened in headless Chromium is
tests/test_report_browser.py."""

from __future__ import annotations

import base64
import copy
import html
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytest.importorskip("matplotlib")

from spikeedge.results.plots import pareto_front, run_names  # noqa: E402
from spikeedge.results.report import render_report, write_report  # noqa: E402
from spikeedge.errors import DataError  # noqa: E402
from report_fleet import fleet, record  # noqa: E402


# ----------------------------------------------------------------------------- pure parts

def test_pareto_front_respects_direction() -> None:
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (4.0, 70.0), (2.0, 40.0), (5.0, 70.0)]
    # higher is better: (3, 55) loses to (2, 60); (2, 40) to (1, 50); (5, 70) to (4, 70)
    assert pareto_front(pts, higher_is_better=True) == [0, 1, 3]
    # lower is better: only the cheapest-best survive: (1, 50) and (2, 40)
    assert pareto_front(pts, higher_is_better=False) == [0, 4]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)], True) == [0, 1]  # equal points dominate neither
    assert pareto_front([], True) == []


def test_pareto_front_drops_a_worse_point_at_the_same_synops() -> None:
    """The field report drew mg-lnp50's TFLite graph (sMAPE 24.26) on the front beside its bundle
    (24.21): TFLite's float32 graph counted half an operation fewer, so by exact comparison the
    worse point was "cheaper". SynOps within 0.01% are one cost."""
    pts = [(490899.9, 24.2057), (490899.4, 24.2622), (862900.2, 23.9918), (862899.8, 24.1551)]
    assert pareto_front(pts, higher_is_better=False) == [0, 2]
    assert pareto_front(pts, higher_is_better=False, rel_tol=0.0) == [1, 0, 3, 2]  # the old, exact rule
    # a real saving (beyond the tolerance) with a worse metric stays a trade-off on the front
    assert pareto_front([(1000.0, 10.0), (990.0, 11.0)], higher_is_better=False) == [1, 0]
    # equal cost within the tolerance and an equal metric: neither dominates
    assert pareto_front([(1000.0, 10.0), (1000.05, 10.0)], higher_is_better=False) == [0, 1]


@pytest.mark.parametrize("seed", range(20))
def test_pareto_front_properties(seed: int) -> None:
    """On random clouds (with near-ties): no front point is dominated by any point, every other
    point is dominated by a front point, and along the front the metric strictly improves."""
    import random

    rng = random.Random(seed)
    base = [(rng.choice([1e3, 2e3, 5e3]) * (1 + rng.uniform(-5e-5, 5e-5)), rng.choice([10.0, 11.0, 12.0, 12.5])) for _ in range(15)]
    for hib in (True, False):
        sign = 1 if hib else -1
        front = pareto_front(base, hib)

        def dominates(q, p):
            same = abs(q[0] - p[0]) <= 1e-4 * max(q[0], p[0])
            return (q[0] <= p[0] or same) and sign * q[1] >= sign * p[1] and ((q[0] < p[0] and not same) or sign * q[1] > sign * p[1])

        for i in front:
            assert not any(dominates(q, base[i]) for q in base)
        for i in set(range(len(base))) - set(front):
            assert any(dominates(base[j], base[i]) for j in front)
        for a, b in zip(front, front[1:]):  # ties (same cost within 0.01%, same metric) sit side by side
            tie = abs(base[a][0] - base[b][0]) <= 1e-4 * max(base[a][0], base[b][0]) and base[a][1] == base[b][1]
            assert tie or sign * base[b][1] > sign * base[a][1]


def test_run_names_unique_when_runs_share_model_board_backend() -> None:
    a, b = record(), record()
    names = run_names([a, b, record(backend="onnx")])
    assert len(set(names)) == 3
    assert names[0].endswith("#" + a["run_id"][:6]) and names[1].endswith("#" + b["run_id"][:6])
    assert "#" not in names[2]


def _images(page: str) -> List[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_and_has_every_section() -> None:
    recs = fleet()
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
    recs = fleet()
    assert render_report(recs) == render_report(list(reversed(copy.deepcopy(recs))))


def test_everything_from_records_is_escaped() -> None:
    evil = '<img src=x onerror=alert(1)>"&\' $\\frac{$ _^%'
    rec = record(label=evil, board=evil, backend=evil, model__name=evil, task__metric=evil, task__name=evil,
                  environment__kernel=evil, environment__packages={evil: evil}, environment__governor=evil,
                  repeatability={"ok": False, "max_deviation": 0.2, "warning": evil}, power__meter=evil)
    page = render_report([rec], title=evil)
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert html.escape(evil, quote=True) in page
    assert len(_images(page)) == 4


def test_missing_data_omits_plots_with_a_note() -> None:
    rec = record(power=None, task__value=None, latency__samples_ms=[], latency__trial_means_ms=[])
    page = render_report([rec])
    assert "<img" not in page
    assert "No run has measured energy" in page and "No run has a power trace" in page
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

    recs = fleet()
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
    assert not [p for p in bars if p.get_hatch()]  # the operation-count estimate is not drawn beside measurements
    measured = [r for r in recs if (r.get("power") or {}).get("label") == "measured"]
    assert len(bars) == len({(r["model"]["name"], r["board"], r["backend"]) for r in measured}) >= 16

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
    return [record(backend=backend, board=board, created=created, model__name="mg-lnp50" + suffix,
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
    assert energy_figure(recs) is None  # operation-count estimates only: nothing measured to draw
    for r in recs:  # the same runs with a meter that measured 1.72 nJ (no idle level)
        r["power"].update(label="measured", meter="ina219")
    fig = energy_figure(recs)
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 1 and panels[0].get_title() == "mg-lnp50"
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["x86-dev", "rpi4"]
    assert panels[0].get_ylabel() == "nJ per inference"
    heights = [p.get_height() for p in panels[0].patches]
    assert len(heights) == 6 and all(abs(h - 1.72) < 1e-9 for h in heights)
    assert not panels[0].get_lines()  # no dynamic tick without an idle level


def test_an_operation_count_estimate_is_never_beside_measured_joules() -> None:
    """The field report showed "26.1 nJ est." for event, onnx and tflite alike beside measured
    joules, while a 50-136 ms CPU inference costs about 0.1 J: the summary's energy column and the
    energy plot show measurements only; the estimate is listed apart, in the run details."""
    from spikeedge.results.plots import energy_figure

    est = _three_forms()  # 1.72 nJ operation-count estimates
    measured = record(backend="event", board="rpi5", power__energy_per_inference_j={"total": 0.104, "dynamic": 0.03})
    page = render_report(est + [measured])
    summary = page[page.index('<table id="runs">'):]
    summary = summary[: summary.index("</table>")]
    assert "104 mJ" in summary and "1.72 nJ" not in summary and summary.count("not measured") == 3
    details = page[page.index("<h3>Run details</h3>"):]
    assert details.count('1.72 nJ <span class="badge estimate">estimate</span>') == 3
    [panel] = [a for a in energy_figure(est + [measured]).axes if a.get_visible()]
    assert [round(p.get_height(), 6) for p in panel.patches] == [104.0]  # mJ: the measurement alone


def test_task_metric_shows_its_spread() -> None:
    """The sMAPE over 30 windows has a spread of about 2.3 (sd): the table shows it beside the
    mean, the standard error on hover; records from before the spread was stored show the mean."""
    page = render_report([record(task__value=24.21, task__std=2.31, task__sem=0.42)])
    assert "smape 24.21 ± 2.3 ↓" in page and "sd 2.31, sem 0.42" in page
    old = render_report([record(task__value=24.21)])
    assert "smape 24.21 ↓" in old


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

    full = record(created="2026-11-23T10:00:00Z", task__value=24.2, task__samples=30)
    quick = record(created="2026-11-23T12:00:00Z", board="rpi4", task__value=25.0, task__samples=3)
    rerun = record(created="2026-11-23T13:00:00Z", task__value=24.3, task__samples=30)
    [pts] = pareto_points([quick, full]).values()
    assert [p.value for p in pts] == [24.2]
    [pts] = pareto_points([rerun, quick, full]).values()
    assert [p.value for p in pts] == [24.3]


def test_write_report_atomic_with_pngs(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    info = write_report(fleet(), out, png_dir=tmp_path / "png")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["energy.png", "latency.png", "pareto.png", "power.png"]
    assert info["plots"] == ["energy", "latency", "pareto", "power"] and info["omitted"] == {}
    embedded = _images(out.read_text(encoding="utf-8"))
    assert (tmp_path / "png" / "latency.png").read_bytes() in embedded  # the slide PNG is the embedded one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(DataError, match="does not exist"):
        write_report(fleet(), tmp_path / "missing" / "r.html")
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
    recs = fleet()
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


def _overlaps(fig: Any) -> List[Any]:
    """Pairs of annotation texts whose boxes overlap, as drawn."""
    from spikeedge.results.plots import png_bytes

    png_bytes(fig)
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_visible() and t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].x0 < boxes[j].x1 and boxes[j].x0 < boxes[i].x1 and boxes[i].y0 < boxes[j].y1 and boxes[j].y0 < boxes[i].y1]


def test_plot_labels_do_not_overlap(monkeypatch: Any) -> None:
    """Five models with nearly the same SynOps and metric, and energy panels of four boards by
    eight backends with values that differ a little: their labels were drawn over each other."""
    from spikeedge.results import plots

    crowded = [record(model__name="model-%d.seb" % i, model__sha256="%d" % i * 64, model__synapses=1000 + i,
                      task__value=20.0 + 0.002 * i, workload__synops_per_inference={"dense": 1e7, "effective": 1e5 * (1 + 0.002 * i)})
               for i in range(5)]
    crowded.append(record(model__name="far.seb", model__sha256="f" * 64, task__value=30.0,  # the axes span it: the five crowd
                          workload__synops_per_inference={"dense": 1e7, "effective": 2e6}))
    combos = [(m, b, k) for m in ("a", "b", "c") for b in ("rpi5", "rpi4", "orin", "nano")
              for k in ("event", "onnx", "tflite", "k1", "k2", "k3", "k4", "k5")]
    bars = [record(model__name="%s.seb" % m, model__synapses=ord(m), board=b, backend=k,
                   power__energy_per_inference_j={"total": 0.1 * (1 + 0.013 * i), "dynamic": None})
            for i, (m, b, k) in enumerate(combos)]
    assert _overlaps(plots.pareto_figure(crowded)) == []
    assert _overlaps(plots.energy_figure(bars)) == []
    monkeypatch.setattr(plots, "declutter", lambda fig, texts: None)  # the same figures as drawn before
    assert _overlaps(plots.pareto_figure(crowded)) and _overlaps(plots.energy_figure(bars))


def test_a_cpu_model_estimate_is_shown_and_labelled() -> None:
    """A CPU model's estimate (the board profile's measured idle/load power x time) may stand in
    the energy column and the plot, badged and hatched as an estimate, its basis on hover."""
    from spikeedge.results.plots import energy_figure

    cpu = {"label": "estimate", "model": "cpu", "meter": "cpu-model", "rails": ["board (profile)"], "sampling_rate_hz": None,
           "idle_w": 2.25, "active_w": 3.0, "dynamic_w": 0.75, "energy_per_inference_j": {"total": 0.15, "dynamic": 0.0375},
           "trace": {"t_s": [], "w": []}, "basis": "idle 2.25 W + (load 5.25 W - idle) x 1/4 busy cores", "op_count_j": 2.6e-8}
    page = render_report([record(board="rpi4", power=cpu)])
    summary = page[page.index('<table id="runs">'):]
    summary = summary[: summary.index("</table>")]
    assert "150 mJ" in summary and "CPU-model estimate" in summary and "1/4 busy cores" in summary
    [panel] = [a for a in energy_figure([record(board="rpi4", power=cpu)]).axes if a.get_visible()]
    assert [p.get_hatch() for p in panel.patches] == ["//"]
