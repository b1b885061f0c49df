"""The roles whose scripts load images (Module Architect, Model Trainer) read medbuilder's preprocessed store:
a read-only root of their sandbox, filled before each of their Python scripts runs (medbuilder.cache)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from medbuilder.agents.roles.base import RoleContext

log = logging.getLogger(__name__)
RECORD = "logs/preprocess.jsonl"  # one line per offer: what the bench reads for the preprocessing seconds


def store_roots(ctx: RoleContext) -> list[Path]:
    """The store's part for this run's dataset, as a read-only root (made if missing): a script sees no other
    dataset's images. None when the store is turned off."""
    if not ctx.settings.preprocess_cache or ctx.card is None:
        return []
    from medbuilder.cache import store_for
    from medbuilder.cache.keys import dataset_part

    return [store_for(ctx.settings).part(dataset_part(ctx.dataset_root))]


def before_script(role: str) -> Callable[[RoleContext], Callable | None]:
    """For `role`: run_script's pre-script step in its workspace, preprocessing what the script will read."""

    def for_context(ctx: RoleContext) -> Callable | None:
        if not ctx.settings.preprocess_cache or ctx.plan is None:
            return None

        def fill(workspace) -> str | None:
            from medbuilder.cache import offer

            try:
                done = offer(workspace.root, ctx.plan.task, ctx.run.index_dir, [ctx.dataset_root], ctx.settings)
            except Exception as err:  # the store is a speed-up: the script preprocesses itself without it
                log.exception("preprocessing into the store failed")
                return f"preprocessed cache: not used ({type(err).__name__}: {err}; details in the log)"
            _record(ctx.run.root / RECORD, role, done)
            return done.line()

        return fill

    return for_context


def _record(path: Path, role: str, done) -> None:
    line = {"role": role, "at": round(time.time(), 3), "hits": done.hits, "made": done.made,
            "skipped": done.skipped, "seconds": round(done.seconds, 3), "reason": done.reason}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
