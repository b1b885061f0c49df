"""The watchdog's memory sum: the O(1) counters of /proc/<pid>/status bound the proportional shares from above,
so the exact (page-table walking) sum is read only near the limit, and the kill decisions stay the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from medbuilder.protocol.tools.sandbox import MIB, UPPER_BOUND_MARGIN, _anon_bytes, _resident_bound, _tree_memory

HOLDER = """
import mmap, os, sys, time
private = bytearray(80 * 1024 * 1024)
shared = mmap.mmap(-1, 40 * 1024 * 1024, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for offset in range(0, len(shared), 4096):
    shared[offset] = 1
if os.fork() == 0:  # a child sharing both copy-on-write: proportional shares split them, the counters do not
    time.sleep(30)
print('ready', flush=True)
time.sleep(30)
"""


def _holder():
    process = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    child = psutil.Process(process.pid).children()[0].pid
    return process, [process.pid, child]


def test_the_status_counters_bound_the_proportional_shares():
    process, pids = _holder()
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        for pid in pids:
            assert _resident_bound(pid) >= _anon_bytes(pid, page)
        exact = sum(_anon_bytes(pid, page) for pid in pids)
        bound = sum(_resident_bound(pid) for pid in pids)
        assert exact >= 115 * MIB and bound > exact  # the shared block, halved between the two, and 80 MiB
        tree = dict.fromkeys(pids, 0.0)
        far = _tree_memory(tree, page, limit=bound + UPPER_BOUND_MARGIN + 8 * MIB)  # far from the limit: the bound
        near = _tree_memory(tree, page, limit=bound)  # near it: the exact sum
        assert abs(far - bound) < MIB and abs(near - exact) < MIB, (far, bound, near, exact)
    finally:
        for pid in pids[1:]:
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()


def test_a_process_that_is_gone_counts_nothing():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert _resident_bound(process.pid) == 0
