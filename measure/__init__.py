"""Measurement of a model on a board: ``profile`` (per layer), ``bench`` (NeuroBench system track),
``verify`` (two forms of one model) and the static ``summary``. May import ``runtime``, ``board``
and ``tasks``; never torch or ``offline``.
"""
