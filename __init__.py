"""spikeedge: spiking neural networks from the workstation to edge boards.

The repository root is this package. Subpackages follow the flow of a model:
``offline`` (torch, workstation) builds, prunes and quantizes; ``runtime`` (numpy, board)
loads the int8 bundle and runs it; ``deploy`` takes bundles to boards; ``tasks`` holds the
data sets and metrics both sides share; ``cli`` is the ``spikeedge`` command.

From Python (notebooks, scripts): ``import spikeedge.api as se`` -- build, prune (LNP, SCA),
train, quantize, save, open a session and step it; a runnable walk-through in ``docs/api.md``.
"""

__version__ = "0.1.0"
