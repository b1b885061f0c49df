"""The stack's readiness checks ask the Prefect server through Prefect's own client (test harness server)."""

from __future__ import annotations

from medbuilder.stack.auth import prefect_client
from medbuilder.stack.pool import ensure_pool
from medbuilder.stack.ready import deployments_ready, server_healthy, workers_ready
from medbuilder.stack.up import free_port


def test_health_workers_and_deployments_through_the_client(prefect_api):
    assert server_healthy(prefect_api)
    assert not server_healthy(f"http://127.0.0.1:{free_port()}/api")  # nothing listens there
    pool = "ready-test-pool"
    ensure_pool(prefect_api, pool)
    assert not workers_ready(prefect_api, ["w1"], pool)
    with prefect_client(prefect_api) as client:
        client.send_worker_heartbeat(pool, "w1")
    assert workers_ready(prefect_api, ["w1"], pool) and not workers_ready(prefect_api, ["w1", "w2"], pool)
    assert not deployments_ready(f"http://127.0.0.1:{free_port()}/api")  # (other tests serve on prefect_api)
