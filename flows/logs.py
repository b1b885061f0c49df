"""The flow's log: every record, tracebacks included, in ``logs/flow.log``; one line per error on the console.

A person at the console reads what failed and what to do (the build's summary); the traceback
that explains it to a developer is in the run's log file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from medbuilder.protocol.run_folder import RunFolder

TRACEBACK = "Traceback (most recent call last)"


class _NoTraceback(logging.Formatter):
    """Formats with the console's own formatter, leaving out the traceback (first line of the message only)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info, record.msg, record.args
        message = record.getMessage()
        if TRACEBACK in message:
            message = message.split(TRACEBACK)[0].rstrip() + " (traceback in the run's logs/flow.log)"
        record.exc_info, record.exc_text, record.stack_info, record.msg, record.args = None, None, None, message, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info, record.msg, record.args = saved


def _console_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]


@contextmanager
def run_log(run: RunFolder) -> Iterator[None]:
    """While the flow runs: full records to logs/flow.log, tracebacks kept off the console."""
    path = run.path("logs/flow.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    consoles = [(h, h.formatter) for h in _console_handlers() if not isinstance(h.formatter, _NoTraceback)]
    for console, formatter in consoles:
        console.setFormatter(_NoTraceback(formatter))
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for console, formatter in consoles:
            console.setFormatter(formatter)
