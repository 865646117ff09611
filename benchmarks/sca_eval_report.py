"""The report phase of ``benchmarks/sca_eval.py``: test accuracy once per reported model, paired
tests between the criteria, regrowth per event, shrunk-vs-unshrunk runtime, the deploy checks
(``benchmarks/sca_deploy.py``), written to ``docs/results/sca.md`` and ``.json``."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

from scipy import stats

from spikeedge.offline.convsnn_layers import preset

METHOD_ORDER = ["dense", "sca", "bn-scale", "random"]


def mean_std(vals: List[float], fmt: str = "%.2f") -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt % vals[0]
    return (fmt + " ± " + fmt) % (statistics.mean(vals), statistics.stdev(vals))


def paired(a: Dict[int, float], b: Dict[int, float]) -> Optional[Dict[str, Any]]:
    """Paired comparison over the seeds both have, in points: mean and std of a - b, the paired
    t-test (two-sided and one-sided for a > b), wins."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [100 * (a[s] - b[s]) for s in seeds]
    if statistics.pstdev(d) == 0:
        p2 = 0.0 if statistics.mean(d) != 0 else 1.0
        t = math.inf if statistics.mean(d) > 0 else -math.inf if statistics.mean(d) < 0 else 0.0
    else:
        t, p2 = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        t, p2 = float(t), float(p2)
    p1 = p2 / 2 if t > 0 else 1 - p2 / 2
    return {"seeds": seeds, "mean": statistics.mean(d), "std": statistics.stdev(d), "t": t, "p_two_sided": p2, "p_one_sided": p1,
            "wins": sum(v > 0 for v in d), "diffs": d}


def collect(exp: Any, choices: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every reported run (cached by phase ``run``), with its test accuracy and size."""
    a = exp.args
    rows: List[Dict[str, Any]] = []
    for seed in a.seeds:
        try:
            d = dict(exp.dense(seed, choices["dense_lr"], run_it=False))
        except Exception:
            continue
        d.update(test_accuracy=exp.test_accuracy(d["checkpoints"]["dense"]), **exp.totals(d["checkpoints"]["dense"]))
        rows.append(d)
        todo = [(m, dd) for dd in a.densities for m in a.methods] + [("sca", dd) for dd in a.sca_only_densities]
        for m, dd in todo:
            try:
                r = dict(exp.prune(seed, choices["dense_lr"], m, dd, choices[m], run_it=False))
            except Exception:
                continue
            r.update(test_accuracy=exp.test_accuracy(r["checkpoints"]["shrunk"]), **exp.totals(r["checkpoints"]["shrunk"]))
            rows.append(r)
    return rows


def report(exp: Any, choices: Dict[str, Any], argv: List[str]) -> None:
    from sca_deploy import deploy_checks, runtime_pair
    from sca_eval import write_json

    a = exp.args
    rows = collect(exp, choices)
    exp.log("report: %d runs with test accuracy" % len(rows))
    from spikeedge.offline.checkpoint import load_checkpoint

    for r in rows:  # SCA's shrunk vs unshrunk at 25%, interleaved
        if r["method"] == "sca" and abs(r["density"] - 0.25) < 1e-9:
            path = exp.cache / (r["checkpoints"]["shrunk"] + ".timing.json")
            if not path.is_file():
                models = {k: load_checkpoint(exp.cache / f, kind="convsnn")[0] for k, f in r["checkpoints"].items()}
                t = {"b1": runtime_pair(models, exp.dev, batch=1), "b32": runtime_pair(models, exp.dev, n=6, batch=32),
                     "b1_dense": runtime_pair(models, exp.dev, batch=1, method="dense"),
                     "b32_dense": runtime_pair(models, exp.dev, n=6, batch=32, method="dense")}
                write_json(path, t)
            r["timing"] = json.loads(path.read_text())
    deploy = None
    if not a.no_deploy:
        deploy = deploy_checks(exp, rows, a.seeds[0])
    write(exp, choices, rows, deploy, argv)


def options(argv: List[str]) -> List[str]:
    """``argv`` less the phase selection (``--phase`` and its values, ``--wait``, ``--shard``)."""
    out, skip = [], False
    for v in argv:
        if v.startswith("--"):
            skip = v in ("--phase", "--shard")
            if skip or v == "--wait":
                continue
        elif skip:
            continue
        out.append(v)
    return out


def rows_total_channels(rows: List[Dict[str, Any]]) -> int:
    return max([int(r.get("total_channels", 0)) for r in rows] + [0])


def by(rows: List[Dict[str, Any]], method: str, density: float) -> Dict[int, Dict[str, Any]]:
    return {r["seed"]: r for r in rows if r["method"] == method and abs(r["density"] - density) < 1e-9}


def write(exp: Any, choices: Dict[str, Any], rows: List[Dict[str, Any]], deploy: Optional[Dict[str, Any]], argv: List[str]) -> None:
    from sca_eval import write_json

    a = exp.args
    dense = by(rows, "dense", 1.0)
    dense_params = statistics.mean([r["params"] for r in dense.values()]) if dense else float("nan")
    L = ["# SCA channel pruning: results", "",
         "Generated by `benchmarks/sca_eval.py` (%s):" % time.strftime("%Y-%m-%d"), "",
         "    .venv/bin/python benchmarks/sca_eval.py --phase all %s" % " ".join(options(argv)), "",
         "(resumable; the recorded run used several processes on one cache, each `--phase tune-lr tune-method dense run --wait`, "
         "then `--phase report`).", "",
         "Task `%s`, %d training images less %d for validation, %d test images (touched once per reported number, in the "
         "report phase, after every choice was made). Model `%s` x %g (%s), %s neurons, T = %d; %s (weight decay %g), cosine "
         "schedule, batch %d. Dense: %d epochs. Each pruning method: %d epochs with pruning (SCA: %d prune events per epoch), "
         "physical shrink, up to %d fine-tuning epochs (the epoch kept chosen on validation, per run). Reported seeds %s; "
         "choices on tuning seed %d." % (
             a.task, len(exp.dev.y_train) + len(exp.dev.y_test), len(exp.dev.y_test), len(exp.test_images), a.model, a.width,
             "plan %s, %d prunable channels" % ("-".join(str(v) for v in preset(a.model, a.width)["plan"]), rows_total_channels(rows)), a.neuron.upper(),
             a.time_steps, a.optimizer.upper() + (" momentum 0.9" if a.optimizer == "sgd" else ""), a.weight_decay, a.batch_size,
             a.dense_epochs, a.epochs, a.prunes_per_epoch, a.finetune_epochs, a.seeds, a.tune_seed), ""]
    L += ["## Choices made on the validation split (tuning seed %d)" % a.tune_seed, ""]
    t = choices["tuning"]
    L.append("- dense learning rate: %s -> **%g**" % (", ".join("%g: %.2f%%" % (k, 100 * v) for k, v in t["dense_lr"].items()), choices["dense_lr"]))
    L.append("- shared by every method, chosen with random pruning at 25%% (pruning/fine-tuning learning rate as a factor of the dense one, "
             "per-layer minimum fraction): %s -> **(%g, %g)**" % (
                 "; ".join("(%g, %g): %.2f%%" % (g["lr_factor"], g["min_fraction"], 100 * g["val_accuracy"]) for g in t["shared"]),
                 choices["lr_factor"], choices["min_fraction"]))
    L.append("- SCA schedule at 25%% (density ramp, regrow fraction): %s -> **(%g, %g)**" % (
        "; ".join("(%g, %g): %.2f%%" % (g["ramp"], g["regrow"], 100 * g["val_accuracy"]) for g in t["sca"]),
        choices["sca"]["ramp"], choices["sca"]["regrow"]))
    L.append("- Network Slimming L1 on the BatchNorm gammas at 25%%: %s -> **%g**" % (
        ", ".join("%g: %.2f%%" % (k, 100 * v) for k, v in t["bn-scale"].items()), choices["bn-scale"]["l1"]))
    L.append("- the fine-tuning length is chosen per run on validation (the best of epochs 0..%d after the shrink)." % a.finetune_epochs)
    L += ["", "## Test accuracy", "",
          "| method | channel density | seeds | test accuracy (%) | Δ vs dense (points, paired) | parameters (% of dense) | dense MACs "
          "| synaptic ops | fine-tune epoch kept | swaps / revivals per event |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], r["density"]) for r in rows}, key=lambda k: (-k[1], METHOD_ORDER.index(k[0])))
    for m, d in keys:
        g = by(rows, m, d)
        rs = list(g.values())
        delta = [100 * (r["test_accuracy"] - dense[s]["test_accuracy"]) for s, r in g.items() if s in dense] if m != "dense" else []
        rg = [r["regrowth"] for r in rs if r.get("regrowth") and r["regrowth"]["events"]]
        L.append("| %s | %.2f | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            m, d, len(rs), mean_std([100 * r["test_accuracy"] for r in rs]), mean_std(delta),
            mean_std([100 * r["params"] / dense_params for r in rs], "%.1f"), mean_std([r["macs"] for r in rs], "%.3g"),
            mean_std([r["synops"] for r in rs], "%.3g"), mean_std([r["finetune_epoch"] for r in rs if r.get("finetune_epoch") is not None], "%.1f"),
            "%s / %s" % (mean_std([v["swaps_per_event"] for v in rg], "%.1f"), mean_std([v["revivals_per_event"] for v in rg], "%.1f")) if rg else ""))
    L += ["", "## Paired tests (test accuracy, points; paired t-test over seeds)", "",
          "| comparison | density | seeds | mean difference | wins | t | p (one-sided, SCA better) | p (two-sided) | target p < 0.05 |", "|---|---|---|---|---|---|---|---|---|"]
    tests = {}
    for d in a.densities:
        for other in ("random", "bn-scale"):
            res = paired({s: r["test_accuracy"] for s, r in by(rows, "sca", d).items()}, {s: r["test_accuracy"] for s, r in by(rows, other, d).items()})
            if res:
                tests["sca-vs-%s@%g" % (other, d)] = res
                L.append("| SCA - %s | %.2f | %d | %+.2f ± %.2f | %d of %d | %.2f | %.3g | %.3g | %s |" % (
                    other, d, len(res["seeds"]), res["mean"], res["std"], res["wins"], len(res["seeds"]), res["t"], res["p_one_sided"],
                    res["p_two_sided"], "met" if res["p_one_sided"] < 0.05 and res["mean"] > 0 else "NOT met"))
    L += ["", "## Parameter targets (SCA)", ""]
    for target, tol in ((28.0, 0.5), (9.0, 1.5)):
        cands = [(abs(statistics.mean([100 * r["params"] / dense_params for r in by(rows, "sca", d).values()]) - target), d)
                 for d in sorted({r["density"] for r in rows if r["method"] == "sca"})]
        if not cands:
            continue
        _, d = min(cands)
        g = by(rows, "sca", d)
        frac = statistics.mean([100 * r["params"] / dense_params for r in g.values()])
        delta = [100 * (r["test_accuracy"] - dense[s]["test_accuracy"]) for s, r in g.items() if s in dense]
        ok = statistics.mean(delta) >= -tol
        L.append("- ≈%g%% of parameters: the nearest SCA density is %.2f of the channels, %.1f%% of the parameters; Δ vs dense %+.2f ± %.2f points "
                 "(target within %.1f): %s." % (target, d, frac, statistics.mean(delta), statistics.stdev(delta) if len(delta) > 1 else 0, tol,
                                                "met" if ok else "NOT met"))
    timed = [r for r in by(rows, "sca", 0.25).values() if r.get("timing")]
    if timed:
        L += ["", "## Shrunk vs unshrunk on the runtime (SCA, 25% of channels)", "",
              "Int8 bundles on the numpy runtime, one thread, shrunk and unshrunk interleaved batch by batch in one process, median "
              "ms per image (batch 1: 30 batches x 3 rounds; batch 32: 6 x 3). Two conv methods of the runtime: `auto` (its own "
              "choice between the event-driven and the dense path, what `open_model` gives) and `dense` (im2col products).", "",
              "| seed | method | batch 1 shrunk | unshrunk | ratio | batch 32 shrunk | unshrunk | ratio |", "|---|---|---|---|---|---|---|---|"]
        for r in timed:
            for meth, k1, k32 in (("auto", "b1", "b32"), ("dense", "b1_dense", "b32_dense")):
                b1, b32 = r["timing"][k1], r["timing"][k32]
                L.append("| %d | %s | %.3f | %.3f | %.2fx | %.3f | %.3f | %.2fx |" % (
                    r["seed"], meth, b1["shrunk"], b1["masked"], b1["masked"] / b1["shrunk"], b32["shrunk"], b32["masked"], b32["masked"] / b32["shrunk"]))
        L.append("")
        for meth, k32 in (("auto", "b32"), ("dense", "b32_dense")):
            r32 = [r["timing"][k32]["masked"] / r["timing"][k32]["shrunk"] for r in timed]
            L.append("- Batch 32, method %s: %sx over %d seeds (target ≥ 2x: %s)." % (meth, mean_std(r32), len(r32), "met" if statistics.mean(r32) >= 2 else "NOT met"))
    if deploy:
        from sca_deploy import deploy_markdown

        L += [""] + deploy_markdown(deploy)
    L += ["", "## Regrowth per prune event (SCA, first reported seed)", ""]
    for d in sorted({r["density"] for r in rows if r["method"] == "sca"}, reverse=True):
        g = by(rows, "sca", d)
        if g:
            r = g[min(g)]
            L.append("- density %.2f, seed %d: %s" % (d, r["seed"], ", ".join("event %d: target %.2f, %d swaps, %d revived" % (
                e["event"], e["density_target"], e["regrown"], e["revived_now"]) for e in r["events"])))
    L += ["", "## Scale, and the GPU run", "",
          "No GPU was lent to this task: everything above ran on 2 CPU cores shared with other sessions (one torch thread per "
          "process, about 0.1-0.3 of a core each under a load average of 9-17), which bounded the model to VGG-11 at width 1/16 "
          "(%d prunable channels) and the training to a few epochs. The run the method asks for, on one GPU "
          "(`--device cuda`; each phase resumable):" % (rows_total_channels(rows)), "",
          "    .venv/bin/python benchmarks/sca_eval.py --phase all --device cuda --task mnist-clutter --model vgg16 --width 1 \\",
          "        --dense-epochs 100 --epochs 60 --finetune-epochs 30 --batch-size 128 --dense-lrs 0.05 0.1 --sca-only-densities 0.5 0.3 \\",
          "        --output docs/results/sca_gpu.md",
          "",
          "and the same with `--task mnist` and with `--model resnet18`. Expected time (an estimate, not a measurement): VGG-16 at "
          "full width is 959M MACs per inference (T = 4) against 2.1M here; at 5-10 s per epoch of 7,000 images on an H100 (the "
          "neuron loop is T small kernels per layer), the about 4,500 epochs of 5 seeds, the tuning and the baselines take 6-12 hours; "
          "`--width 0.25` about a quarter of that."]
    exp.args.output.parent.mkdir(parents=True, exist_ok=True)
    extra = getattr(exp, "notes", [])
    text = "\n".join(L + [""] + extra) + "\n"
    tmp = exp.args.output.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(exp.args.output)
    write_json(exp.args.output.with_suffix(".json"), json.loads(json.dumps({"choices": choices, "runs": rows, "tests": tests, "deploy": deploy}, default=str)))
    print(text if "--print" in sys.argv else "wrote %s" % exp.args.output, flush=True)
