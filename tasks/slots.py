"""The global training limit: a stage that trains holds one slot of it while it runs.

`medbuilder up` creates the limit (``MEDBUILDER_TRAINING_LIMIT``, ``MEDBUILDER_TRAINING_SLOTS`` at a time), so
however many runs the workers take at once, at most that many train at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def training_slot(held: bool) -> Iterator[None]:
    """Hold one slot of the training limit when `held`; pass straight through otherwise."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.exceptions import ObjectNotFound

    from medbuilder.lifecycle.log import run_logger
    from medbuilder.settings import get_settings

    name = get_settings().training_limit
    if not held or not name or not (TaskRunContext.get() or FlowRunContext.get()):
        yield  # outside a Prefect run (`medbuilder stage`) there is no server to ask: not throttled
        return
    try:
        with get_client(sync_client=True) as client:  # the server this run reports to
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        run_logger().info("no global concurrency limit %r on this Prefect server: training is not throttled", name)
        yield
        return
    with concurrency(name, occupy=1, strict=False):
        yield
