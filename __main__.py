"""``python -m spikeedge``: the CLI, e.g. under ``torchrun --nproc-per-node 2 -m spikeedge train convsnn ...``."""

from .cli.app import console_main

if __name__ == "__main__":
    console_main()
