"""The bench's memory sampler (medbuilder/bench/memory.py): forked workers' shared pages count once in the
proportional sum, once per process in the resident one. Real processes, no mock (Linux: fork and
/proc/<pid>/smaps_rollup, as on the machines CI runs on)."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import psutil

from medbuilder.bench.memory import TreeMemory, tree_pss, tree_rss

SHARED = 200 * 2**20


def _hold(ready, done) -> None:
    _ = _hold.array.sum()  # read every page: resident in the child, still shared with the parent
    ready.set()
    done.wait(30)


def test_forked_workers_shared_pages_count_once_in_the_proportional_sum():
    _hold.array = np.ones(SHARED // 8)  # written here, before the fork
    context = multiprocessing.get_context("fork")
    done, readies = context.Event(), [context.Event(), context.Event()]
    workers = [context.Process(target=_hold, args=(ready, done)) for ready in readies]
    try:
        for worker in workers:
            worker.start()
        assert all(ready.wait(30) for ready in readies)
        me = psutil.Process(os.getpid())
        with TreeMemory(os.getpid(), pss_every_s=0.1) as memory:
            rss, pss = tree_rss(me), tree_pss(me)
        assert rss - pss > 1.5 * SHARED  # the 200 MiB counted three times in RSS, once in PSS
        assert pss > SHARED
        assert memory.peak_rss_bytes >= memory.peak_bytes > SHARED
    finally:
        done.set()
        for worker in workers:
            worker.join(10)
        del _hold.array
