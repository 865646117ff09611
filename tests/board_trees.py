"""The supported boards and their fixture trees (``tests/fixtures/boards/<board>/``), shared by
tests/test_boards.py and tests/test_board_detect.py. A new board goes into ``BOARDS`` here."""

from __future__ import annotations

import shutil
from pathlib import Path


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "boards"
BOARDS = ["jetson-agx-orin", "jetson-nano", "jetson-orin-nano", "jetson-orin-nx", "jetson-xavier-nx", "rpi4", "rpi5", "x86-dev"]


def tree(tmp_path: Path, board: str) -> Path:
    """A private copy of a fixture tree, to edit."""
    return Path(shutil.copytree(str(FIXTURES / board), str(tmp_path / board)))
