"""Checkpoints: an ``.npz`` of the model's tensors plus a JSON record, never a pickle.

The record carries the model kind (``model``: ``hrsnn`` or ``convsnn``) and its config (so the
checkpoint rebuilds its own model), the task and what training and pruning did. Written
atomically. ``load_checkpoint`` returns an HRSNN unless the caller asks for another kind
(``kind="convsnn"`` or ``kind="any"``), so code written for HRSNNs keeps its one-line error on a
conv checkpoint.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch

from ..runtime.bundle import write_atomic
from ..errors import ModelError
from .hrsnn import HRSNN, HrsnnConfig

RECORD_KEY = "__record__"
CHECKPOINT_VERSION = 1


KINDS = ("hrsnn", "convsnn", "folded")


def _kind(model: Any) -> str:
    from .folded import FoldedNet

    return "hrsnn" if isinstance(model, HRSNN) else "folded" if isinstance(model, FoldedNet) else "convsnn"


def save_checkpoint(model: Any, path: Union[str, Path], record: Dict[str, Any]) -> None:
    """Write ``model`` (an HRSNN, a ConvSNN, or a ``FoldedNet``: a conv SNN's inference form, what
    ``spikeedge import`` makes of a NIR graph) and its ``record`` (JSON-able) to ``path``."""
    if _kind(model) == "folded":
        from .folded import folded_to_arrays

        config, arrays = folded_to_arrays(model)
    else:
        config = model.cfg.to_dict()
        arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    doc = dict(record, model=_kind(model), config=config, checkpoint_version=CHECKPOINT_VERSION)
    arrays[RECORD_KEY] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(Path(path), buf.getvalue())


def load_checkpoint(path: Union[str, Path], kind: str = "hrsnn") -> Tuple[Any, Dict[str, Any]]:
    """Rebuild the model a checkpoint describes; ``ModelError`` (one line) if it cannot or if it
    is not of ``kind`` (``hrsnn``, ``convsnn`` or ``any``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("%s: no such checkpoint" % path)
    if not zipfile.is_zipfile(path):
        raise ModelError("%s: not a spikeedge checkpoint (not an .npz archive)" % path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        record = json.loads(arrays.pop(RECORD_KEY).tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ModelError("%s: not a spikeedge checkpoint (%s)" % (path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None
    found = record.get("model")
    if found not in KINDS or not isinstance(record.get("config"), dict):
        raise ModelError("%s: not an HRSNN checkpoint" % path if kind == "hrsnn" else "%s: not a spikeedge model checkpoint" % path)
    if kind != "any" and found != kind:
        names = {"hrsnn": "an HRSNN", "convsnn": "a convolutional SNN", "folded": "an imported (folded) conv SNN"}
        raise ModelError("%s: %s checkpoint, not %s one" % (path, names[found], names.get(kind, kind)))
    if found == "folded":
        from .folded import folded_from_arrays

        try:
            return folded_from_arrays(record["config"], arrays), record
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError("%s: the folded network does not match its arrays (%s)" % (path, exc)) from None
    if found == "convsnn":
        from .convsnn import ConvConfig, ConvSNN

        model: Any = ConvSNN(ConvConfig.from_dict(record["config"]))
    else:
        model = HRSNN(HrsnnConfig.from_dict(record["config"]))
        arrays = HRSNN.upgrade_state_dict(arrays)  # checkpoints from before the weights were nn.Linear modules
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    except RuntimeError as exc:
        raise ModelError("%s: tensors do not match the config (%s)" % (path, str(exc).splitlines()[0])) from None
    return model, record
