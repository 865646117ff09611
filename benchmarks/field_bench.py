"""Issue 9's field evidence: `spikeedge bench` on real models, two boards, one results store,
`results compare`, `results export --csv` and `spikeedge report`; writes docs/results/field.md.

Models are built here (nothing downloaded): the Mackey-Glass HRSNN dense and LNP-pruned (the
functions `spikeedge demo` uses: `offline.pipeline.train_model`, `export_bundle`,
`offline.lnp.lnp_prune`) and a conv SNN on `digits` at three SCA channel densities (`spikeedge
train convsnn`, `spikeedge prune sca`). Each is exported as a bundle (.seb), ONNX and TFLite and
benched on the event, onnx and tflite backends with `--meter estimate` (this VM has no power
sensor). One bundle is then flashed to the emulated arm64 board (`tests/arm64_board.py`: Debian 12
arm64 under qemu-user-static, a Cortex-A72) and benched there with `spikeedge bench --to`.

Every step goes through the `spikeedge` command as a user types it (a subprocess), and the
script checks the command-line contract on the way: `--json` prints exactly one JSON object on
stdout, errors are one line with exit 2. Each bench is its own command, so its run is stored as
soon as it finishes; `out/field/state.json` records what is done and a rerun continues from there
(`--fresh` starts over). The page itself is written by `field_report.py`.

    nice -n 10 .venv/bin/python benchmarks/field_bench.py [--quick] [--out out/field] [--fresh]
        [--neurons 300] [--conv-width 0.5] [--no-arm64] [--docs docs/results]

`--quick` is a smoke test: small models, few samples, one SCA density, no arm64 board, and it
writes its page under the out folder, not docs/results.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling field_report, also when loaded by path
from field_report import write_field_md  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SPIKEEDGE = str(Path(sys.executable).parent / "spikeedge")
REMOTE_DIR = "/root/spikeedge-field"
BACKENDS = (("event", ".seb"), ("onnx", ".onnx"), ("tflite", ".tflite"))

T0 = time.time()
FINDINGS: List[str] = []  # command-line contract violations seen on the way (printed at the end)


def say(msg: str) -> None:
    print("[field %6.1f s] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- state (resumable)


class State:
    """What is done, in out/field/state.json, rewritten atomically after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: Dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


# ----------------------------------------------------------------------------- the command line


def cli(args: Sequence[str], as_json: bool = True, expect: int = 0, env: Optional[Dict[str, str]] = None) -> Any:
    """Run ``spikeedge ARGS`` (with ``--json`` when ``as_json``); check the exit code and that
    stdout is exactly one JSON object. Returns the object (or the completed process)."""
    argv = [SPIKEEDGE] + list(args) + (["--json"] if as_json else [])
    say("$ spikeedge " + " ".join(shlex.quote(str(a)) for a in args) + (" --json" if as_json else ""))
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {})), cwd=REPO)
    took = time.time() - t0
    if p.returncode != expect:
        raise SystemExit("spikeedge %s: exit %d (expected %d) after %.1f s\nstderr: %s\nstdout: %s" % (
            " ".join(map(str, args)), p.returncode, expect, took, p.stderr[-3000:], p.stdout[-2000:]))
    if p.returncode == 2 and len([l for l in p.stderr.strip().splitlines() if l.strip()]) != 1:
        FINDINGS.append("exit 2 with more than one stderr line: spikeedge %s -> %r" % (" ".join(map(str, args)), p.stderr[-500:]))
    if not as_json:
        return p
    try:
        obj = json.loads(p.stdout)
    except ValueError:
        FINDINGS.append("--json stdout is not exactly one JSON object: spikeedge %s -> %r" % (" ".join(map(str, args)), p.stdout[:300]))
        obj = json.loads(p.stdout.strip().splitlines()[-1])
    if not isinstance(obj, dict):
        FINDINGS.append("--json printed a %s, not an object: spikeedge %s" % (type(obj).__name__, " ".join(map(str, args))))
    say("  exit %d in %.1f s" % (p.returncode, took))
    return obj


# ----------------------------------------------------------------------------- models


def build_hrsnn(out: Path, neurons: int, seed: int, state: State) -> Dict[str, Path]:
    """Dense and LNP-pruned (50% neurons, 50% recurrent synapses) Mackey-Glass HRSNNs, trained
    (ridge readout) and exported as int8 bundles, as `spikeedge demo` does."""
    files = {"dense": out / "mg-dense.seb", "lnp": out / "mg-lnp50.seb"}
    if state.get("hrsnn") and all(f.is_file() for f in files.values()):
        return files
    from spikeedge.offline.checkpoint import save_checkpoint
    from spikeedge.offline.hrsnn import HRSNN, HrsnnConfig
    from spikeedge.offline.lnp import LnpConfig, lnp_prune
    from spikeedge.offline.pipeline import export_bundle, train_model
    from spikeedge.tasks.registry import load_task

    task = load_task("mackey-glass")
    cfg = HrsnnConfig(n_neurons=neurons, seed=seed, n_inputs=task.n_inputs, n_outputs=task.n_outputs)
    dense = HRSNN(cfg)
    say("LNP-pruning a random HRSNN of %d neurons (keep 50%% of neurons and recurrent synapses)" % neurons)
    lnp = lnp_prune(dense, LnpConfig(target_neurons=0.5, target_synapses=0.5, seed=seed))
    say("training the readouts (ridge) of the pruned and the dense network")
    pruned, rec = train_model(lnp.model, task)
    summary = lnp.summary()
    rec["pruning"] = {"method": "lnp", **{k: v for k, v in summary.items() if k != "config"}}
    save_checkpoint(pruned, out / "mg-lnp50.ckpt.npz", rec)
    export_bundle(pruned, rec, task, files["lnp"])
    dense_t, drec = train_model(dense, task)
    drec["pruning"] = {"method": "none", "density": 1.0}
    save_checkpoint(dense_t, out / "mg-dense.ckpt.npz", drec)
    export_bundle(dense_t, drec, task, files["dense"])
    state.put("hrsnn", {"neurons": neurons, "lnp": {k: summary[k] for k in ("neurons", "synapses", "kept_neurons", "kept_synapses", "iterations", "seconds")},
                        "dense_synapses": summary["start"]})
    return files


def build_conv(out: Path, width: float, densities: Sequence[float], epochs: int, sca_epochs: int, seed: int, state: State) -> Dict[str, Path]:
    """A VGG-style conv SNN on digits, dense and SCA-pruned to each density, int8 bundles."""
    files: Dict[str, Path] = {}
    dense_ckpt = out / "digits-dense.ckpt.npz"
    if not dense_ckpt.is_file():
        cli(["train", "convsnn", "--task", "digits", "--width", str(width), "--epochs", str(epochs), "--seed", str(seed), "-o", str(dense_ckpt)])
    ckpts = {"dense": dense_ckpt}
    for d in densities:
        key = "sca%d" % round(100 * d)
        ck = out / ("digits-%s.ckpt.npz" % key)
        if not ck.is_file():
            cli(["prune", "sca", str(dense_ckpt), "--density", str(d), "--epochs", str(sca_epochs), "--finetune-epochs", str(sca_epochs),
                 "--seed", str(seed), "-o", str(ck)])
        ckpts[key] = ck
    for key, ck in ckpts.items():
        seb = out / ("digits-%s.seb" % key)
        if not seb.is_file():
            cli(["export", str(ck), "--format", "bundle", "-o", str(seb)])
        files[key] = seb
    return files


def export_graphs(seb: Path) -> None:
    """The ONNX and TFLite step graphs of a bundle (`spikeedge export X.seb --format ...`)."""
    for fmt, suffix in (("onnx", ".onnx"), ("tflite", ".tflite")):
        target = seb.with_suffix(suffix)
        if not target.is_file():
            cli(["export", str(seb), "--format", fmt, "-o", str(target)])


# ----------------------------------------------------------------------------- benches


def bench(state: State, key: str, files: Sequence[Path], task: str, label: str, db: Path, samples: Optional[int], trials: int,
          extra: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """One `spikeedge bench` command (its runs are stored when it returns); skipped when done."""
    done = state.get("bench") or {}
    if key in done:
        return done[key]
    args = ["bench"] + [str(f) for f in files] + ["--task", task, "--meter", "estimate", "--label", label, "--db", str(db),
                                                   "--trials", str(trials)]
    args += (["--samples", str(samples)] if samples else []) + list(extra)
    res = cli(args)
    if not res.get("stored") or len(res.get("run_ids") or []) != len(res["runs"]):
        FINDINGS.append("bench %s: runs not stored (%s)" % (key, res.get("run_ids")))
    rows = [{"run_id": r["run_id"], "backend": r["backend"], "model": r["model"]["name"], "mean_ms": r["latency"]["mean_ms"],
             "board": r["board"], "label": r["label"]} for r in res["runs"]]
    for r in rows:
        say("  %s %s on %s: %.3f ms" % (r["model"], r["backend"], r["board"], r["mean_ms"]))
    done[key] = rows
    state.put("bench", done)
    return rows


def check_errors(out: Path, db: Path) -> None:
    """A few mistakes a user makes: each must be one line naming the file or option, exit 2."""
    seb = next(out.glob("mg-lnp50.seb"), None) or next(out.glob("*.seb"))
    cases = [
        ["bench", str(out / "nope.seb"), "--task", "mackey-glass", "--db", str(db)],
        ["bench", str(seb), "--task", "mackey-glass", "--backend", "event,cuda", "--db", str(db)],
        ["bench", str(seb), "--task", "no-such-task", "--db", str(db), "--no-store"],
        ["bench", str(seb), "--task", "mackey-glass", "--meter", "ina9999", "--db", str(db), "--no-store"],
        ["bench", str(seb), "--task", "mackey-glass", "--trials", "0", "--db", str(db), "--no-store"],
        ["results", "compare", "deadbeef", "cafebabe", "--db", str(db)],
        ["results", "list", "--db", str(out / "missing.sqlite")],
        ["report", "-o", str(out / "x.html"), "--db", str(db), "--board", "no-such-board"],
        ["results", "list", "--db", str(seb)],
    ]
    for args in cases:
        p = cli(args, as_json=False, expect=2)
        lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
        say("  -> %s" % (lines[-1] if lines else "(no message)"))
        if len(lines) != 1:
            FINDINGS.append("spikeedge %s: %d stderr lines, expected one: %r" % (" ".join(args), len(lines), p.stderr[-400:]))
        if "Traceback" in p.stderr:
            FINDINGS.append("spikeedge %s: traceback on a user error" % " ".join(args))


# ----------------------------------------------------------------------------- the arm64 board


def arm64_bench(out: Path, seb: Path, db: Path, label: str, samples: int, trials: int, state: State) -> Dict[str, Any]:
    """Flash ``seb`` to the emulated arm64 board and `spikeedge bench --to` it there (the bench
    stores the board's record here). Returns what happened, or {"skipped": reason}."""
    done = state.get("arm64")
    if done and not done.get("skipped"):
        return done
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from arm64_board import QEMU_CPU, Unavailable, build_root, remote_uname, start_board
    except ImportError as exc:
        return {"skipped": "tests/arm64_board.py cannot be imported (%s)" % exc}
    try:
        root = build_root()
        shutil.rmtree(root / REMOTE_DIR.lstrip("/"), ignore_errors=True)
        board = start_board(root, out / "arm64-keys")
    except (Unavailable, RuntimeError) as exc:
        return {"skipped": "no emulated arm64 board: %s" % exc}
    known = out / "arm64-keys" / "known_hosts"
    known.unlink(missing_ok=True)
    target = "%s@127.0.0.1:%d" % (board.user, board.port)
    result: Dict[str, Any] = {"target": target, "qemu_cpu": QEMU_CPU}
    try:
        result["uname"] = remote_uname(board, known)  # records the throwaway host key
        say("arm64 board up: uname -m = %s, sshd on %s" % (result["uname"], target))
        t0 = time.time()
        flash = cli(["flash", str(seb), "--to", target, "--known-hosts", str(known), "--identity", str(board.client_key),
                     "--remote-dir", REMOTE_DIR])
        result["flash_s"] = round(time.time() - t0, 1)
        result["flash"] = _short(flash)
        t0 = time.time()
        res = cli(["bench", str(seb), "--task", "mackey-glass", "--meter", "estimate", "--label", label, "--db", str(db),
                   "--samples", str(samples), "--trials", str(trials), "--warmup", "1", "--to", target, "--known-hosts", str(known),
                   "--identity", str(board.client_key), "--remote-dir", REMOTE_DIR])
        result["bench_s"] = round(time.time() - t0, 1)
        result["runs"] = [{"run_id": r["run_id"], "board": r["board"], "machine": r["environment"].get("machine"),
                           "mean_ms": r["latency"]["mean_ms"]} for r in res["runs"]]
        result["hosts"] = [{k: h.get(k) for k in ("target", "ok", "error", "steps")} for h in res.get("hosts", [])]
        for r in result["runs"]:
            say("  arm64: %s on board %s (%s): %.1f ms" % (seb.name, r["board"], r["machine"], r["mean_ms"]))
        # the same file on the same samples here: the board's counts and metric must be equal
        here = cli(["bench", str(seb), "--task", "mackey-glass", "--meter", "estimate", "--samples", str(samples), "--trials", "1",
                    "--warmup", "0", "--no-store"])["runs"][0]
        there = res["runs"][0] if res["runs"] else None
        if there is not None:
            result["same_as_here"] = {
                "synops_effective": [there["workload"]["synops_per_inference"]["effective"], here["workload"]["synops_per_inference"]["effective"]],
                "spike_rate": [there["workload"]["spike_rate"], here["workload"]["spike_rate"]],
                "metric": [there["task"]["value"], here["task"]["value"]],
                "equal": there["workload"] == here["workload"],
                "metric_rel_diff": abs(there["task"]["value"] - here["task"]["value"]) / abs(here["task"]["value"]),
                "here_mean_ms": here["latency"]["mean_ms"]}
            say("  arm64 vs here on the same %d windows: workload equal: %s, metric relative difference %.1e" % (
                samples, result["same_as_here"]["equal"], result["same_as_here"]["metric_rel_diff"]))
    finally:
        board.stop()
        shutil.rmtree(root / REMOTE_DIR.lstrip("/"), ignore_errors=True)
    state.put("arm64", result)
    return result


def _short(obj: Any) -> Any:
    if isinstance(obj, dict) and "hosts" in obj:
        return [{k: h.get(k) for k in ("target", "ok", "error", "steps")} for h in obj["hosts"]]
    return {k: obj[k] for k in list(obj)[:6]} if isinstance(obj, dict) else obj




# ----------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: small models, few samples, no arm64 board, page under --out")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "field", help="work folder (models, results.sqlite, state.json)")
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "results", help="where field.md and field/ (report, PNGs, CSV) go")
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first")
    ap.add_argument("--neurons", type=int, default=300, help="neurons of the dense HRSNN (LNP keeps half)")
    ap.add_argument("--conv-width", type=float, default=0.5, help="width multiplier of the conv SNN")
    ap.add_argument("--conv-epochs", type=int, default=8, help="training epochs of the dense conv SNN")
    ap.add_argument("--sca-epochs", type=int, default=4, help="SCA pruning epochs (and as many fine-tuning epochs)")
    ap.add_argument("--densities", default="0.5,0.25", help="SCA channel densities (besides the dense conv SNN)")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--mg-samples", type=int, default=30, help="Mackey-Glass windows per trial (NeuroBench: 30)")
    ap.add_argument("--digits-samples", type=int, default=0, help="digits test images per trial (0: all)")
    ap.add_argument("--arm64-samples", type=int, default=3, help="windows per trial on the emulated board")
    ap.add_argument("--arm64-trials", type=int, default=3)
    ap.add_argument("--no-arm64", action="store_true", help="skip the emulated arm64 board")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.quick:
        a.neurons, a.conv_width, a.conv_epochs, a.sca_epochs, a.densities = 60, 0.25, 1, 2, "0.5"
        a.trials, a.mg_samples, a.digits_samples, a.no_arm64 = 2, 2, 40, True
        a.out = a.out.with_name(a.out.name + "-quick") if a.out == REPO / "out" / "field" else a.out
        a.docs = a.out / "docs"
    if a.fresh and a.out.exists():
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    state = State(a.out / "state.json")
    db = a.out / "results.sqlite"
    densities = [float(d) for d in a.densities.split(",") if d.strip()]
    say("work folder %s, results database %s%s" % (a.out, db, " (resuming: %s)" % ", ".join(state.data) if state.data else ""))

    # models
    mg = build_hrsnn(a.out, a.neurons, a.seed, state)
    conv = build_conv(a.out, a.conv_width, densities, a.conv_epochs, a.sca_epochs, a.seed, state)
    for seb in list(mg.values()) + list(conv.values()):
        export_graphs(seb)
    info = {}
    for name, seb in list(mg.items()) + list(conv.items()):
        info[seb.name] = {k: v for k, v in cli(["info", str(seb)]).items() if not isinstance(v, (dict, list))}
    state.put("info", info)

    # benches on this machine: one command per model and backend, stored as each finishes
    mg_n, dg_n = a.mg_samples, a.digits_samples or None
    for key, seb in (("dense", mg["dense"]), ("lnp-50%", mg["lnp"])):
        for backend, suffix in BACKENDS:
            bench(state, "mg-%s-%s" % (key, backend), [seb.with_suffix(suffix)], "mackey-glass", key, db, mg_n, a.trials)
    # the same file benched again: `results compare` of these two should pass (noise only)
    bench(state, "mg-lnp-50%-event-again", [mg["lnp"]], "mackey-glass", "lnp-50%", db, mg_n, a.trials)
    for key, seb in conv.items():
        label = "conv-dense" if key == "dense" else "sca-%d%%" % int(key[3:])
        for backend, suffix in BACKENDS:
            bench(state, "digits-%s-%s" % (key, backend), [seb.with_suffix(suffix)], "digits", label, db, dg_n, a.trials)

    # the emulated arm64 board
    if a.no_arm64:
        state.put("arm64", {"skipped": "--quick" if a.quick else "--no-arm64"})
    else:
        res = arm64_bench(a.out, mg["lnp"], db, "lnp-50%", a.arm64_samples, a.arm64_trials, state)
        if res.get("skipped"):
            say("arm64 part skipped: %s" % res["skipped"])
            state.put("arm64", res)

    # the user's mistakes
    check_errors(a.out, db)

    # compare, export, report
    runs = state.get("bench")
    ev, ox = runs["mg-lnp-50%-event"][0]["run_id"], runs["mg-lnp-50%-onnx"][0]["run_id"]
    again = runs["mg-lnp-50%-event-again"][0]["run_id"]
    compares = {}
    pairs = {"event-vs-onnx": (ev, ox), "event-twice": (ev, again)}
    arm_runs = (state.get("arm64") or {}).get("runs") or []
    if arm_runs:
        pairs["x86-vs-arm64"] = (ev, arm_runs[0]["run_id"])
    for name, (x, y) in pairs.items():
        p = subprocess.run([SPIKEEDGE, "results", "compare", x, y, "--db", str(db)], capture_output=True, text=True, cwd=REPO)
        j = subprocess.run([SPIKEEDGE, "results", "compare", x, y, "--db", str(db), "--json"], capture_output=True, text=True, cwd=REPO)
        say("$ spikeedge results compare %s %s -> exit %d" % (x[:8], y[:8], p.returncode))
        if p.returncode not in (0, 1) or j.returncode != p.returncode:
            FINDINGS.append("results compare %s: exit %d (human) vs %d (--json): %s" % (name, p.returncode, j.returncode, p.stderr[-300:]))
        try:
            jobj = json.loads(j.stdout)
        except ValueError:
            FINDINGS.append("results compare --json: stdout not one JSON object")
            jobj = None
        compares[name] = {"a": x, "b": y, "exit": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "json": jobj}
    state.put("compare", {k: {kk: v[kk] for kk in ("a", "b", "exit", "stdout", "stderr")} for k, v in compares.items()})

    field_dir = a.docs / "field"
    field_dir.mkdir(parents=True, exist_ok=True)
    cli(["results", "export", "--csv", str(field_dir / "runs.csv"), "--db", str(db)], as_json=False)
    cli(["results", "list", "--db", str(db)])
    cli(["report", "-o", str(field_dir / "report.html"), "--png-dir", str(field_dir), "--db", str(db),
         "--title", "spikeedge field benchmarks (issue 9)"])
    html_bytes = (field_dir / "report.html").stat().st_size
    say("report: %s, %.2f MB" % (field_dir / "report.html", html_bytes / 1e6))
    if html_bytes > 3e6:
        FINDINGS.append("report.html is %.1f MB (> 3 MB)" % (html_bytes / 1e6))

    total = (state.get("seconds") or 0.0) + (time.time() - T0)
    state.put("seconds", total)
    write_field_md(a, state, db, field_dir, compares, html_bytes, total, FINDINGS)
    say("done in %.0f s; %s" % (time.time() - T0, a.docs / "field.md"))
    for f in FINDINGS:
        say("FINDING: " + f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
