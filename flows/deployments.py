"""The deployments, served by one process: ``python -m medbuilder.flows.deployments``.

- ``build_model/build``: what the dashboard starts with
  ``run_deployment("build_model/build", parameters={...}, timeout=0)``; its gates (approve = "prefect")
  suspend the run for the dashboard or the Prefect UI: the flow process exits and frees its slot, and the
  answer reschedules the run, which this process (or a worker) runs on from the run folder (``flows/gates.py``).
- ``reevaluate_delivered/nightly``: re-checks every delivered model at 02:00 UTC (``flows/reevaluate.py``); the
  cron is ``MEDBUILDER_NIGHTLY_CRON`` (5 fields, or 6 with the seconds last); the Prefect server's scheduler
  creates its runs (auto-scheduled, state Scheduled) and this process runs them.
- ``build_model/on-datacard``: started by an automation (a DeploymentEventTrigger) on the event
  ``medbuilder.datacard.changed`` that `medbuilder watch` emits for a new or changed datacard; the
  dataset and request come from the event.

`medbuilder up` starts this process against its Prefect server (PREFECT_API_URL). With ``--workers N`` it
also registers ``build_model/pool`` (`pool_deployment`) on a process work pool that N workers poll.

Before the deployments, `serve_all` registers the gate notifications (``medbuilder/stack/notify.py``): an
automation on ``prefect.flow-run.Paused`` of build_model runs that notifies the webhook / e-mail set in
``MEDBUILDER_NOTIFY_*``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

BUILD = "build_model/build"
NIGHTLY = "reevaluate_delivered/nightly"
ON_DATACARD = "build_model/on-datacard"
DEPLOYMENT_NAMES = (BUILD, NIGHTLY, ON_DATACARD)
NIGHTLY_CRON = "0 2 * * *"  # the default of MEDBUILDER_NIGHTLY_CRON
TRIGGER_NAME = "medbuilder: datacard changed -> build_model/on-datacard"


def deployments() -> list:
    from prefect.deployments.runner import EntrypointType
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    from medbuilder.flows.build import build_model
    from medbuilder.flows.reevaluate import reevaluate_delivered
    from medbuilder.settings import get_settings
    from medbuilder.stack.watch import DATACARD_EVENT, RESOURCE_PREFIX

    module = EntrypointType.MODULE_PATH  # runs load medbuilder.flows.*, whatever the working directory
    build = build_model.to_deployment(
        "build", entrypoint_type=module, tags=["medbuilder"],
        parameters={"request": "", "dataset": None, "core": None, "approve": "prefect"},
        description="Build a model from a clinician's request: Task Manager -> dataset gate -> Data Engineer -> "
                    "Module Architect -> Model Trainer -> evaluation -> review gate -> delivery. Gates suspend "
                    "the run (approve = prefect; no process waits) until answered in the dashboard, the Prefect "
                    "UI or `medbuilder approve`; the answer reschedules it and it goes on from its run folder.")
    cron = get_settings().nightly_cron
    when = "Every night at 02:00 UTC" if cron == NIGHTLY_CRON else f"On the cron '{cron}' (UTC)"
    nightly = reevaluate_delivered.to_deployment(
        "nightly", entrypoint_type=module, tags=["medbuilder"],
        schedules=[Cron(cron, timezone="UTC")],
        description=f"{when}: predict each delivered run's test split again with its bundle, "
                    "write reevaluations/<date>.json in the run folder, flag a metric drop of more than 0.05.")
    trigger = DeploymentEventTrigger(
        name=TRIGGER_NAME,
        description="A new or changed datacard (emitted by `medbuilder watch`) starts a build of that dataset.",
        expect={DATACARD_EVENT},
        match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
        posture="Reactive", threshold=1,
        parameters={"request": "{{ event.payload.request }}", "dataset": "{{ event.payload.dataset }}",
                    "approve": "prefect"})
    on_datacard = build_model.to_deployment(
        "on-datacard", entrypoint_type=module, tags=["medbuilder", "datacard-trigger"], triggers=[trigger],
        parameters={"approve": "prefect"},
        description=f"Started by the automation '{TRIGGER_NAME}' on the event {DATACARD_EVENT} "
                    f"(resource {RESOURCE_PREFIX}<name>): builds a model on that datacard with the request the "
                    "event carries; its gates suspend the run until a clinician answers.")
    return [build, nightly, on_datacard]


def pool_deployment(working_dir: str):
    """build_model/pool: the build flow for workers of a process work pool (`medbuilder up --workers N`).

    The entrypoint is the installed module, so a worker needs no image and no code download; its flow
    runs start in `working_dir` (where relative MEDBUILDER_*_DIR settings resolve)."""
    from prefect.deployments.runner import EntrypointType

    from medbuilder.flows.build import build_model

    return build_model.to_deployment(
        "pool", entrypoint_type=EntrypointType.MODULE_PATH, tags=["medbuilder", "work-pool"],
        parameters={"request": "", "dataset": None, "core": None, "approve": "prefect"},
        job_variables={"working_dir": working_dir},
        description="Build a model (as build_model/build) on the workers of a process work pool; a gate "
                    "suspends the run and frees its worker until answered; the Model Trainer holds a slot of "
                    "the global concurrency limit medbuilder-training.")


def serve_all(limit: int | None = None) -> None:
    """Register the gate notifications and the deployments, and run their flow runs until interrupted."""
    from prefect import serve

    from medbuilder.settings import get_settings
    from medbuilder.stack.notify import register_notifications

    register_notifications(echo=lambda line: print(line, flush=True))
    # a suspended gate's answer reschedules its run: the runner looks for it as often as a paused gate looks
    serve(*deployments(), limit=limit, query_seconds=get_settings().gate_poll_s)


if __name__ == "__main__":
    serve_all()
