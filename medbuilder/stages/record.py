"""Stage bookkeeping shared by every stage: skip what is done, record attempts, time and outcome.

A stage whose record says ``completed`` is not run again: that is what lets
`medbuilder resume` continue a run without redoing finished work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from medbuilder.heap import freeze_survivors
from medbuilder.protocol.artifacts import now
from medbuilder.protocol.manifest import guard_dataset
from medbuilder.protocol.run_folder import RunFolder


def run_stage(run: RunFolder, name: str, work: Callable[[], dict[str, Any]],
              totals: Callable[[], tuple[int, int]] | None = None) -> dict[str, Any]:
    """Run `work` as stage `name` unless it already completed; returns its summary dict.

    `totals` gives the stage's (actions, tokens) over all its attempts so far.
    """
    record = run.stage(name)
    if record.status == "completed":
        return {**record.result, "stage": name, "skipped": True}
    interrupted = record.status == "running" or (record.error or "").startswith("interrupted")  # a killed process
    record.status, record.attempts, record.error = "running", record.attempts + 1, None
    record.started = record.started or now()
    run.save_stage(record)
    freeze_survivors()  # what earlier stages imported and kept lives as long as the process
    started = time.monotonic()
    try:
        with guard_dataset(run, name, interrupted):
            summary = work()
    except BaseException as err:
        record.status, record.error = "failed", f"{type(err).__name__}: {err}"[:4000]
        raise
    else:
        record.status = "completed"
        record.outputs = summary.get("outputs", record.outputs)
        record.result = json.loads(json.dumps(summary, default=str))
        return {"stage": name, **summary}
    finally:
        record.seconds = round(record.seconds + time.monotonic() - started, 2)
        record.ended = now()
        if totals:
            record.actions, record.tokens = totals()
        run.save_stage(record)
