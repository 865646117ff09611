"""Lyapunov Noise Pruning (LNP): task-agnostic pruning of a random HRSNN before training.

``docs/lnp.md`` gives the equations and every decision; ``loop.lnp_prune`` is the entry point.
"""

from .loop import LnpConfig, LnpResult, lnp_prune

__all__ = ["LnpConfig", "LnpResult", "lnp_prune"]
