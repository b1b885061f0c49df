"""Per-image host work (loading, detecting a region, blanking, preprocessing) spread over threads, one image
per thread with single-threaded tensor ops.

Test images are small: an op on one of them splits across torch's threads for less work than the split
costs, and with another process on the cores each op waits for the slowest thread (3 x slower measured on
2 cores). Whole images per thread use the same cores without that wait.

Much of MONAI's per-image work is Python that holds the GIL, so threads reach about 1.5 cores of 2.
``process_map`` runs the images in forked worker processes instead (540 Br35H test images blanked outside
the head and prepared: 4.3 s on two threads, 3.3 s on two processes): a worker is a copy of this process
made at the call, so the function needs no pickling, and it runs numpy, PIL and one-thread torch only, with
side effects confined to files (the store's entries, the host memo's masks). Its results come back pickled
(tensors as numpy arrays); anything it changes in memory stays in the worker. The workers exit on their own
once the map is done; they die quietly on SIGTERM (the flow's process raises on it, Prefect's handler). They
are forked with SIGTERM blocked, and unblock it once they have reset its handler: a SIGTERM that arrived in
between would otherwise be caught by the parent's handler and then dropped, and the worker would wait on the
pool's queue forever while ``terminate`` waited for it.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

MIN_FORKED_ITEMS = 64  # fewer: starting the workers costs more than it saves
_forking = threading.Lock()  # one forked map at a time: the workers find their job in a module global
_job: tuple[Callable, list] | None = None


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


@contextmanager
def process_map(workers: int | None = None) -> Iterator[Callable[[Callable, Iterable], Iterator]]:
    """Like image_map, over `workers` forked processes (default: torch's thread count). Tensors in a result
    come back as plain tensors (a MetaTensor's metadata stays behind). Falls back to image_map's threads for
    few items, one worker, a platform without fork, or while another process_map runs."""
    import torch

    count = max(1, workers or torch.get_num_threads())
    with image_map(count) as threaded:
        def each(function: Callable, items: Iterable) -> Iterator:
            items = list(items)
            if count < 2 or len(items) < MIN_FORKED_ITEMS or "fork" not in multiprocessing.get_all_start_methods() \
                    or not _forking.acquire(blocking=False):
                yield from threaded(function, items)
                return
            try:
                yield from _forked(function, items, count)
            finally:
                _forking.release()

        yield each


def _forked(function: Callable, items: list, workers: int) -> Iterator:
    global _job
    _job = (function, items)
    pool = _start_pool(workers)
    try:
        chunk = max(1, len(items) // (workers * 8))
        yield from (_from_wire(result) for result in pool.imap(_run_one, range(len(items)), chunk))
    except BaseException:  # a worker's error, or the caller stopped early: end the workers now
        pool.terminate()
        raise
    else:
        pool.close()  # the workers finish their loop and exit: no signal reaches them
    finally:
        pool.join()
        _job = None


def _start_pool(workers: int):
    """A fork pool whose workers start with SIGTERM blocked (the mask is inherited; the pool's own threads,
    started here too, keep it blocked, so the parent's SIGTERM goes to its other threads as before)."""
    with sigterm_blocked():
        return multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start)


@contextmanager
def sigterm_blocked() -> Iterator[None]:
    """SIGTERM blocked in the calling thread meanwhile (a signal sent then waits, and arrives after)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_start() -> None:
    """A worker ends on SIGTERM at once: it inherits the parent's handlers (Prefect's raises an exception that
    would print a traceback into the flow's log), and its work is the parent's to report. A SIGTERM sent
    before this point is pending, and ends the worker when it is unblocked."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _one_thread()


def _run_one(i: int):
    function, items = _job
    return _to_wire(function(items[i]))


def _to_wire(value):
    """Tensors as numpy arrays (no shared-memory handles between the processes), in tuples, lists and dicts."""
    import torch

    return _each_leaf(value, lambda x: _Tensor(x.detach().cpu().as_subclass(torch.Tensor).numpy())
                      if isinstance(x, torch.Tensor) else x)


def _from_wire(value):
    import torch

    return _each_leaf(value, lambda x: torch.from_numpy(x.array) if isinstance(x, _Tensor) else x)


def _each_leaf(value, change: Callable):
    if isinstance(value, (tuple, list)):
        return type(value)(_each_leaf(v, change) for v in value)
    if isinstance(value, dict):
        return {k: _each_leaf(v, change) for k, v in value.items()}
    return change(value)


class _Tensor:
    """A tensor's values on their way back from a worker."""

    def __init__(self, array):
        self.array = array
