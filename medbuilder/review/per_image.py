"""Per-image host work (loading, detecting a region, blanking, preprocessing) spread over threads, one image
per thread with single-threaded tensor ops.

Test images are small: an op on one of them splits across torch's threads for less work than the split
costs, and with another process on the cores each op waits for the slowest thread (3 x slower measured on
2 cores). Whole images per thread use the same cores without that wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@contextmanager
def image_map(workers: int | None = None) -> Iterator[Callable[[Callable, Iterable], Iterator]]:
    """A `map(function, items)` (results in order) over `workers` threads (default: torch's thread count);
    torch's own thread count is 1 meanwhile and restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers or threads), initializer=_one_thread) as pool:
            yield pool.map
    finally:
        torch.set_num_threads(threads)
