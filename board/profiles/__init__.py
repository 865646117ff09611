"""Board profiles: one JSON data file per supported board (``<name>.json``).

Data only; ``spikeedge.board.profile`` loads and validates them, ``spikeedge.board.detect`` tells
which one the running machine is, and ``docs/boards.md`` describes every field.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
