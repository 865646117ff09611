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
(`--fresh` starts over).

    nice -n 10 .venv/bin/python benchmarks/field_bench.py [--quick] [--out out/field] [--fresh]
        [--neurons 300] [--conv-width 0.5] [--no-arm64] [--docs docs/results]

`--quick` is a smoke test: small models, few samples, one SCA density, no arm64 board, and it
writes its page under the out folder, not docs/results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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


# ----------------------------------------------------------------------------- field.md


def _eng(j: Optional[float]) -> str:
    if j is None:
        return "-"
    for scale, unit in ((1, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(j) >= scale:
            return "%.3g %s" % (j / scale, unit)
    return "%.3g J" % j


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for pkg in ("spikeedge", "numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git() -> str:
    p = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO).stdout.split()
    return p.stdout.strip() + (" (with uncommitted changes in %s)" % ", ".join(sorted(set(d for d in dirty if "/" in d or "." in d)))
                               if dirty else "")


def write_field_md(a: Any, state: State, db: Path, field_dir: Path, compares: Dict[str, Any], html_bytes: int, seconds: float) -> Path:
    from spikeedge.results.store import Store

    with Store(db, create=False) as store:
        records = store.runs()
    records.sort(key=lambda r: (r["task"]["name"], r["model"]["name"], r["environment"].get("machine") or "", r["backend"], r["created"]))
    rel = os.path.relpath(field_dir, a.docs)
    env0 = next((r["environment"] for r in records if r["environment"].get("machine") == platform.machine()), records[0]["environment"])
    arm = state.get("arm64") or {}
    lines = [
        "# Field benchmarks: `spikeedge bench` on real models, two boards (issue 9)", "",
        "Generated by `benchmarks/field_bench.py` on %s, %.0f s of work in all (a rerun resumes from `out/field/state.json`); command:" % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), seconds), "",
        "    nice -n 10 .venv/bin/python benchmarks/field_bench.py" + (" --quick" if a.quick else ""), "",
        "Every number below is read back from the results store the script filled (`out/field/results.sqlite`, git-ignored); "
        "the report, its PNGs and the CSV export are in [`%s/`](%s/)." % (rel, rel), "",
        "## Machine and versions", "",
        "- this host: `%s`, %s, %s, %d CPU cores, kernel `%s`, governor %s; board profile `%s` (detected)" % (
            env0.get("hostname"), env0.get("cpu_model"), env0.get("machine"), os.cpu_count() or 0, env0.get("kernel"), env0.get("governor") or "not exposed (VM)",
            next((r["board"] for r in records if r["environment"].get("machine") == platform.machine()), "?")),
        "- emulated board: %s" % (("Debian 12 arm64 root under qemu-user-static (`QEMU_CPU=%s`, a Raspberry Pi 4 core) with its own sshd on "
                                   "loopback (`tests/arm64_board.py`); flashed with `spikeedge flash` in %s s, benched with `spikeedge bench --to` in %s s"
                                   % (arm.get("qemu_cpu"), arm.get("flash_s"), arm.get("bench_s"))) if not arm.get("skipped") else "skipped: %s" % arm["skipped"]),
        "- Python %s; %s" % (platform.python_version(), ", ".join("%s %s" % kv for kv in _versions().items() if kv[1])),
        "- code: git %s" % _git(),
        "- power: **no sensor on this VM** (no RAPL, no hwmon rails; `spikeedge boards detect` says so), so every run uses "
        "`--meter estimate`: energy per inference = effective synaptic operations x 0.03 pJ (Horowitz 45 nm int8 accumulate). "
        "That is an operation count, not a measurement, and it ignores memory traffic, the interpreter and the idle floor, "
        "which dominate on a CPU by orders of magnitude.", "",
        "## Models", "",
    ]
    h = state.get("hrsnn") or {}
    lines += [
        "- `mg-dense.seb`: heterogeneous recurrent SNN of %s neurons, Mackey-Glass tau = 17, ridge readout, int8 (`offline.pipeline`, as `spikeedge demo`)." % h.get("neurons"),
        "- `mg-lnp50.seb`: the same random network LNP-pruned before training to %s neurons and %s recurrent synapses (kept %.0f%% / %.0f%%), then trained the same way." % (
            (h.get("lnp") or {}).get("neurons"), (h.get("lnp") or {}).get("synapses"), 100 * ((h.get("lnp") or {}).get("kept_neurons") or 0),
            100 * ((h.get("lnp") or {}).get("kept_synapses") or 0)),
        "- `digits-*.seb`: VGG-style conv SNN (`spikeedge train convsnn --task digits --width %s --epochs %d`), and SCA-pruned to channel densities %s "
        "(`spikeedge prune sca ... --density D --epochs %d --finetune-epochs %d`), int8 bundles." % (a.conv_width, a.conv_epochs, a.densities,
                                                                                                    a.sca_epochs, a.sca_epochs),
        "- each bundle exported to ONNX and TFLite with `spikeedge export X.seb --format onnx|tflite` (int8 step graphs).", "",
        "## Protocol", "",
        "`spikeedge bench FILE --task T --meter estimate --label L --trials %d` per file, one command each (so each run is stored as it "
        "finishes), batch 1, 5 warm-up inferences. Mackey-Glass: %d windows per trial (one inference = 750 teacher-forced + 750 "
        "autoregressive steps; NeuroBench's sMAPE); digits: %s test images per trial. On the emulated board: %d windows x %d trials, "
        "1 warm-up (qemu is ~10-50x slower)." % (a.trials, a.mg_samples, a.digits_samples or "all", a.arm64_samples, a.arm64_trials), "",
        "## Runs", "",
        "mean ± sem: over every timed inference (sem = std / sqrt(n)); energy: per inference, *est.* = synaptic-operation estimate; "
        "SynOps: effective synaptic operations per inference (what the runtime really did).", "",
        "| host / board | backend | model | label | metric | samples x trials | mean ± sem (ms) | p99 (ms) | energy / inf. | SynOps / inf. | repeatable |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lat, pw, env = r["latency"], r["power"], r["environment"]
        energy = "-" if pw is None else "%s (%s)" % (_eng(pw["energy_per_inference_j"]["total"]), "est." if pw["label"] == "estimate" else pw["label"])
        rep = r["repeatability"]
        lines.append("| %s %s / `%s` | %s | `%s` | %s | %s %.4g | %d x %d | %.4g ± %.2g | %.4g | %s | %.4g | %s |" % (
            env.get("hostname"), env.get("machine"), r["board"], r["backend"], r["model"]["name"], r["label"] or "", r["task"]["metric"],
            r["task"]["value"], r["protocol"]["samples_per_trial"], r["protocol"]["trials"], lat["mean_ms"], lat["sem_ms"], lat["p99_ms"], energy, r["workload"]["synops_per_inference"]["effective"],
            "yes" if rep["ok"] else "no (%.1f%%)" % (100 * rep["max_deviation"])))
    same = arm.get("same_as_here")
    if same:
        rel = same.get("metric_rel_diff")
        if rel is None:  # a state file from before the field existed
            rel = abs(same["metric"][0] - same["metric"][1]) / abs(same["metric"][1])
        lines += ["", "On the emulated board, `mg-lnp50.seb` ran on the board's own runtime (flashed wheel, aarch64 numpy) over the "
                  "first %d windows; `spikeedge bench --no-store` of the same file on the same windows here gives effective SynOps %.10g "
                  "(board) vs %.10g (here) and spike rates %s vs %s: the workload record is %s. sMAPE %.12g vs %.12g, a relative "
                  "difference of %.1e: the integer network is bit-exact across architectures, the float64 readout and sMAPE round "
                  "differently in the last bits on aarch64. Mean time per window: %.1f ms under qemu vs %.1f ms here (%.0fx)." % (
                      a.arm64_samples, same["synops_effective"][0], same["synops_effective"][1], same["spike_rate"][0], same["spike_rate"][1],
                      "**identical**" if same["synops_effective"][0] == same["synops_effective"][1] and same["spike_rate"][0] == same["spike_rate"][1]
                      else "**different**", same["metric"][0], same["metric"][1], rel,
                      arm["runs"][0]["mean_ms"], same["here_mean_ms"], arm["runs"][0]["mean_ms"] / same["here_mean_ms"])]
    lines += ["", "## `spikeedge results compare`", ""]
    what = {"event-vs-onnx": "the LNP-pruned bundle on `event` (A) against its ONNX export on `onnx` (B): different backends, so a warning, "
                             "and latency differences here are the backends', not a regression",
            "event-twice": "the LNP-pruned bundle benched twice on `event`, the same file and settings: should pass (noise only)",
            "x86-vs-arm64": "the LNP-pruned bundle on `event` here (A) against the same file on the emulated arm64 board (B, %d windows x %d "
                            "trials): a different board and a different sample count, so warnings; the latency rows measure qemu, "
                            "not a regression" % (a.arm64_samples, a.arm64_trials)}
    for name, c in compares.items():
        lines += ["### %s" % name, "", what.get(name, ""), "",
                  "    $ spikeedge results compare %s %s --db out/field/results.sqlite    # exit %d" % (c["a"][:8], c["b"][:8], c["exit"]), ""]
        lines += ["    " + l for l in (c["stdout"].rstrip() + "\n" + c["stderr"].rstrip()).strip("\n").splitlines()] + [""]
    figs = sorted(p.name for p in field_dir.glob("*.png"))
    lines += ["## Report and exports", "",
              "- [`%s/report.html`](%s/report.html): `spikeedge report -o %s/report.html --png-dir %s/` (%.2f MB, self-contained)" % (rel, rel, rel, rel, html_bytes / 1e6),
              "- PNGs: " + ", ".join("[`%s`](%s/%s)" % (f, rel, f) for f in figs),
              "- CSV: [`%s/runs.csv`](%s/runs.csv) (`spikeedge results export --csv`)" % (rel, rel), ""]
    # where the backends of one model disagree on the metric or the counts (same samples, same host)
    diffs = []
    by_model: Dict[Any, Dict[str, Any]] = {}
    for r in records:
        if r["environment"].get("machine") == platform.machine():
            by_model.setdefault((Path(r["model"]["name"]).stem, r["task"]["samples"]), {})[r["backend"]] = r
    for (stem, _n), forms in sorted(by_model.items()):
        ev = forms.get("event")
        for b, r in sorted(forms.items()):
            if ev is None or b == "event":
                continue
            if r["task"]["value"] != ev["task"]["value"] or r["workload"]["synops_per_inference"]["effective"] != ev["workload"]["synops_per_inference"]["effective"]:
                diffs.append("`%s`: %s gives %s %.6g and %.6g SynOps, event %.6g and %.6g" % (
                    stem, b, r["task"]["metric"], r["task"]["value"], r["workload"]["synops_per_inference"]["effective"], ev["task"]["value"],
                    ev["workload"]["synops_per_inference"]["effective"]))
    lines += ["## Notes", "",
              "- Backends of one model on the same samples: " + ("all give the event runtime's metric and SynOps exactly." if not diffs else
                                                                  "these differ from the event runtime (expected for TFLite, which "
                                                                  "computes in float32 inside, `docs/export.md`; the ONNX int8 graph is "
                                                                  "meant to be bit-exact): " + "; ".join(diffs) + "."),
              "- Energy figures are **estimates** (operation counts x 0.03 pJ); no power was measured anywhere. On a board with a sensor "
              "(`--meter auto`), the same command records measured idle/active/dynamic power and a trace.",
              "- The arm64 timings are **qemu user-mode emulation** of a Cortex-A72 on this x86 host, not a Raspberry Pi 4: they show the "
              "remote path works end to end (flash, sha256-checked upload, the board's own runtime, records stored at home), not how fast a Pi is. "
              "The workload figures (SynOps, spike rates, the task metric) are the board's own count and must equal this host's for the same file "
              "and samples; the timings must not be compared with a real board's.",
              "- This is a shared 2-core VM with other jobs running, under `nice -n 10`: absolute latencies carry that load; runs marked not "
              "repeatable broke NeuroBench's 5% rule on trial means.",
              "- The task metrics are on the benched samples (the first N of the split), not necessarily the full test split."]
    if FINDINGS:
        lines += ["", "## Command-line contract problems seen by the script", ""] + ["- " + f for f in FINDINGS]
    path = a.docs / "field.md"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    write_field_md(a, state, db, field_dir, compares, html_bytes, total)
    say("done in %.0f s; %s" % (time.time() - T0, a.docs / "field.md"))
    for f in FINDINGS:
        say("FINDING: " + f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
