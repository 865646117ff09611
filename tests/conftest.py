"""Fixtures shared by several test modules."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine two threads spin and run many times slower.
    Modules that train or run torch models use it (``pytestmark``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread_pool() -> Iterator[None]:
    """Torch and numpy's BLAS on one thread each, as the CLI runs its offline commands
    (``cli.common.one_thread_pool``): on a busy two-core machine the full demo takes about a
    minute so, and several minutes with threads spinning against each other."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
