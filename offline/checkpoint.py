"""Checkpoints: an ``.npz`` of the model's tensors plus a JSON record, never a pickle.

The record carries the model config (so the checkpoint rebuilds its own model), the task and
what training and pruning did. Written atomically.
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
from ..runtime.errors import ModelError
from .hrsnn import HRSNN, HrsnnConfig

RECORD_KEY = "__record__"
CHECKPOINT_VERSION = 1


def save_checkpoint(model: HRSNN, path: Union[str, Path], record: Dict[str, Any]) -> None:
    """Write ``model`` and its ``record`` (JSON-able) to ``path``."""
    doc = dict(record, model="hrsnn", config=model.cfg.to_dict(), checkpoint_version=CHECKPOINT_VERSION)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays[RECORD_KEY] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(Path(path), buf.getvalue())


def load_checkpoint(path: Union[str, Path]) -> Tuple[HRSNN, Dict[str, Any]]:
    """Rebuild the model a checkpoint describes; ``ModelError`` (one line) if it cannot."""
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
    if record.get("model") != "hrsnn" or not isinstance(record.get("config"), dict):
        raise ModelError("%s: not an HRSNN checkpoint" % path)
    model = HRSNN(HrsnnConfig.from_dict(record["config"]))
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    except RuntimeError as exc:
        raise ModelError("%s: tensors do not match the config (%s)" % (path, str(exc).splitlines()[0])) from None
    return model, record
