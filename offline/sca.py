"""Spiking Channel Activity (SCA) structured pruning of convolutional SNNs, physical shrinking,
and the channel-pruning baselines (BatchNorm scale, random). Decisions: ``docs/sca.md``.

A *unit* is one prunable group of channels: the output channels of a conv whose BatchNorm is
followed by the channel mask and a neuron layer. VGG: every spiking conv but the stem. ResNet:
the block-internal channels only (``conv1`` of each block; residual channels are never pruned).
The classifier is never pruned.

Criteria are interchangeable: each maps the units to one score tensor per unit (higher =
keep); ``select`` turns scores and a density into masks (global ranking, per-layer minimum).
The density schedule is a plain function. Every transform returns the new model and a record.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..errors import ModelError
from . import distributed
from .convsnn import ConvSNN
from .convtrain import ImageData, Progress, accuracy, fit, predict
from .sca_report import layer_report, regrowth_summary, report_markdown  # noqa: F401 (re-exported: cli/prune.py)
from .sca_units import Unit, shrink, units  # noqa: F401 (re-exported: tests, callers)


# ----------------------------------------------------------------------------- config and schedule


@dataclass
class ScaConfig:
    density: float = 0.25  # final kept fraction of the prunable channels
    epochs: int = 4  # training epochs with pruning (masked network)
    finetune_epochs: int = 8  # after the physical shrink (cheap: the network is small by then)
    prunes_per_epoch: int = 2  # prune events per epoch; scores are running means between events
    ramp: float = 2.0 / 3.0  # density ramps (cosine) from 1 to the target over this fraction of the events
    regrow: float = 0.1  # regrown channels at the first event, as a fraction of the kept count; decays (cosine) to 0 at the end of the ramp
    min_channels: int = 2  # per-layer minimum width ...
    min_fraction: float = 0.125  # ... max(min_channels, ceil(min_fraction * width))
    normalize: bool = False  # rank activity divided by its layer's mean over live channels (an ablation; the method ranks raw scores)
    l1: float = 1e-3  # bn-scale only: Network Slimming's L1 strength on the BatchNorm gammas during its sparsity training
    lr: float = 1e-3
    finetune_lr: float = 2e-3
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "adam"  # or "sgd" (momentum 0.9, as the paper); cosine decay either way
    weight_decay: float = 0.0
    finetune_select: bool = False  # keep the fine-tuning epoch with the best score on data.x_test (a validation split: convtrain.holdout)

    def __post_init__(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise ModelError("density %r is not a kept fraction in (0, 1]" % self.density)
        if self.epochs < 1 or self.finetune_epochs < 0 or self.prunes_per_epoch < 1:
            raise ModelError("epochs must be >= 1, finetune epochs >= 0, prunes per epoch >= 1")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ModelError("min_fraction %r is not in [0, 1]" % self.min_fraction)
        if not 0.0 < self.ramp <= 1.0:
            raise ModelError("ramp %r is not in (0, 1]" % self.ramp)
        if self.l1 < 0.0:
            raise ModelError("l1 %r is negative" % self.l1)
        if self.optimizer not in ("adam", "sgd"):
            raise ModelError("optimizer %r is not adam or sgd" % self.optimizer)

    def opt_kw(self) -> Dict[str, Any]:
        """``fit``'s optimizer keywords."""
        return {"optimizer": self.optimizer, "weight_decay": self.weight_decay}


def cosine_density(progress: float, target: float, ramp: float) -> float:
    """Kept fraction at ``progress`` in [0, 1] of the prune events: 1 at 0, cosine down to
    ``target`` at ``ramp``, then constant."""
    p = min(1.0, max(0.0, progress) / ramp)
    return target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * p))


def regrow_fraction(progress: float, start: float, ramp: float) -> float:
    """Regrow fraction: ``start`` at 0, cosine down to 0 at ``ramp``."""
    p = min(1.0, max(0.0, progress) / ramp)
    return start * 0.5 * (1.0 + math.cos(math.pi * p))


def layer_minimum(width: int, cfg: ScaConfig) -> int:
    return min(width, max(cfg.min_channels, int(math.ceil(cfg.min_fraction * width))))


# ----------------------------------------------------------------------------- selection


def select(scores: List[torch.Tensor], density: float, minimums: List[int]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Global ranking: keep ``round(density * total)`` channels of all units by score, each unit
    keeping at least its minimum (its best channels). Ties go to the earlier channel.

    Returns (masks (0/1 float per unit), reserved (bool per unit: kept by the minimum))."""
    total = sum(len(s) for s in scores)
    keep = max(int(round(density * total)), sum(minimums))
    masks = [torch.zeros(len(s)) for s in scores]
    reserved = [torch.zeros(len(s), dtype=torch.bool) for s in scores]
    for u, (s, m) in enumerate(zip(scores, minimums)):
        top = torch.argsort(-s.double(), stable=True)[:m]
        masks[u][top] = 1.0
        reserved[u][top] = True
    flat = torch.cat([s.double() for s in scores])
    taken = torch.cat(masks).bool()
    owner = torch.cat([torch.full((len(s),), u) for u, s in enumerate(scores)])
    offset = torch.cat([torch.arange(len(s)) for s in scores])
    need = keep - int(taken.sum())
    if need > 0:
        order = torch.argsort(-flat, stable=True)
        order = order[~taken[order]][:need]
        for k in order.tolist():
            masks[int(owner[k])][int(offset[k])] = 1.0
    return masks, reserved


def bn_scale_scores(model: ConvSNN) -> List[torch.Tensor]:
    """Network Slimming's criterion: |gamma| of each unit's BatchNorm."""
    return [u.bn.weight.detach().abs().cpu() for u in units(model)]


def l1_on_gamma(model: ConvSNN, strength: float) -> Callable[[], None]:
    """Network Slimming's sparsity term ``strength * sum |gamma|`` over the prunable units'
    BatchNorm scales, as its subgradient added after the backward pass (``fit``'s
    ``before_step``)."""
    gammas = [u.bn.weight for u in units(model)]

    def add() -> None:
        with torch.no_grad():
            for g in gammas:
                if g.grad is not None:
                    g.grad.add_(torch.sign(g), alpha=strength)

    return add


def random_scores(model: ConvSNN, seed: int) -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(u.width, generator=gen) for u in units(model)]


# ----------------------------------------------------------------------------- mask hygiene


def _clear_state(opt: Optional[torch.optim.Optimizer], param: torch.Tensor, index: Any) -> None:
    """Zero the optimiser's per-weight state (momentum, second moments) at ``index``."""
    if opt is None:
        return
    for v in opt.state.get(param, {}).values():
        if torch.is_tensor(v) and v.shape == param.shape:
            v[index] = 0


def set_masks(model: ConvSNN, masks: List[torch.Tensor], opt: Optional[torch.optim.Optimizer] = None) -> Dict[str, int]:
    """Install ``masks``: pruned channels get gamma = beta = 0 and their optimiser state of the
    filter, gamma, beta and the consumer's input columns cleared; channels that come back start
    from gamma = beta = 0 (their filter is the one they had). Returns counts of changes."""
    pruned = revived = 0
    with torch.no_grad():
        for u, m in zip(units(model), masks):
            old = u.mask.clone()
            m = m.to(old.device, old.dtype)
            gone = (old == 1) & (m == 0)
            back = (old == 0) & (m == 1)
            pruned += int(gone.sum())
            revived += int(back.sum())
            u.mask.copy_(m)
            dead = m == 0
            u.bn.weight[dead] = 0.0
            u.bn.bias[dead] = 0.0
            changed = gone | back
            _clear_state(opt, u.conv.weight, changed)
            _clear_state(opt, u.bn.weight, changed)
            _clear_state(opt, u.bn.bias, changed)
            cols = changed.repeat_interleave(u.block)
            _clear_state(opt, u.consumer.weight, (slice(None), cols))
    return {"pruned": pruned, "revived": revived}


def remask(model: ConvSNN, opt: Optional[torch.optim.Optimizer] = None) -> None:
    """After every optimiser step: gamma and beta of pruned channels back to 0 (the masked
    output passes gradients straight through to them, for the regrowth score) and their
    optimiser state cleared, so momentum cannot revive them."""
    with torch.no_grad():
        for u in units(model):
            dead = u.mask == 0
            if bool(dead.any()):
                u.bn.weight[dead] = 0.0
                u.bn.bias[dead] = 0.0
                _clear_state(opt, u.bn.weight, dead)
                _clear_state(opt, u.bn.bias, dead)


def kept(model: ConvSNN) -> Dict[str, Any]:
    us = units(model)
    k = sum(int(u.mask.sum()) for u in us)
    t = sum(u.width for u in us)
    return {"kept": k, "total": t, "density": k / t if t else 1.0, "per_layer": {u.name: [int(u.mask.sum()), u.width] for u in us}}


# ----------------------------------------------------------------------------- SCA training


class ScaPruner:
    """The SCA state over training: activity and |dL/dgamma| accumulators, the prune events."""

    def __init__(self, model: ConvSNN, cfg: ScaConfig, n_events: int) -> None:
        self.model, self.cfg, self.n_events = model, cfg, n_events
        self.units = units(model)
        self.minimums = [layer_minimum(u.width, cfg) for u in self.units]
        self.events: List[Dict[str, Any]] = []
        self.reset()
        for u in self.units:
            u.lif.record = True

    def reset(self) -> None:
        for u in self.units:
            u.lif.reset_activity()
        self.grad_sum = [torch.zeros(u.width, device=u.mask.device) for u in self.units]
        self.batches = 0

    def accumulate_grad(self) -> None:
        """After each backward pass: |dL/dgamma| per channel (summed over the batches). Under
        torchrun the gradient read here is DDP's all-reduced one, i.e. that of the global batch
        (the absolute value of the global gradient, as in one process; not the sum of the
        ranks' absolute values)."""
        for g, u in zip(self.grad_sum, self.units):
            if u.bn.weight.grad is not None:
                g += u.bn.weight.grad.detach().abs()
        self.batches += 1

    def activity(self) -> List[torch.Tensor]:
        """Each unit's activity score (on the CPU). Under torchrun the per-rank sums and counts
        are all-reduced first: the score is the mean over the global batches."""
        if distributed.world() == 1:
            return [u.lif.activity().detach().cpu() for u in self.units]
        parts = [u.lif.activity_sum if u.lif.activity_sum is not None else torch.zeros(u.width, device=u.mask.device) for u in self.units]
        counts = torch.tensor([float(u.lif.activity_count) for u in self.units], dtype=torch.float64, device=parts[0].device)
        flat = distributed.all_reduce_sum(torch.cat([p.detach().double() for p in parts] + [counts]))
        sums = list(torch.split(flat[: -len(parts)], [u.width for u in self.units]))
        if bool((flat[-len(parts) :] == 0).any()):
            raise ModelError("no activity recorded")
        return [sm.float().cpu() / int(c) for sm, c in zip(sums, flat[-len(parts) :].tolist())]

    def event(self, k: int, opt: Optional[torch.optim.Optimizer]) -> Dict[str, Any]:
        """Prune event ``k`` of ``n_events``: rank by activity, regrow by |dL/dgamma|."""
        cfg = self.cfg
        progress = k / self.n_events
        density = cosine_density(progress, cfg.density, cfg.ramp)
        act = self.activity()
        if cfg.normalize:
            act = [a / a[u.mask.cpu() == 1].mean().clamp_min(1e-12) for a, u in zip(act, self.units)]
        masks, reserved = select(act, density, self.minimums)
        n_keep = int(sum(int(m.sum()) for m in masks))
        r = int(round(regrow_fraction(progress - 1.0 / self.n_events, cfg.regrow, cfg.ramp) * n_keep))
        grads = [g.cpu() / max(1, self.batches) for g in self.grad_sum]
        regrown: List[Tuple[str, int]] = []
        if r > 0:
            cand = [(float(grads[u][c]), u, c) for u in range(len(masks)) for c in range(len(masks[u])) if masks[u][c] == 0]
            drop = [(float(act[u][c]), u, c) for u in range(len(masks)) for c in range(len(masks[u])) if masks[u][c] == 1 and not reserved[u][c]]
            cand.sort(key=lambda v: (-v[0], v[1], v[2]))
            drop.sort(key=lambda v: (v[0], v[1], v[2]))
            r = min(r, len(cand), len(drop))
            for (_, u, c), (_, ud, cd) in zip(cand[:r], drop[:r]):
                masks[u][c] = 1.0
                masks[ud][cd] = 0.0
                regrown.append((self.units[u].name, c))
        changes = set_masks(self.model, distributed.broadcast(masks), opt)
        # regrown: swaps made by |dL/dgamma| (a pruned-by-activity channel kept instead of a kept
        # one); revived_now: channels live after this event that were pruned before it
        row = {"event": k, "density_target": round(density, 6), "kept": n_keep, "regrown": len(regrown),
               "pruned_now": changes["pruned"], "revived_now": changes["revived"],
               "per_layer": {u.name: int(m.sum()) for u, m in zip(self.units, masks)},
               "mean_activity": {u.name: round(float(a.mean()), 6) for u, a in zip(self.units, act)}}
        self.events.append(row)
        self.reset()
        return row

    def close(self) -> None:
        for u in self.units:
            u.lif.record = False
            u.lif.reset_activity()


def train_masked(model: ConvSNN, data: ImageData, cfg: ScaConfig, pruner: Optional[ScaPruner] = None,
                 progress: Progress = None) -> Dict[str, Any]:
    """Train the masked network for ``cfg.epochs`` with mask hygiene after every step; with a
    ``pruner``, SCA's prune events happen ``prunes_per_epoch`` times per epoch."""
    n_batches = (len(data.x_train) + cfg.batch_size - 1) // cfg.batch_size
    every = max(1, n_batches // cfg.prunes_per_epoch)
    state = {"step": 0, "event": 0}
    total_events = cfg.epochs * cfg.prunes_per_epoch

    def after_step(opt: torch.optim.Optimizer) -> None:
        remask(model, opt)
        state["step"] += 1
        in_epoch = (state["step"] - 1) % n_batches + 1
        if pruner is not None and in_epoch % every == 0 and in_epoch // every <= cfg.prunes_per_epoch and state["event"] < total_events:
            state["event"] += 1
            pruner.event(state["event"], opt)

    record = fit(model, data, cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, progress=progress,
                 before_step=pruner.accumulate_grad if pruner is not None else None, after_step=after_step, **cfg.opt_kw())
    return record


def finetune(small: ConvSNN, data: ImageData, cfg: ScaConfig) -> Optional[Dict[str, Any]]:
    """Fine-tune the shrunk network for ``cfg.finetune_epochs``. With ``cfg.finetune_select``
    the score on ``data.x_test`` (give it a validation split) is read after every epoch and the
    best epoch's weights are kept (epoch 0: the shrunk network as it came): the fine-tuning
    length is chosen on validation data, per run."""
    if not cfg.finetune_epochs:
        return None
    best = {"epoch": 0, "score": accuracy(small, data.x_test, data.y_test) if cfg.finetune_select else 0.0,
            "state": {k: v.clone() for k, v in small.state_dict().items()} if cfg.finetune_select else None}
    scores: List[float] = []

    def after_epoch(epoch: int, _opt: torch.optim.Optimizer) -> None:
        if not cfg.finetune_select:
            return
        sc = accuracy(small, data.x_test, data.y_test)
        scores.append(sc)
        if sc > best["score"]:
            best.update(epoch=epoch, score=sc, state={k: v.clone() for k, v in small.state_dict().items()})

    rec = fit(small, data, cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=cfg.batch_size, seed=cfg.seed + 1,
              after_epoch=after_epoch, **cfg.opt_kw())
    if cfg.finetune_select:
        small.load_state_dict(best["state"])
        rec.update(selected_epoch=best["epoch"], selection_scores=[round(v, 6) for v in scores])
    return rec


# ----------------------------------------------------------------------------- the methods


METHODS = ("sca", "bn-scale", "random")


def prune_channels(model: ConvSNN, data: ImageData, cfg: ScaConfig, method: str = "sca", progress: Progress = None,
                   stage: Optional[Callable[[str], None]] = None) -> Tuple[ConvSNN, Dict[str, Any]]:
    """Prune a trained ``model`` to ``cfg.density`` of its prunable channels with ``method``
    (``sca``: during ``cfg.epochs`` of training; ``random``: once, before the same epochs of
    masked training; ``bn-scale``: Network Slimming, the same epochs of training with an L1
    penalty on the BatchNorm gammas, then once by |gamma|), shrink it physically and fine-tune. Returns (shrunk model,
    record). ``model`` is changed in place (it ends masked). Every accuracy in the record is
    on ``data.x_test``: give it the ``dev`` part of ``convtrain.holdout`` and those are
    validation scores, the test images never reach this function."""
    if method not in METHODS:
        raise ModelError("method %r is not one of %s" % (method, ", ".join(METHODS)))
    say = stage or (lambda _m: None)
    t0 = time.time()
    dense_acc = accuracy(model, data.x_test, data.y_test)
    mins = [layer_minimum(u.width, cfg) for u in units(model)]
    pruner = None
    if method == "bn-scale":  # Network Slimming: sparsity training, prune by |gamma|, fine-tune
        say("sparsity training, L1 %g on the BatchNorm gammas (%d epochs)" % (cfg.l1, cfg.epochs))
        training = fit(model, data, cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, progress=progress,
                       before_step=l1_on_gamma(model, cfg.l1), **cfg.opt_kw())
        set_masks(model, distributed.broadcast(select(bn_scale_scores(model), cfg.density, mins)[0]))
    else:
        if method == "sca":
            pruner = ScaPruner(model, cfg, cfg.epochs * cfg.prunes_per_epoch)
        else:
            set_masks(model, distributed.broadcast(select(random_scores(model, cfg.seed), cfg.density, mins)[0]))
        say("training with %s pruning (%d epochs)" % (method, cfg.epochs))
        training = train_masked(model, data, cfg, pruner, progress)
    if pruner is not None:
        pruner.close()
    masked_logits = predict(model, data.x_test)
    masked_acc = float((masked_logits.argmax(1) == data.y_test).float().mean())
    say("shrinking")
    small = shrink(model).to(next(model.parameters()).device)
    shrunk_logits = predict(small, data.x_test)
    shrunk_acc = float((shrunk_logits.argmax(1) == data.y_test).float().mean())
    if cfg.finetune_epochs:
        say("fine-tuning the shrunk network (%d epochs)" % cfg.finetune_epochs)
    tuned = finetune(small, data, cfg)
    final_acc = accuracy(small, data.x_test, data.y_test)
    record = {
        "method": method,
        "config": asdict(cfg),
        "channels": kept(model),
        "accuracy": {"dense": dense_acc, "masked": masked_acc, "shrunk": shrunk_acc, "final": final_acc},
        "shrink_exact": bool(torch.equal(masked_logits, shrunk_logits)),
        "max_logit_difference": float((masked_logits - shrunk_logits).abs().max()),
        "training": training,
        "finetune": tuned,
        "scored_on": data.name,
        "events": pruner.events if pruner is not None else [],
        "regrowth": regrowth_summary(pruner.events if pruner is not None else []),
        "seconds": round(time.time() - t0, 3),
    }
    return small, record
