"""Board profiles: one JSON data file per supported board (``<name>.json``).

Data only; ``spikeedge.board.boards`` loads, validates and detects them, and ``docs/boards.md``
describes every field.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
