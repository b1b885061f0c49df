"""Scaling out: a process work pool with workers, and a global concurrency limit on training.

- The work pool ``medbuilder-process`` (type ``process``) gets the deployment ``build_model/pool``
  (``flows/deployments.py``); ``prefect worker start --pool medbuilder-process --type process`` processes
  run its flow runs, each in a subprocess of its own. No image and no remote storage: the deployment's
  entrypoint is the installed module ``medbuilder.flows.build``, and its ``working_dir`` is the folder
  `medbuilder up` ran in, so relative MEDBUILDER_*_DIR settings mean the same for every worker.
- The global concurrency limit ``medbuilder-training`` (MEDBUILDER_TRAINING_LIMIT) has
  MEDBUILDER_TRAINING_SLOTS slots (default 1); the Model Trainer stage of a run holds one slot
  (`medbuilder.tasks.slots.training_slot`), so however many runs the workers take at once, at most that many
  train at a time.
  Where the limit does not exist (a plain `medbuilder build`, a test server) the training runs
  unthrottled, with one INFO line saying so; so does a stage run outside a Prefect run (`medbuilder stage RUN model_trainer`); an
  empty MEDBUILDER_TRAINING_LIMIT turns the slot off (no API call).
"""

from __future__ import annotations

from medbuilder.stack.auth import api_settings, prefect_client

POOL = "medbuilder-process"
POOL_DEPLOYMENT = "build_model/pool"


def ensure_training_limit(api_url: str, name: str, slots: int) -> None:
    """Create the global concurrency limit `name` with `slots` slots, or set an existing one to `slots`."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists

    with prefect_client(api_url) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots, active=True))
        except ObjectAlreadyExists:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots, active=True))


def ensure_pool(api_url: str, pool: str = POOL) -> None:
    """Create the process work pool `pool` with Prefect's default process job template (kept if it exists)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with prefect_client(api_url) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
        except ObjectAlreadyExists:
            pass


def deploy_to_pool(api_url: str, working_dir: str, pool: str = POOL) -> str:
    """Register build_model/pool on `pool`; returns the deployment id."""
    from medbuilder.flows.deployments import pool_deployment

    with api_settings(api_url):
        return str(pool_deployment(working_dir).apply(work_pool_name=pool))


def worker_command(prefect: str, name: str, pool: str = POOL, limit: int | None = None) -> list[str]:
    """`prefect worker start` for one process worker of `pool`."""
    cmd = [prefect, "worker", "start", "--pool", pool, "--type", "process", "--name", name,
           "--install-policy", "never", "--no-create-pool-if-not-found"]
    return cmd + (["--limit", str(limit)] if limit else [])
