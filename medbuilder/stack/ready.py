"""Whether a part of the stack is ready, asked of the Prefect server through Prefect's own client (its health,
the deployments and the trigger's automation, a pool's workers); the dashboard through its health URL."""

from __future__ import annotations

import urllib.error
import urllib.request

from medbuilder.stack.auth import prefect_client


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def server_healthy(api_url: str) -> bool:
    """The Prefect server answers its health check."""
    try:
        with prefect_client(api_url) as client:
            return client.api_healthcheck() is None
    except Exception:  # not started yet, refused, or an answer that is not Prefect's
        return False


def deployments_ready(api_url: str) -> bool:
    """All the served deployments and the trigger's automation exist on the server."""
    from medbuilder.flows.deployments import DEPLOYMENT_NAMES, TRIGGER_NAME

    try:
        with prefect_client(api_url) as client:
            for name in DEPLOYMENT_NAMES:
                client.read_deployment_by_name(name)  # ObjectNotFound until it is served
            return bool(client.read_automations_by_name(TRIGGER_NAME))
    except Exception:
        return False


def workers_ready(api_url: str, names: list[str], pool: str) -> bool:
    """Every named worker has sent a heartbeat to the pool."""
    try:
        with prefect_client(api_url) as client:
            found = client.read_workers_for_work_pool(pool, offset=0, limit=200)  # offset: its None is refused
    except Exception:
        return False
    return set(names) <= {worker.name for worker in found}
