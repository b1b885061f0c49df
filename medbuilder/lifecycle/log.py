"""The logger of the flow or task run this code runs in, or medbuilder's own outside one (`medbuilder stage`)."""

from __future__ import annotations

import logging


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (it reaches the Prefect UI); a plain logger elsewhere, so
    code shared by the flow and the CLI never fails for want of a run context."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("medbuilder")
