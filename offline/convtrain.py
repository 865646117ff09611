"""Training and scoring convolutional SNNs: BPTT with the surrogate spike, cross-entropy on the
time-averaged output, Adam (or SGD with momentum, as the SCA paper) with a cosine learning-rate
decay.

Data: the image tasks of ``tasks/images.py`` as (n, 1, H, W) tensors, always on the fixed split
(seed 0: MNIST 8,000 train / 2,000 test; digits 1,346 / 451; ``mnist-clutter``: the MNIST split
cluttered, ``tasks.images.clutter``), whatever the model seed, so that models of different seeds
are scored on the same test images. ``holdout`` carves a validation split out of the training
images for every choice an experiment makes; it hands the test images back separately, so the
training and pruning code can be given data that does not contain them at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from ..errors import DataError
from . import distributed
from .convsnn import ConvConfig, ConvSNN

Progress = Optional[Callable[[int, int, str], None]]
CONV_TASKS = ("mnist", "digits", "mnist-clutter")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class ImageData:
    name: str
    x_train: torch.Tensor  # (n, C, H, W) float32
    y_train: torch.Tensor  # (n,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int = 10

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load_images(task: str, data: Optional[str] = None) -> ImageData:
    """The fixed split of an image task as tensors."""
    from ..tasks.images import load_digits_split, load_mnist_clutter_split, load_mnist_split

    if task == "mnist":
        xtr, ytr, xte, yte = load_mnist_split(data, seed=0)
    elif task == "mnist-clutter":
        xtr, ytr, xte, yte = load_mnist_clutter_split(data, seed=0)
    elif task == "digits":
        xtr, ytr, xte, yte = load_digits_split(seed=0)
    else:
        raise DataError("task %r: convolutional SNNs train on %s" % (task, " or ".join(CONV_TASKS)))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[:, None], dtype=np.float32))

    return ImageData(task, t(xtr), torch.as_tensor(ytr), t(xte), torch.as_tensor(yte))


def holdout(data: ImageData, n_val: int, seed: int = 0) -> Tuple[ImageData, Tuple[torch.Tensor, torch.Tensor]]:
    """Split ``data`` for an experiment: ``(dev, (x_test, y_test))``. ``dev`` trains on the
    training images less ``n_val`` of them (stratified, ``RandomState(seed)``) and holds those
    ``n_val`` validation images in its ``x_test``/``y_test`` slots, so every score the training
    and pruning code computes on it is a validation score; the test images come back apart, to
    be used once per reported number."""
    from ..tasks.images import _stratified_test_mask

    y = data.y_train.numpy()
    if not 0 < n_val < len(y):
        raise DataError("holdout: n_val must be in 1..%d, got %d" % (len(y) - 1, n_val))
    val = torch.as_tensor(_stratified_test_mask(y, n_val / len(y), seed))
    dev = ImageData(data.name + "/val", data.x_train[~val], data.y_train[~val], data.x_train[val], data.y_train[val], data.n_classes)
    return dev, (data.x_test, data.y_test)


def config_for(data: ImageData, **kw: Any) -> ConvConfig:
    c, h, _ = data.shape
    return ConvConfig(in_channels=c, in_size=h, n_classes=data.n_classes, **kw)


@torch.no_grad()
def predict(model: ConvSNN, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``x`` (on the CPU) in eval mode (BatchNorm running statistics), computed on
    the model's device. Under torchrun every rank computes all of them (the models are equal)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(x[i : i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def accuracy(model: ConvSNN, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


class ConvFloatStepper:
    """A float conv SNN behind the ``start``/``step`` interface of ``tasks.protocols``: one
    ``step`` runs all T time steps of the image (``steps_per_inference`` is 1) and returns the
    time-averaged logits."""

    steps_per_inference = 1

    def __init__(self, model: ConvSNN) -> None:
        self.model = model
        self.shape = (model.cfg.in_channels, model.cfg.in_size, model.cfg.in_size)

    def start(self, batch: int, first_frame: Optional[np.ndarray] = None) -> None:
        self.batch = batch

    def step(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).reshape((self.batch,) + self.shape)
        return predict(self.model, torch.from_numpy(np.ascontiguousarray(x))).double().numpy()


def fit(
    model: ConvSNN,
    data: ImageData,
    epochs: int,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: Progress = None,
    after_step: Optional[Callable[[torch.optim.Optimizer], None]] = None,
    after_epoch: Optional[Callable[[int, torch.optim.Optimizer], None]] = None,
    before_step: Optional[Callable[[], None]] = None,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> Dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs. Hooks (used by SCA): ``before_step()`` after the
    backward pass, ``after_step(opt)`` after every optimiser step, ``after_epoch(epoch, opt)``
    after every epoch (1-based). ``optimizer``: ``adam`` or ``sgd`` (with ``momentum``, Nesterov
    off, as the SCA paper's); either with ``weight_decay`` and a cosine decay of the rate to 0
    over all steps. Returns the training record.

    Under torchrun (``offline/distributed.py``) ``batch_size`` is the global batch: every rank
    draws the same order and trains on its shard of each global batch, wrapped in DDP with
    global-batch BatchNorm, so the updates are those of one process up to float rounding.
    Batches go to the model's device."""
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    if optimizer not in OPTIMIZERS:
        raise DataError("optimizer %r is not one of %s" % (optimizer, ", ".join(OPTIMIZERS)))
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(data.x_train)
    n_batches = max(1, (n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * n_batches))
    losses = []
    dev = next(model.parameters()).device
    ranks = distributed.world()
    model.train()
    with distributed.data_parallel(model) as net:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            total, correct = 0.0, 0
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                mine = distributed.shard(idx)
                y = data.y_train[mine].to(dev)
                out = net(data.x_train[mine].to(dev))
                loss = distributed.batch_loss(out, y, len(idx))
                opt.zero_grad(set_to_none=False)
                loss.backward()
                if before_step:
                    before_step()
                opt.step()
                sched.step()
                if after_step:
                    after_step(opt)
                total += loss.item() * len(idx) / n / ranks  # the ranks' parts add up to the global mean
                correct += int((out.argmax(1) == y).sum())
            if ranks > 1:
                total, correct = distributed.all_reduce_sum(torch.tensor([total, float(correct)], dtype=torch.float64)).tolist()
            losses.append(round(total, 6))
            if after_epoch:
                after_epoch(epoch + 1, opt)
            if progress:
                progress(epoch + 1, epochs, "loss %.4f, train accuracy %.3f" % (total, correct / n))
    record = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": optimizer + (" momentum %g" % momentum if optimizer == "sgd" else "") + ", cosine decay",
              "weight_decay": weight_decay, "losses": losses,
              "train_seconds": round(time.time() - t0, 3)}
    if ranks > 1:
        record["data_parallel"] = {"processes": ranks, "backend": distributed.backend(), "device": str(dev)}
    return record


def train_convsnn(data: ImageData, cfg: ConvConfig, epochs: int = 3, lr: float = 2e-3, batch_size: int = 64,
                  progress: Progress = None, device: str = "cpu", **opt: Any) -> Tuple[ConvSNN, Dict[str, Any]]:
    """Build a ``ConvSNN`` for ``data`` and train it on ``device`` (``opt``: ``fit``'s optimizer
    keywords); returns (model (on ``device``), record)."""
    model = ConvSNN(cfg).to(device)
    training = fit(model, data, epochs, lr=lr, batch_size=batch_size, seed=cfg.seed, progress=progress, **opt)
    record = {"task": data.name, "training": training, "parameters": model.n_parameters(),
              "float_metric": {"accuracy": accuracy(model, data.x_test, data.y_test)}}
    return model, record
