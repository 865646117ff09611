"""One SCA run on a tiny digits VGG, recording what SCA decided at every prune event.

``run()`` in one process is the reference; ``python -m torch.distributed.run --nproc-per-node 2
tests/ddp_worker.py OUT ARCH`` runs the same under torchrun (gloo), each rank writing what it saw
to ``OUT/rank<r>.pt`` (``tests/test_sca_ddp.py`` compares them).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

# 97 training images in global batches of 32: three full batches and a tail of one image,
# which under 2 ranks leaves rank 1 an empty shard (the edge case of the split)
N_TRAIN, N_TEST, BATCH = 97, 64, 32


def run(arch: str = "vgg") -> Dict[str, Any]:
    from spikeedge.offline import sca
    from spikeedge.offline.convsnn import ConvConfig, ConvSNN
    from spikeedge.offline.convtrain import ImageData
    from spikeedge.tasks.images import load_digits_split

    torch.set_num_threads(1)
    xtr, ytr, xte, yte = load_digits_split(seed=0)
    t = lambda a: torch.as_tensor(a[:, None])  # noqa: E731
    data = ImageData("digits", t(xtr[:N_TRAIN]), torch.as_tensor(ytr[:N_TRAIN]), t(xte[:N_TEST]), torch.as_tensor(yte[:N_TEST]))
    if arch == "vgg":  # 22 prunable channels
        model = ConvSNN(ConvConfig(in_size=8, plan=[4, 8, "M", 8, 6, "M"], seed=0))
    else:  # 14 prunable (block-internal) channels
        model = ConvSNN(ConvConfig(in_size=8, arch="resnet", plan=[4, 8], inner=[6, 8], seed=0))
    # 2 epochs x 2 events; regrowth 0.3 so that it acts at the first events
    cfg = sca.ScaConfig(density=0.5, epochs=2, finetune_epochs=1, prunes_per_epoch=2, regrow=0.3, batch_size=BATCH, seed=0)
    seen: Dict[str, List[Any]] = {"activity": [], "grads": [], "masks": []}
    activity, event = sca.ScaPruner.activity, sca.ScaPruner.event

    def logged_activity(self: Any) -> List[torch.Tensor]:
        out = activity(self)
        seen["activity"].append([a.clone() for a in out])
        return out

    def logged_event(self: Any, k: int, opt: Any) -> Dict[str, Any]:
        seen["grads"].append([g.cpu() / max(1, self.batches) for g in self.grad_sum])
        row = event(self, k, opt)
        seen["masks"].append([u.mask.clone() for u in self.units])
        return row

    sca.ScaPruner.activity, sca.ScaPruner.event = logged_activity, logged_event  # type: ignore[method-assign]
    try:
        small, rec = sca.prune_channels(model, data, cfg)
    finally:
        sca.ScaPruner.activity, sca.ScaPruner.event = activity, event  # type: ignore[method-assign]
    return {**seen, "state": {k: v.clone() for k, v in small.state_dict().items()},
            "events": rec["events"], "accuracy": rec["accuracy"], "losses": rec["training"]["losses"],
            "data_parallel": rec["training"].get("data_parallel")}


if __name__ == "__main__":
    from spikeedge.offline import distributed

    with distributed.session("cpu") as ctx:
        result = run(sys.argv[2])
        torch.save(result, Path(sys.argv[1]) / ("rank%d.pt" % ctx.rank))
