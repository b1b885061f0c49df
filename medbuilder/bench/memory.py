"""The memory of a process and everything below it, sampled in a thread.

Summed resident sizes count a page shared by several processes once in each: the store's fill and the
evaluation fork worker processes that share the parent's pages (torch, MONAI, the images read so far), so
their resident sizes add up to about twice what the machine holds. The sum of proportional set sizes
(PSS: a page shared by n processes counts 1/n in each) is what the tree holds; where the kernel gives no
PSS (another platform, or a process of another user that this one may not inspect), the resident size is taken.
"""

from __future__ import annotations

import threading

SAMPLE_S = 0.25


def tree_bytes(process) -> int:
    """Summed PSS (else RSS) of a psutil Process and its descendants, at this moment."""
    import psutil

    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += _proportional(proc)
        except psutil.Error:
            pass
    return total


def _proportional(proc) -> int:
    import psutil

    try:
        return int(proc.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):  # no PSS on this platform, or another user's process
        return int(proc.memory_info().rss)


class TreeMemory:
    """The peak of tree_bytes() while the block runs, sampled every SAMPLE_S seconds."""

    def __init__(self, pid: int):
        import psutil

        self.process, self.peak_bytes, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, tree_bytes(self.process))
            except psutil.Error:
                return
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.peak_bytes = max(self.peak_bytes, tree_bytes(self.process))  # a block shorter than one sample
        except Exception:  # noqa: BLE001 - the process may have ended: the samples stand
            pass
