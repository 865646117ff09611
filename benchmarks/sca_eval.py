#!/usr/bin/env python3
"""SCA against dense, BatchNorm-scale (Network Slimming) and random channel pruning, every
choice made on a validation split, the test images used once per reported number. Writes
``docs/results/sca.md`` (and ``.json``).

    .venv/bin/python benchmarks/sca_eval.py --phase all                 # the recorded run, one process
    .venv/bin/python benchmarks/sca_eval.py --quick --phase all         # digits, small, a smoke test

Data (``offline/convtrain.holdout``): the task's training images less ``--val`` of them train;
those ``--val`` images are the validation split; the test images are not handed to any
training or pruning code (``dev`` holds only training and validation images). Phases, each
resumable from the cache (every finished run is a JSON file, models are checkpoints):

1. ``tune-dense``: the dense learning rate (``--dense-lrs``) on the tuning seed, by validation accuracy;
2. ``tune-lr``: what every method shares: the pruning/fine-tuning learning rate as a factor of the
   dense one (``--lr-factors``) and the per-layer minimum (``--min-fractions``), with random
   pruning at 25% (no knob of its own, so the choice favours no criterion);
3. ``tune-method``: SCA's schedule (``--sca-grid``: density ramp, regrow fraction) and Network
   Slimming's L1 strength (``--l1s``) at 25%, by validation accuracy;
4. ``dense`` (may run beside 2 and 3) and ``run``: the reported seeds with the chosen settings (fine-tuning length per run on validation:
   ``ScaConfig.finetune_select``);
5. ``report``: each reported model's test accuracy (computed once and cached), paired tests,
   regrowth, shrunk-vs-unshrunk timing and the deploy checks of ``benchmarks/sca_deploy.py``.

The tuning seed is not a reported seed. Several processes may run the same phase on one cache:
each claims a run before doing it (a ``.claim`` file; delete stale ones after a crash) and
waits for runs that others are doing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread for the runtime timings (set before numpy loads)
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from spikeedge.offline import sca  # noqa: E402
from spikeedge.offline.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from spikeedge.offline.convsnn import count_ops  # noqa: E402
from spikeedge.offline.convsnn_layers import preset  # noqa: E402
from spikeedge.offline.convtrain import accuracy, config_for, holdout, load_images, train_convsnn  # noqa: E402

PHASES = ("tune-dense", "tune-lr", "tune-method", "dense", "run", "report")


class NotReady(Exception):
    pass


class Claimed(Exception):
    """Another process sharing the cache is doing this run."""


def run_name(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


class Experiment:
    """The cache, the data split and the runs of one ``sca_eval`` configuration."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.cache: Path = args.cache
        self.cache.mkdir(parents=True, exist_ok=True)
        data = load_images(args.task)
        self.dev, (self._x_test, self._y_test) = holdout(data, args.val, seed=0)
        self.t0 = time.time()

    def log(self, msg: str) -> None:
        print("[%6.0f s] %s" % (time.time() - self.t0, msg), flush=True)

    def model_cfg(self, seed: int) -> Dict[str, Any]:
        a = self.args
        return dict(preset(a.model, a.width), neuron=a.neuron, time_steps=a.time_steps, seed=seed)

    def cached(self, key: Dict[str, Any], fn: Any, run_it: bool = True) -> Dict[str, Any]:
        path = self.cache / (run_name(key) + ".json")
        if path.is_file():
            return json.loads(path.read_text())["result"]
        if not run_it:
            raise NotReady(run_name(key))
        claim = path.with_suffix(".claim")
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise Claimed(run_name(key)) from None
        try:
            result = fn(run_name(key))
            write_json(path, {"key": key, "result": result})
        finally:
            claim.unlink()
        return result

    # ------------------------------------------------------------------------- runs

    def dense_key(self, seed: int, lr: float) -> Dict[str, Any]:
        a = self.args
        return {"what": "dense", "task": a.task, "val": a.val, "model": self.model_cfg(seed), "epochs": a.dense_epochs, "lr": lr,
                "optimizer": a.optimizer, "weight_decay": a.weight_decay, "batch": a.batch_size, "v": 3}

    def dense(self, seed: int, lr: float, run_it: bool = True) -> Dict[str, Any]:
        def train(name: str) -> Dict[str, Any]:
            a = self.args
            self.log("dense seed %d lr %g: training %d epochs" % (seed, lr, a.dense_epochs))
            model, rec = train_convsnn(self.dev, config_for(self.dev, **self.model_cfg(seed)), epochs=a.dense_epochs, lr=lr,
                                       batch_size=a.batch_size, device=a.device, optimizer=a.optimizer, weight_decay=a.weight_decay)
            model = model.cpu()
            save_checkpoint(model, self.cache / (name + "-dense.ckpt.npz"), rec)
            self.log("dense seed %d lr %g: validation accuracy %.4f" % (seed, lr, rec["float_metric"]["accuracy"]))
            return {"method": "dense", "seed": seed, "density": 1.0, "lr": lr, "val_accuracy": rec["float_metric"]["accuracy"],
                    "train_seconds": rec["training"]["train_seconds"], "checkpoints": {"dense": name + "-dense.ckpt.npz"}}

        return self.cached(self.dense_key(seed, lr), train, run_it)

    def prune(self, seed: int, dense_lr: float, method: str, density: float, knobs: Dict[str, Any], run_it: bool = True) -> Dict[str, Any]:
        a = self.args
        cfg = sca.ScaConfig(density=density, epochs=a.epochs, finetune_epochs=a.finetune_epochs, prunes_per_epoch=a.prunes_per_epoch,
                            batch_size=a.batch_size, seed=seed, optimizer=a.optimizer, weight_decay=a.weight_decay,
                            lr=dense_lr * knobs["lr_factor"], finetune_lr=dense_lr * knobs["lr_factor"], finetune_select=True,
                            ramp=knobs.get("ramp", 2.0 / 3.0), regrow=knobs.get("regrow", 0.1),
                            min_fraction=knobs["min_fraction"], l1=knobs.get("l1", 0.0))
        conf = asdict(cfg)
        key = {"what": "prune", "dense": self.dense_key(seed, dense_lr), "method": method, "config": conf, "v": 3}

        def run(name: str) -> Dict[str, Any]:
            dense = self.dense(seed, dense_lr, run_it=False)
            model, _ = load_checkpoint(self.cache / dense["checkpoints"]["dense"], kind="convsnn")
            self.log("%s density %.2f seed %d %s: pruning" % (method, density, seed, knobs))
            small, rec = sca.prune_channels(model.to(a.device), self.dev, cfg, method=method)
            small, model = small.cpu(), model.cpu()
            saved = {"shrunk": name + "-shrunk.ckpt.npz", "masked": name + "-masked.ckpt.npz"}
            save_checkpoint(small, self.cache / saved["shrunk"], {"task": a.task})
            save_checkpoint(model, self.cache / saved["masked"], {"task": a.task})
            self.log("%s density %.2f seed %d: validation accuracy %.4f" % (method, density, seed, rec["accuracy"]["final"]))
            return {"method": method, "seed": seed, "density": density, "knobs": knobs, "val_accuracy": rec["accuracy"]["final"],
                    "val_accuracy_masked": rec["accuracy"]["masked"], "val_accuracy_shrunk": rec["accuracy"]["shrunk"],
                    "val_accuracy_dense": rec["accuracy"]["dense"], "kept_channels": rec["channels"]["kept"],
                    "total_channels": rec["channels"]["total"], "per_layer": rec["channels"]["per_layer"],
                    "regrowth": rec["regrowth"], "events": rec["events"], "finetune_epoch": (rec["finetune"] or {}).get("selected_epoch"),
                    "seconds": rec["seconds"], "max_logit_difference_masked_vs_shrunk": rec["max_logit_difference"], "checkpoints": saved}

        return self.cached(key, run, run_it)

    # ------------------------------------------------------------------------- choices (validation only)

    def sca_grid(self) -> List[Dict[str, Any]]:
        out = []
        for item in self.args.sca_grid:
            ramp, regrow = (float(v) for v in item.split(","))
            out.append({"ramp": ramp, "regrow": regrow})
        return out

    def shared_grid(self) -> List[Dict[str, Any]]:
        """The settings every method shares (pruning/fine-tuning learning rate factor, per-layer
        minimum fraction), tuned with random pruning: it has no knob of its own, so the choice
        favours no criterion."""
        a = self.args
        grid = [{"lr_factor": f, "min_fraction": a.min_fractions[0]} for f in a.lr_factors]  # one knob at a time: the
        return grid + [{"lr_factor": a.lr_factors[0], "min_fraction": m} for m in a.min_fractions[1:]]  # first of each list is the base

    def choices(self, upto: str) -> Dict[str, Any]:
        """The settings chosen on validation data so far (``upto``: the phase that needs them).
        Raises ``NotReady`` while a run they depend on is missing."""
        a, s = self.args, self.args.tune_seed
        got: Dict[str, Any] = {"tuning": {}}
        dense = {lr: self.dense(s, lr, run_it=False)["val_accuracy"] for lr in a.dense_lrs}
        got["dense_lr"] = max(a.dense_lrs, key=lambda lr: (dense[lr], -lr))
        got["tuning"]["dense_lr"] = dense
        if upto == "tune-lr":
            return got
        shared = self.shared_grid()
        vals = [self.prune(s, got["dense_lr"], "random", 0.25, g, run_it=False)["val_accuracy"] for g in shared]
        best = max(range(len(shared)), key=lambda i: (vals[i], -i))
        got["lr_factor"], got["min_fraction"] = shared[best]["lr_factor"], shared[best]["min_fraction"]
        got["tuning"]["shared"] = [dict(g, val_accuracy=v) for g, v in zip(shared, vals)]
        if upto == "tune-method":
            return got
        base = {"lr_factor": got["lr_factor"], "min_fraction": got["min_fraction"]}
        grid = self.sca_grid()
        scores = [self.prune(s, got["dense_lr"], "sca", 0.25, dict(base, **g), run_it=False)["val_accuracy"] for g in grid]
        best = max(range(len(grid)), key=lambda i: (scores[i], -i))
        got["sca"] = dict(base, **grid[best])
        got["tuning"]["sca"] = [dict(g, val_accuracy=v) for g, v in zip(grid, scores)]
        l1s = {l1: self.prune(s, got["dense_lr"], "bn-scale", 0.25, dict(base, l1=l1), run_it=False)["val_accuracy"] for l1 in a.l1s}
        got["bn-scale"] = dict(base, l1=max(a.l1s, key=lambda v: (l1s[v], -v)))
        got["tuning"]["bn-scale"] = l1s
        got["random"] = dict(base)
        return got

    def phase(self, name: str, shard: Tuple[int, int]) -> None:
        a, s = self.args, self.args.tune_seed
        i, n = shard
        if name == "tune-dense":
            items = [lambda lr=lr: self.dense(s, lr) for lr in a.dense_lrs]
        elif name == "tune-lr":
            c = self.choices("tune-lr")
            items = [lambda g=g: self.prune(s, c["dense_lr"], "random", 0.25, g) for g in self.shared_grid()]
        elif name == "tune-method":
            c = self.choices("tune-method")
            base = {"lr_factor": c["lr_factor"], "min_fraction": c["min_fraction"]}
            items = [lambda g=g: self.prune(s, c["dense_lr"], "sca", 0.25, dict(base, **g)) for g in self.sca_grid()]
            items += [lambda v=v: self.prune(s, c["dense_lr"], "bn-scale", 0.25, dict(base, l1=v)) for v in a.l1s]
        elif name == "dense":  # the reported seeds' dense models need only the dense learning rate
            c = self.choices("tune-lr")
            items = [lambda seed=seed: self.dense(seed, c["dense_lr"]) for seed in a.seeds]
        elif name == "run":
            c = self.choices("run")
            items = [lambda seed=seed: self.dense(seed, c["dense_lr"]) for seed in a.seeds]
            for density in a.densities:  # density by density: a run cut short by its budget still answers the first density
                for seed in a.seeds:
                    items += [lambda seed=seed, m=m, d=density: self.prune(seed, c["dense_lr"], m, d, c[m]) for m in a.methods]
            for d in a.sca_only_densities:
                items += [lambda seed=seed, d=d: self.prune(seed, c["dense_lr"], "sca", d, c["sca"]) for seed in a.seeds]
        else:
            raise SystemExit("unknown phase %s" % name)
        pending = items[i::n]
        while pending:  # processes sharing the cache take the runs no other has claimed
            waiting = []
            for fn in pending:
                try:
                    fn()
                except (Claimed, NotReady):
                    waiting.append(fn)
            if len(waiting) == len(pending):
                time.sleep(15)
            pending = waiting

    # ------------------------------------------------------------------------- the test split, once per number

    def test_accuracy(self, ckpt: str) -> float:
        """Test accuracy of a saved model: computed the first time it is asked for, then read
        from the cache (a reported number touches the test images once)."""
        path = self.cache / (ckpt + ".test.json")
        if path.is_file():
            return float(json.loads(path.read_text())["test_accuracy"])
        model, _ = load_checkpoint(self.cache / ckpt, kind="convsnn")
        acc = accuracy(model, self._x_test, self._y_test)
        write_json(path, {"test_accuracy": acc, "images": len(self._y_test)})
        return acc

    def totals(self, ckpt: str) -> Dict[str, float]:
        path = self.cache / (ckpt + ".totals.json")
        if path.is_file():
            return json.loads(path.read_text())
        model, _ = load_checkpoint(self.cache / ckpt, kind="convsnn")
        rows = count_ops(model, self.dev.x_test)  # synaptic operations measured on the validation images
        out = {"params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows), "synops": sum(r["synops"] for r in rows)}
        write_json(path, out)
        return out

    @property
    def test_images(self) -> Any:
        return self._x_test


def parse_shard(text: str) -> Tuple[int, int]:
    i, n = (int(v) for v in text.split("/"))
    if not 0 <= i < n:
        raise SystemExit("--shard: i/n with 0 <= i < n")
    return i, n


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", nargs="+", default=["all"], help="phases to run: %s, or all" % ", ".join(PHASES))
    ap.add_argument("--task", default="mnist-clutter")
    ap.add_argument("--model", default="vgg11", help="a preset of offline/convsnn_layers.PRESETS")
    ap.add_argument("--width", type=float, default=0.0625, help="multiplies the preset's widths")
    ap.add_argument("--neuron", default="if", choices=["if", "lif"])
    ap.add_argument("--time-steps", type=int, default=4)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tune-seed", type=int, default=100, help="the seed every choice is made with (not a reported seed)")
    ap.add_argument("--val", type=int, default=1000, help="validation images carved from the training images")
    ap.add_argument("--densities", type=float, nargs="+", default=[0.25, 0.1])
    ap.add_argument("--sca-only-densities", type=float, nargs="*", default=[0.5], help="densities run for SCA alone")
    ap.add_argument("--methods", nargs="+", default=["sca", "random", "bn-scale"])
    ap.add_argument("--dense-epochs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--finetune-epochs", type=int, default=3, help="at most; the epoch kept is chosen on validation")
    ap.add_argument("--prunes-per-epoch", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--min-fractions", type=float, nargs="+", default=[0.03, 0.125], help="per-layer minimum: max(2, ceil(f x width)) channels")
    ap.add_argument("--dense-lrs", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--lr-factors", type=float, nargs="+", default=[0.2, 1.0])
    ap.add_argument("--sca-grid", nargs="+", default=["0.67,0.1", "0.67,0.3"], help="ramp,regrow")
    ap.add_argument("--l1s", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard", default="0/1", type=parse_shard)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "results" / "sca.md")
    ap.add_argument("--wait", action="store_true", help="wait for an earlier phase's runs that another process is doing")
    ap.add_argument("--no-deploy", action="store_true", help="report: skip the bundle/onnxruntime/TFLite checks")
    ap.add_argument("--quick", action="store_true", help="digits, small model, 2 seeds: a smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.task, args.model, args.width, args.seeds, args.val = "digits", "vgg11", 0.0625, [0, 1], 200
        args.dense_epochs, args.epochs, args.finetune_epochs, args.dense_lrs, args.lr_factors = 2, 1, 1, [0.1], [1.0]
        args.sca_grid, args.l1s, args.densities, args.sca_only_densities = args.sca_grid[:1], [1e-4], [0.25], []
        args.min_fractions = [0.125]
        args.output = ROOT / "out" / "sca-eval-quick" / "sca.md"
    if args.cache is None:
        args.cache = ROOT / "out" / ("sca-eval-%s-%s-%g-%s%s" % (args.task, args.model, args.width, args.neuron, "-quick" if args.quick else ""))
    torch.set_num_threads(args.threads)
    exp = Experiment(args)
    phases = list(PHASES) if args.phase == ["all"] else args.phase
    for ph in phases:
        while True:
            try:
                if ph == "report":
                    from sca_eval_report import report

                    report(exp, exp.choices("run"), sys.argv[1:])
                else:
                    exp.phase(ph, args.shard)
                break
            except NotReady as exc:
                if not args.wait:
                    print("phase %s: run %s of an earlier phase is missing (run that phase first, or --wait)" % (ph, exc), flush=True)
                    return 3
                time.sleep(15)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
