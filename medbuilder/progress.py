"""Progress of long work: rich bars on a terminal, plain lines otherwise.

`steps(total, what)` counts the steps of data prepare, caching, training, the evaluation and bench cases. On a
terminal (rich's Console.is_terminal; TERM=dumb counts as none, NO_COLOR drops the colours) it draws a bar with
the count, the time spent and the time left; bars open at the same time (a bench case's training under the
bench's bar) share one live display. Otherwise it prints "what: k/total" lines on stderr: one per step for up
to 20 steps, then one every 5% or PLAIN_EVERY_S seconds, and the last.

While the Model Trainer trains, the template's engine keeps ``workspace/progress.json`` (caching k of n items,
or epoch e of E and batch b of B with the running loss). The workspace is written by sandboxed scripts:
`read_progress` reads it like any untrusted file (no link followed, a few KiB at most, sane numbers only,
garbage ignored), and `TrainingWatch` polls it during the stage: a bar on the terminal of `medbuilder build`
and a Prefect progress artifact on the stage's task run. The dashboard's Runs page shows the same file
(``dashboards/data.py`` `run_now`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from medbuilder.protocol.untrusted import UntrustedFileError, open_nofollow

PLAIN_EVERY_S = 5.0
PLAIN_BUCKETS = 20  # plain lines: at most one per 5% of the steps (every step when there are at most 20)
PROGRESS_FILE = "progress.json"
PROGRESS_MAX_BYTES = 4096
MAX_COUNT = 10_000_000
MAX_LOSS = 1e12


def on_terminal(console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _Plain:
    """'what: k/total' lines, or 'what' alone when it states its own count (see the module docstring for how
    often)."""

    def __init__(self, total: int | None, what: str, counted: bool = True, out=None):
        self.total, self.what, self.done, self._counted = total, what, 0, counted
        self._out, self._last_at, self._last_bucket, self._last_line = out or sys.stderr, 0.0, -1, None

    def update(self, done: int, total: int | None = None, what: str | None = None, final: bool = False) -> None:
        self.done, self.total, self.what = done, total or self.total, what or self.what
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        line = f"{self.what}: {count}" if self._counted else self.what
        now, bucket = time.monotonic(), self.done * PLAIN_BUCKETS // self.total if self.total else -1
        due = final or bucket > self._last_bucket or now - self._last_at >= PLAIN_EVERY_S
        if self.done and due and line != self._last_line:
            self._last_at, self._last_bucket, self._last_line = now, bucket, line
            print(line, file=self._out, flush=True)


class _SharedLive:
    """One rich Progress for every bar open at a time (rich allows one live display); stopped with the last."""

    lock = threading.Lock()
    progress = None
    users = 0

    @classmethod
    def acquire(cls, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        with cls.lock:
            if cls.progress is None:
                progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                    redirect_stdout=sys.stdout.isatty())  # stdout sent to a file stays there
                progress.start()  # LiveError when a live display that is not ours is on screen
                cls.progress = progress
            cls.users += 1
            return cls.progress

    @classmethod
    def release(cls, task_id) -> None:
        with cls.lock:
            cls.users -= 1
            cls.progress.refresh()  # the bar's last state is drawn once, however short its life
            if cls.users == 0:
                cls.progress.stop()  # the last bars stay on screen as they ended
                cls.progress = None
            else:
                cls.progress.remove_task(task_id)  # the outer bar goes on; a finished inner one goes


class _Bar:
    def __init__(self, total: int | None, what: str, console):
        self._progress = _SharedLive.acquire(console)
        self._task = self._progress.add_task(what, total=total)
        self.done = 0

    def update(self, done: int, total: int | None = None, what: str | None = None, final: bool = False) -> None:
        self.done = done
        changes = {"completed": done, **({"total": total} if total else {}), **({"description": what} if what else {})}
        self._progress.update(self._task, **changes)
        if final:
            _SharedLive.release(self._task)


class Steps:
    """Call it once per step done (or `update` with a count); a bar on a terminal, plain lines otherwise. A bar
    whose total is not known yet is drawn at its first update (a dataset already prepared draws none)."""

    def __init__(self, total: int | None, what: str, console=None, counted: bool = True):
        """`counted=False`: `what` states the count itself (plain lines print it alone)."""
        self._args, self._view, self._closed, self.done = (total, what, console, counted), None, False, 0
        if total is not None:
            self._open()

    def _open(self):
        from rich.errors import LiveError

        total, what, console, counted = self._args
        console = console or _stderr_console()
        try:
            self._view = _Bar(total, what, console) if on_terminal(console) else _Plain(total, what, counted)
        except LiveError:  # a live display that is not ours is on screen
            self._view = _Plain(total, what, counted)
        return self._view

    def __call__(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None, what: str | None = None) -> None:
        if self._closed:
            return
        self.done = done
        (self._view or self._open()).update(done, total, what)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._view is not None:
                self._view.update(self.done, final=True)


@contextlib.contextmanager
def steps(total: int | None, what: str, console=None, counted: bool = True) -> Iterator[Steps]:
    bar = Steps(total, what, console, counted)
    try:
        yield bar
    finally:
        bar.close()


# ---------------------------------------------------------------- the training's progress file


@dataclass(frozen=True)
class ScriptProgress:
    """What a training script says it does now (for display only)."""

    phase: str  # "caching" or "training"
    done: int  # items cached, or batches trained over all epochs (whole epochs when no batch count is known)
    total: int
    text: str
    updated: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total)


def _count(value, low: int = 0) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        return None
    return value


def _finite(value, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if abs(value) <= limit else None


def _caching(raw: dict, updated: float) -> ScriptProgress | None:
    done, total = _count(raw.get("done")), _count(raw.get("total"), 1)
    if done is None or total is None:
        return None
    name = raw.get("name") if isinstance(raw.get("name"), str) and raw["name"].isidentifier() else "data"
    done = min(done, total)
    return ScriptProgress("caching", done, total, f"caching {name[:40]} {done}/{total}", updated)


def _training(raw: dict, updated: float) -> ScriptProgress | None:
    epoch, epochs, batch, batches = (_count(raw.get(k), low) for k, low in
                                     (("epoch", 1), ("epochs", 1), ("batch", 0), ("batches", 1)))
    if epoch is None or epochs is None or epoch > epochs:
        return None
    loss = _finite(raw.get("loss"), MAX_LOSS)
    loss_text = f" loss {loss:.4g}" if loss is not None else ""
    if batch is None or batches is None:  # no batch count known: whole epochs only
        return ScriptProgress("training", epoch - 1, epochs, f"training epoch {epoch}/{epochs}{loss_text}", updated)
    batch = min(batch, batches)
    return ScriptProgress("training", (epoch - 1) * batches + batch, epochs * batches,
                          f"training epoch {epoch}/{epochs} batch {batch}/{batches}{loss_text}", updated)


def parse_progress(raw) -> ScriptProgress | None:
    """A progress.json object as shown; None for anything else."""
    if not isinstance(raw, dict):
        return None
    updated = _finite(raw.get("updated"), 1e11)
    if updated is None:
        return None
    phases = {"caching": _caching, "training": _training}
    phase = raw.get("phase")
    return phases[phase](raw, updated) if isinstance(phase, str) and phase in phases else None


def read_progress(workspace: Path) -> ScriptProgress | None:
    """The workspace's progress.json, read as untrusted; None when missing, a link, too big or garbage."""
    try:
        with open_nofollow(Path(workspace), PROGRESS_FILE, PROGRESS_MAX_BYTES) as handle:
            data = handle.read(PROGRESS_MAX_BYTES + 1)
    except (OSError, UntrustedFileError):
        return None
    if len(data) > PROGRESS_MAX_BYTES:  # grew after the size check
        return None
    try:
        return parse_progress(json.loads(data))
    except (ValueError, RecursionError):
        return None


class TrainingWatch:
    """While the block runs, polls workspace/progress.json (written since the block began) and shows it: a bar
    per phase on this process's terminal (plain lines when it is none), and `report(percent, text)` for the
    training (the Prefect artifact) whenever the whole percent changes."""

    def __init__(self, workspace: Path, report: Callable[[float, str], None] | None = None,
                 interval_s: float = 1.0, console=None):
        self.workspace, self.report, self.interval_s = Path(workspace), report, interval_s
        self._console, self._stop, self._since = console, threading.Event(), time.time()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True,
                                        name="training-progress")
        self._bars: dict[str, Steps] = {}
        self._reported: float | None = None
        self.last: ScriptProgress | None = None

    def __enter__(self) -> TrainingWatch:
        self._since = time.time() - 1  # the file's own clock: a progress.json from an earlier round is older
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        try:
            stopped = False
            while not stopped:
                stopped = self._stop.wait(self.interval_s)  # one more look after the stop: the last epoch
                found = read_progress(self.workspace)
                if found is not None and found.updated >= self._since and found != self.last:
                    self.last = found
                    self._show(found)
        finally:
            for bar in self._bars.values():
                bar.close()

    def _show(self, found: ScriptProgress) -> None:
        bar = self._bars.get(found.phase)
        if bar is None:
            bar = self._bars[found.phase] = Steps(found.total, found.text, self._console, counted=False)
        bar.update(found.done, found.total, found.text)
        percent = float(round(100 * found.fraction))
        if self.report is None or found.phase != "training" or percent == self._reported:
            return
        self._reported = percent
        try:
            self.report(percent, found.text)
        except Exception as err:  # the artifact is for display: training goes on without it
            print(f"training progress artifact not updated: {type(err).__name__}: {err}", file=sys.stderr)
