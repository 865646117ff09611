"""The board: what it is (profiles and detection), what it draws (power meters, the sampler), and
the environment record of a run. Standard library (plus numpy where used) and ``spikeedge.errors``
only: never torch, ``offline``, ``runtime``, ``deploy`` or ``results``.
"""
