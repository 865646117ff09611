"""Data sets and scores shared by the workstation and the boards (numpy only).

Everything here is generated on the spot, shipped in ``tasks/data/`` (sha256-checked) or read
from local files; nothing is downloaded.
Splits are fixed and documented in ``docs/data.md`` so that results can be reproduced.
"""

from .chaotic import lorenz, rossler
from .images import load_digits_split, load_mnist_split, read_idx
from .mackey_glass import mackey_glass, mackey_glass_series, mackey_glass_windows
from .metrics import accuracy, nrmse, smape
from .user_data import UserData, load_npz

__all__ = [
    "accuracy", "load_digits_split", "load_mnist_split", "load_npz", "lorenz",
    "mackey_glass", "mackey_glass_series", "mackey_glass_windows", "nrmse", "read_idx", "rossler", "smape",
    "UserData",
]
