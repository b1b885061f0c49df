"""Progress of long work: a rich bar on a terminal, plain lines otherwise.

`steps(total, what)` counts the steps of data prepare, the evaluation and bench cases. On a terminal (rich's
Console.is_terminal, and TERM is not "dumb") it draws a bar with the count, the time spent and the time left;
otherwise it prints "what: k/total" lines on stderr, at most one every PLAIN_EVERY_S seconds, and the last.

While the Model Trainer trains, the template's engine keeps ``workspace/progress.json`` (caching k of n items,
or epoch e of E and batch b of B). The workspace is written by sandboxed scripts: `read_progress` reads it
like any untrusted file (no link followed, a few KiB at most, sane integers only, garbage ignored), and
`TrainingWatch` polls it during the stage: a bar on the terminal of `medbuilder build` and a Prefect progress
artifact on the stage's task run. The dashboard's Runs page shows the same file (``dashboards/progress.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from medbuilder.protocol.untrusted import UntrustedFileError, open_nofollow

PLAIN_EVERY_S = 5.0
PROGRESS_FILE = "progress.json"
PROGRESS_MAX_BYTES = 4096
MAX_COUNT = 10_000_000


def _console():
    from rich.console import Console

    return Console(stderr=True)


def on_terminal(console) -> bool:
    return console.is_terminal and os.environ.get("TERM") != "dumb"


class _Plain:
    """'what: k/total' lines, at most one every PLAIN_EVERY_S seconds, then the last."""

    def __init__(self, total: int | None, what: str, out=None):
        self.total, self.what, self.done, self._last = total, what, 0, 0.0
        self._out = out or sys.stderr

    def update(self, done: int, total: int | None = None, what: str | None = None, final: bool = False) -> None:
        self.done, self.total, self.what = done, total if total is not None else self.total, what or self.what
        now = time.monotonic()
        if (final and self.done) or (not final and now - self._last >= PLAIN_EVERY_S):
            self._last = now
            count = f"{self.done}/{self.total}" if self.total else str(self.done)
            print(f"{self.what}: {count}", file=self._out, flush=True)


class _Bar:
    def __init__(self, total: int | None, what: str, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                  redirect_stdout=sys.stdout.isatty())  # stdout sent to a file stays there
        self._progress.start()
        self._task = self._progress.add_task(what, total=total)
        self.done = 0

    def update(self, done: int, total: int | None = None, what: str | None = None, final: bool = False) -> None:
        self.done = done
        extra = {"total": total} if total is not None else {}
        self._progress.update(self._task, completed=done, description=what, **extra) if what else \
            self._progress.update(self._task, completed=done, **extra)
        if final:
            self._progress.stop()


class Steps:
    """Call it once per step done (or `update` with a count); a bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int | None, what: str, console=None):
        from rich.errors import LiveError

        console = console or _console()
        try:
            self._view = _Bar(total, what, console) if on_terminal(console) else _Plain(total, what)
        except LiveError:  # another bar is on screen (a bench case's training under the bench's bar)
            self._view = _Plain(total, what)
        self._closed = False

    def __call__(self, n: int = 1) -> None:
        self._view.update(self._view.done + n)

    def update(self, done: int, total: int | None = None, what: str | None = None) -> None:
        self._view.update(done, total, what)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._view.update(self._view.done, final=True)


@contextlib.contextmanager
def steps(total: int | None, what: str, console=None) -> Iterator[Steps]:
    bar = Steps(total, what, console)
    try:
        yield bar
    finally:
        bar.close()


# ---------------------------------------------------------------- the training's progress file


@dataclass(frozen=True)
class ScriptProgress:
    """What a training script says it does now (for display only)."""

    phase: str  # "caching" or "training"
    done: int  # items cached, or batches trained over all epochs
    total: int | None
    text: str
    updated: float

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


def _count(value, low: int = 0) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        return None
    return value


def parse_progress(raw) -> ScriptProgress | None:
    """A progress.json object as shown; None for anything else."""
    if not isinstance(raw, dict):
        return None
    updated = raw.get("updated")
    if isinstance(updated, bool) or not isinstance(updated, (int, float)) or not math.isfinite(updated):
        return None
    if raw.get("phase") == "caching":
        done, total = _count(raw.get("done")), _count(raw.get("total"), 1)
        name = raw.get("name") if isinstance(raw.get("name"), str) and raw["name"].isidentifier() else "data"
        if done is None or total is None:
            return None
        return ScriptProgress("caching", min(done, total), total, f"caching {name} {min(done, total)}/{total}",
                              float(updated))
    if raw.get("phase") == "training":
        epoch, epochs, batch, batches = (_count(raw.get(k), low) for k, low in
                                         (("epoch", 1), ("epochs", 1), ("batch", 0), ("batches", 1)))
        if epoch is None or epochs is None or epoch > epochs:
            return None
        if batch is None or batches is None:  # no length known: whole epochs only
            return ScriptProgress("training", epoch - 1, epochs, f"training epoch {epoch}/{epochs}", float(updated))
        batch = min(batch, batches)
        return ScriptProgress("training", (epoch - 1) * batches + batch, epochs * batches,
                              f"training epoch {epoch}/{epochs} batch {batch}/{batches}", float(updated))
    return None


def read_progress(workspace: Path) -> ScriptProgress | None:
    """The workspace's progress.json, read as untrusted; None when missing, a link, too big or garbage."""
    try:
        with open_nofollow(Path(workspace), PROGRESS_FILE, PROGRESS_MAX_BYTES) as handle:
            data = handle.read(PROGRESS_MAX_BYTES + 1)
    except (OSError, UntrustedFileError):
        return None
    if len(data) > PROGRESS_MAX_BYTES:
        return None
    try:
        return parse_progress(json.loads(data))
    except (ValueError, RecursionError):
        return None


class TrainingWatch:
    """While the block runs, polls workspace/progress.json (written after `since`) and shows it: a bar on this
    process's terminal (plain lines when it is none), and `report(percent, text)` (the Prefect artifact)."""

    def __init__(self, workspace: Path, report: Callable[[float, str], None] | None = None,
                 interval_s: float = 1.0, console=None):
        self.workspace, self.report, self.interval_s = Path(workspace), report, interval_s
        self._console, self._stop, self._since = console, threading.Event(), time.time()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True)
        self.last: ScriptProgress | None = None

    def __enter__(self) -> TrainingWatch:
        self._since = time.time() - 1  # the file's own clock: a progress.json from an earlier round is older
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        bars: dict[str, Steps] = {}
        reported = None
        try:
            stopped = False
            while not stopped:
                stopped = self._stop.wait(self.interval_s)  # one more look after the stop: the last epoch
                found = read_progress(self.workspace)
                if found is None or found.updated < self._since or found == self.last:
                    continue
                self.last = found
                bar = bars.get(found.phase) or bars.setdefault(found.phase, Steps(found.total, found.text,
                                                                                  self._console))
                bar.update(found.done, found.total, found.text)
                percent = round(100 * (found.fraction or 0.0))
                if self.report and found.phase == "training" and percent != reported:
                    reported = percent
                    try:
                        self.report(float(percent), found.text)
                    except Exception as err:  # the artifact is for display: training goes on without it
                        print(f"training progress artifact not updated: {type(err).__name__}: {err}",
                              file=sys.stderr)
        finally:
            for bar in bars.values():
                bar.close()
