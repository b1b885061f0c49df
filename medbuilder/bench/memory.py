"""The memory of a process and everything below it, sampled in a thread.

Summed resident sizes (RSS) count a page shared by several processes once in each: the store's fill and
the evaluation fork worker processes that share the parent's pages (torch, MONAI, the images read so far),
so their resident sizes add up to far more than the machine holds. The sum of proportional set sizes (PSS:
a page shared by n processes counts 1/n in each) is what the tree holds. The kernel takes about 40 ms to
add up one torch process's PSS (``/proc/<pid>/smaps_rollup``), so PSS is sampled every few seconds and
RSS, which costs nothing, every quarter second. Where no PSS can be read (another platform, or a process
of another user), that process's RSS is counted.
"""

from __future__ import annotations

import threading
import time

SAMPLE_S = 0.25
PSS_EVERY_S = 5.0


def tree_rss(process) -> int:
    """Summed RSS of a psutil Process and its descendants."""
    return sum(_each(process, lambda proc: proc.memory_info().rss))


def tree_pss(process) -> int:
    """Summed PSS (else RSS) of a psutil Process and its descendants."""
    return sum(_each(process, _pss))


def _each(process, measure) -> list[int]:
    import psutil

    out = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            out.append(int(measure(proc)))
        except psutil.Error:
            pass
    return out


def _pss(proc) -> int:
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


class TreeMemory:
    """The peaks of tree_pss() (every `pss_every_s`) and tree_rss() (every SAMPLE_S) while the block runs."""

    def __init__(self, pid: int, pss_every_s: float = PSS_EVERY_S):
        import psutil

        self.process, self.pss_every_s = psutil.Process(pid), pss_every_s
        self.peak_bytes = self.peak_rss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        next_pss = 0.0
        while not self._stop.is_set():
            try:
                self.peak_rss_bytes = max(self.peak_rss_bytes, tree_rss(self.process))
                if time.monotonic() >= next_pss:
                    self.peak_bytes = max(self.peak_bytes, tree_pss(self.process))
                    next_pss = time.monotonic() + self.pss_every_s
            except psutil.Error:
                return
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        try:  # a block shorter than one sample still has a figure
            self.peak_bytes = max(self.peak_bytes, tree_pss(self.process))
        except Exception:  # noqa: BLE001 - the process may have ended: the samples stand
            pass
