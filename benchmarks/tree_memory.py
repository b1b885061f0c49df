"""Run a command and report its wall time and the peak of the summed RSS of its whole process tree.

`/usr/bin/time -v` reports the largest single process; a build runs the flow process and a
training process side by side, so their sum is what must fit in memory.

    python benchmarks/tree_memory.py -- medbuilder build "..." --approve auto
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def tree_rss_kb(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(status.parent.name)
        children.setdefault(int(fields["PPid"]), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def main() -> int:
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    started = time.monotonic()
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kb(process.pid))
        time.sleep(0.25)
    print(f"wall time: {time.monotonic() - started:.1f} s; peak memory of the process tree: {peak / 1024 / 1024:.2f} GiB",
          file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
