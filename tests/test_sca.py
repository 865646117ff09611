"""SCA: the activity score on a hand-made case, global ranking and the schedule, mask hygiene
under momentum, regrowth by |dL/dgamma|, and exact physical shrinking (VGG and ResNet)."""

from __future__ import annotations

import functools

import pytest
import torch

from spikeedge.offline import sca
from spikeedge.offline.convsnn import ConvConfig, ConvSNN, LifLayer
from spikeedge.offline.convtrain import ImageData, predict
from spikeedge.tasks.images import load_digits_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomize_bn(model: ConvSNN, seed: int = 0) -> None:
    """Non-trivial BatchNorm parameters and running statistics (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.5 * torch.rand(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.2 + torch.rand(n, generator=gen))


@functools.lru_cache(maxsize=None)
def _split():
    return load_digits_split(seed=0)


def digits(n_train: int = 128, n_test: int = 64) -> ImageData:
    xtr, ytr, xte, yte = _split()
    t = lambda a: torch.as_tensor(a[:, None])  # noqa: E731
    return ImageData("digits", t(xtr[:n_train]), torch.as_tensor(ytr[:n_train]), t(xte[:n_test]), torch.as_tensor(yte[:n_test]))


def small_vgg(seed: int = 0) -> ConvSNN:
    return ConvSNN(ConvConfig(in_size=8, plan=[4, 8, "M", 8, 6, "M"], seed=seed))


def on_grid(model: ConvSNN, step: float = 2.0**-7) -> None:
    """Weights on a coarse binary grid: every sum of products is exact in float32 whatever its
    order, so masked and shrunk networks must agree bit for bit, not only to rounding."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.round(m.weight * 3 / step) * step)
                if m.bias is not None:
                    m.bias.copy_(torch.round(m.bias / step) * step)


# ----------------------------------------------------------------------------- the score


def test_activity_score_hand_made() -> None:
    layer = LifLayer(ConvConfig(time_steps=2, tau=2.0))  # decay 0.5, threshold 1
    layer.record = True
    cur = torch.zeros(2, 1, 2, 1, 2)  # (T, B, C, H, W): channel 0 gets 0.6, channel 1 gets 1.2
    cur[:, :, 0] = 0.6
    cur[:, :, 1] = 1.2
    layer(cur.reshape(2, 2, 1, 2))
    # channel 0: mem 0.6, then 0.9 (no spike): mean of spike + |mem| = (0.6 + 0.9) / 2
    # channel 1: spike at both steps, mem reset to 0: mean 1
    assert layer.activity().tolist() == pytest.approx([0.75, 1.0])
    layer(torch.zeros(2, 2, 1, 2))  # a second batch of silence halves the running mean
    assert layer.activity().tolist() == pytest.approx([0.375, 0.5])
    layer.reset_activity()
    with pytest.raises(Exception):
        layer.activity()


# ----------------------------------------------------------------------------- ranking and schedule


def test_global_ranking_with_per_layer_minimum() -> None:
    scores = [torch.tensor([0.9, 0.1, 0.8, 0.7]), torch.tensor([0.05, 0.02, 0.5, 0.6])]
    masks, reserved = sca.select(scores, 0.5, [1, 1])  # 4 of 8 channels
    assert masks[0].tolist() == [1, 0, 1, 1] and masks[1].tolist() == [0, 0, 0, 1]
    masks, reserved = sca.select(scores, 0.25, [1, 2])  # 2 of 8, but the minimums need 3
    assert masks[0].tolist() == [1, 0, 0, 0] and masks[1].tolist() == [0, 0, 1, 1]
    assert reserved[1].tolist() == [False, False, True, True]


def test_cosine_schedule() -> None:
    assert sca.cosine_density(0.0, 0.25, 2 / 3) == 1.0
    assert sca.cosine_density(1 / 3, 0.25, 2 / 3) == pytest.approx(0.625)
    assert sca.cosine_density(2 / 3, 0.25, 2 / 3) == pytest.approx(0.25)
    assert sca.cosine_density(1.0, 0.25, 2 / 3) == pytest.approx(0.25)
    ds = [sca.cosine_density(k / 12, 0.1, 2 / 3) for k in range(13)]
    assert all(a >= b for a, b in zip(ds, ds[1:]))
    assert sca.regrow_fraction(0.0, 0.1, 0.5) == 0.1 and sca.regrow_fraction(0.5, 0.1, 0.5) == pytest.approx(0.0)


def test_minimum_width() -> None:
    cfg = sca.ScaConfig(min_channels=2, min_fraction=0.05)
    assert [sca.layer_minimum(w, cfg) for w in (1, 8, 64, 100)] == [1, 2, 4, 5]


# ----------------------------------------------------------------------------- mask hygiene


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_channels_stay_dead_under_momentum(optimizer: str) -> None:
    model = small_vgg()
    data = digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer == "adam" else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def steps(n: int) -> None:
        for i in range(n):
            loss = torch.nn.functional.cross_entropy(model(data.x_train[i * 8 : (i + 1) * 8]), data.y_train[i * 8 : (i + 1) * 8])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sca.remask(model, opt)

    steps(3)  # momentum builds up for every weight
    unit = sca.units(model)[0]
    masks = [torch.ones(u.width) for u in sca.units(model)]
    masks[0][[0, 3, 5]] = 0.0
    sca.set_masks(model, masks, opt)
    filters = unit.conv.weight.detach().clone()
    steps(4)
    dead = [0, 3, 5]
    assert not unit.bn.weight[dead].any() and not unit.bn.bias[dead].any()  # gamma, beta stay 0
    assert torch.equal(unit.conv.weight[dead], filters[dead])  # the filter does not move
    assert not torch.equal(unit.conv.weight[[1, 2]], filters[[1, 2]])  # the live ones do
    for p in (unit.bn.weight, unit.bn.bias):
        for v in opt.state[p].values():
            if torch.is_tensor(v) and v.shape == p.shape:
                assert not v[dead].any()  # momentum cleared
    spikes = []
    h = unit.lif.register_forward_hook(lambda _m, _i, out: spikes.append(out))
    model.train()
    model(data.x_train[:32])
    h.remove()
    assert not spikes[0][:, dead].any() and spikes[0][:, [1, 2]].any()


def test_masked_channel_still_gets_a_gamma_gradient() -> None:
    """The mask passes gradients straight through: dL/dgamma of a pruned channel is the
    gradient it would see if revived (with gamma = 0), SCA's regrowth score."""
    model = small_vgg()
    data = digits()
    masks = [torch.ones(u.width) for u in sca.units(model)]
    masks[0][[0, 1]] = 0.0
    sca.set_masks(model, masks)
    torch.nn.functional.cross_entropy(model(data.x_train[:64]), data.y_train[:64]).backward()
    g = sca.units(model)[0].bn.weight.grad
    assert g[[0, 1]].abs().min() > 0
    assert model.features[0].conv.weight.grad is not None


# ----------------------------------------------------------------------------- regrowth


def test_regrowth_picks_the_largest_gamma_gradients() -> None:
    model = small_vgg()
    cfg = sca.ScaConfig(density=0.5, regrow=0.25, min_channels=1, min_fraction=0.0, ramp=1.0)
    pruner = sca.ScaPruner(model, cfg, n_events=4)
    us = pruner.units  # widths 8, 8, 6 -> 22 channels
    acts = [torch.arange(u.width, dtype=torch.float32) + 10 * i for i, u in enumerate(us)]
    for u, a in zip(us, acts):
        u.lif.activity_sum, u.lif.activity_count = a.clone(), 1
    grads = [torch.zeros(u.width) for u in us]
    grads[0][1] = 5.0  # low activity, largest gradient
    grads[1][0] = 4.0
    grads[0][2] = 1.0
    pruner.grad_sum, pruner.batches = grads, 1
    row = pruner.event(1, None)
    # density at event 1 of 4 (ramp 1): 0.5 + 0.5 * (1 + cos(pi/4)) / 2 = 0.927 -> 20 of 22 kept
    keep = int(round(sca.cosine_density(0.25, 0.5, 1.0) * 22))
    n_regrow = int(round(sca.regrow_fraction(0.0, 0.25, 1.0) * keep))
    assert row["kept"] == keep and n_regrow >= 2 and row["regrown"] == 2  # only 2 pruned candidates
    assert us[0].mask[1] == 1 and us[0].mask[0] == 1  # 1 (grad 5) regrown; 0 never cut... see below
    # by activity alone channels 0 and 1 of the first unit were cut; both came back by gradient
    # (they were the only two candidates), and the two least active kept channels went instead
    assert int(sum(u.mask.sum() for u in us)) == keep
    assert us[0].mask[2] == 0 and us[0].mask[3] == 0


def test_regrowth_order_among_many_candidates() -> None:
    model = small_vgg()
    cfg = sca.ScaConfig(density=0.5, regrow=0.2, min_channels=1, min_fraction=0.0, ramp=0.25)
    pruner = sca.ScaPruner(model, cfg, n_events=4)
    us = pruner.units
    for i, u in enumerate(us):
        u.lif.activity_sum, u.lif.activity_count = torch.arange(u.width, dtype=torch.float32) + 10 * i, 1
    grads = [torch.zeros(u.width) for u in us]
    grads[0][:4] = torch.tensor([1.0, 3.0, 2.0, 0.5])  # candidates (the 11 least active are cut)
    grads[1][0] = 2.5
    pruner.grad_sum, pruner.batches = grads, 1
    row = pruner.event(1, None)  # density at the target already (ramp 0.25): 11 of 22 kept; regrow round(0.2 * 11) = 2
    assert row["kept"] == 11 and row["regrown"] == 2
    assert us[0].mask[1] == 1 and us[1].mask[0] == 1  # gradients 3.0 and 2.5, not 2.0 or 1.0
    assert us[0].mask[2] == 0 and us[0].mask[0] == 0


# ----------------------------------------------------------------------------- shrinking


@pytest.mark.parametrize("arch", ["vgg", "resnet", "resnet-2-blocks"])
def test_shrinking_is_exact(arch: str) -> None:
    cfg = {"vgg": ConvConfig(in_size=8, plan=[4, 8, "M", 8, 6, "M"], seed=1), "resnet": ConvConfig(arch="resnet", in_size=8, plan=[6, 8], seed=1),
           "resnet-2-blocks": ConvConfig(arch="resnet", in_size=8, plan=[6, 8], blocks=2, stem_stride=2, seed=1)}[arch]
    model = ConvSNN(cfg)
    randomize_bn(model, seed=1)
    on_grid(model)
    gen = torch.Generator().manual_seed(0)
    masks = [(torch.rand(u.width, generator=gen) < 0.5).float() for u in sca.units(model)]
    for m in masks:
        m[0] = 1.0
    sca.set_masks(model, masks)
    small = sca.shrink(model)
    assert [u.width for u in sca.units(small)] == [int(m.sum()) for m in masks]
    assert small.n_parameters() < model.n_parameters()
    x = digits(n_test=200).x_test  # pixels k/16: exact in binary
    a, b = predict(model, x), predict(small, x)
    assert torch.equal(a, b)  # identical outputs, not merely close
    assert a.std() > 0
    # and the shrunk network is dense: every mask is 1
    assert all(bool(u.mask.all()) for u in sca.units(small))


def test_shrink_refuses_an_empty_layer() -> None:
    model = small_vgg()
    masks = [torch.ones(u.width) for u in sca.units(model)]
    masks[1].zero_()
    sca.set_masks(model, masks)
    with pytest.raises(Exception, match="no channel"):
        sca.shrink(model)


def test_prune_channels_end_to_end_small() -> None:
    data = digits(n_train=128, n_test=64)
    for method in sca.METHODS:
        model = small_vgg()
        cfg = sca.ScaConfig(density=0.5, epochs=2, finetune_epochs=1, prunes_per_epoch=2, batch_size=32)
        small, rec = sca.prune_channels(model, data, cfg, method=method)
        assert rec["channels"]["kept"] == int(round(0.5 * 22)) and rec["method"] == method
        assert rec["accuracy"]["masked"] == rec["accuracy"]["shrunk"]
        assert rec["max_logit_difference"] < 1e-5
        assert [u.width for u in sca.units(small)] == list(rec["channels"]["per_layer"][u.name][0] for u in sca.units(model))
        if method == "sca":
            assert len(rec["events"]) == 4 and rec["events"][-1]["density_target"] == pytest.approx(0.5)
            assert rec["events"][0]["density_target"] == pytest.approx(sca.cosine_density(0.25, 0.5, 2 / 3), abs=1e-6)


def test_l1_on_gamma_adds_the_subgradient_to_the_prunable_gammas_only() -> None:
    model = small_vgg()
    randomize_bn(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    sca.l1_on_gamma(model, 0.25)()
    prunable = {id(u.bn.weight) for u in sca.units(model)}
    for p in model.parameters():
        expected = 0.25 * torch.sign(p.detach()) if id(p) in prunable else torch.zeros_like(p)
        assert torch.equal(p.grad, expected)
    assert len(prunable) == 3  # the stem's BatchNorm is not prunable


def test_bn_scale_sparsity_training_pulls_the_gammas_towards_zero() -> None:
    """Network Slimming's baseline trains with the L1 term before ranking |gamma|: with it the
    prunable gammas end smaller than the same training without it (same seed, same data)."""
    data = digits(n_train=256, n_test=32)
    ends = {}
    for strength in (0.0, 0.1):
        model = small_vgg()
        cfg = sca.ScaConfig(density=0.5, epochs=2, finetune_epochs=0, batch_size=32, l1=strength, lr=2e-2)  # Adam moves a gamma <= lr per step
        sca.prune_channels(model, data, cfg, method="bn-scale")
        ends[strength] = torch.cat([u.bn.weight.detach().abs() for u in sca.units(model)]).mean().item()
    assert ends[0.1] < 0.85 * ends[0.0]  # measured 0.80: Adam moves each gamma by at most lr per step


def test_layer_normalized_ranking_option() -> None:
    """``normalize``: activity relative to the layer's mean, so a quiet layer is not emptied."""
    model = small_vgg()
    for normalize, expect_quiet_layer in ((False, 1), (True, 4)):
        for u in sca.units(model):
            u.mask.fill_(1.0)
        cfg = sca.ScaConfig(density=0.5, regrow=0.0, min_channels=1, min_fraction=0.0, ramp=0.25, normalize=normalize)
        pruner = sca.ScaPruner(model, cfg, n_events=4)
        us = pruner.units  # widths 8, 8, 6
        for i, u in enumerate(us):
            scale = 0.01 if i == 0 else 1.0  # the first layer is quiet
            u.lif.activity_sum, u.lif.activity_count = scale * (1 + torch.arange(u.width, dtype=torch.float32)), 1
        pruner.event(1, None)
        assert int(us[0].mask.sum()) == expect_quiet_layer
        pruner.close()


# ----------------------------------------------------------------------------- validation, regrowth record


def test_holdout_carves_the_validation_split_from_the_training_images_only() -> None:
    from spikeedge.offline.convtrain import holdout

    data = digits(n_train=400, n_test=64)
    dev, (x_test, y_test) = holdout(data, 100, seed=0)
    assert len(dev.x_train) + len(dev.x_test) == 400 and abs(len(dev.x_test) - 100) <= 5  # stratified per class
    assert torch.equal(x_test, data.x_test) and torch.equal(y_test, data.y_test)  # the test split comes back untouched, apart
    rows = lambda x: {bytes(r.numpy().tobytes()) for r in x}  # noqa: E731
    train, val, pool = rows(dev.x_train), rows(dev.x_test), rows(data.x_train)
    assert not train & val and val <= pool  # validation images are training images, none of them trained on
    assert sorted(dev.y_test.unique().tolist()) == sorted(data.y_train.unique().tolist())


def test_finetune_keeps_the_epoch_best_on_validation() -> None:
    from spikeedge.offline.convtrain import accuracy

    data = digits(n_train=128, n_test=64)
    model = small_vgg()
    cfg = sca.ScaConfig(density=0.5, epochs=1, finetune_epochs=3, batch_size=32, finetune_select=True, optimizer="sgd", lr=0.05, finetune_lr=0.05)
    small, rec = sca.prune_channels(model, data, cfg, method="random")
    ft = rec["finetune"]
    assert 0 <= ft["selected_epoch"] <= 3 and len(ft["selection_scores"]) == 3
    best = max([rec["accuracy"]["shrunk"]] + ft["selection_scores"])
    assert rec["accuracy"]["final"] == pytest.approx(best) == pytest.approx(accuracy(small, data.x_test, data.y_test))
    assert ft["optimizer"].startswith("sgd")


def test_regrowth_summary_counts_swaps_and_revivals() -> None:
    events = [{"regrown": 3, "revived_now": 1}, {"regrown": 0, "revived_now": 0}, {"regrown": 5, "revived_now": 2}]
    s = sca.regrowth_summary(events)
    assert (s["swaps"], s["revivals"], s["events_with_swaps"]) == (8, 3, 2)
    assert s["swaps_per_event"] == pytest.approx(8 / 3) and s["revivals_per_event"] == pytest.approx(1.0)
    assert sca.regrowth_summary([])["swaps_per_event"] == 0.0


def test_sca_run_records_regrowth_that_swaps_channels() -> None:
    data = digits(n_train=128, n_test=32)
    cfg = sca.ScaConfig(density=0.25, epochs=2, finetune_epochs=0, prunes_per_epoch=2, batch_size=32, regrow=0.5, min_fraction=0.0)
    _, rec = sca.prune_channels(small_vgg(), data, cfg, method="sca")
    assert rec["regrowth"]["events"] == 4 and rec["regrowth"]["swaps"] == sum(e["regrown"] for e in rec["events"]) > 0


def test_clutter_is_deterministic_in_range_and_keeps_the_digit() -> None:
    from spikeedge.tasks.images import clutter

    x = _split()[0][:50]
    big = torch.nn.functional.interpolate(torch.as_tensor(x[:, None]), size=28).numpy()[:, 0]  # 28x28 digits
    a, b = clutter(big, 1), clutter(big, 1)
    assert a.shape == big.shape and a.dtype == big.dtype and (a == b).all()
    assert not (a == clutter(big, 2)).all()
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert a.sum() > 1.2 * big.sum()  # fragments and noise added
    assert clutter(big, 1, pieces=0, shift=0, noise=0.0).tolist() == big.tolist()  # nothing but the digit when turned off
