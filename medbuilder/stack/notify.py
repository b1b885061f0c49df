"""Tell someone when a gate waits: a Prefect automation on ``prefect.flow-run.Paused`` and
``prefect.flow-run.Suspended`` of ``build_model`` runs that sends a notification through a webhook block.

A gate (``flows/gates.py``) pauses its flow run (``pause_flow_run(..., key=<gate id>)``, a run started from the
CLI) or suspends it (``suspend_flow_run``, a deployment's run); the server emits ``prefect.flow-run.Paused`` or
``prefect.flow-run.Suspended`` for it; the automation ``AUTOMATION_NAME`` (its trigger matches flow runs whose flow
is ``build_model``) runs ``SendNotification`` once per channel, on the server. Its body names the flow run, the
gate key (the newest of the run's pause keys, see ``GATE_KEY``), the request, and links to the run in the Prefect UI and to the
dashboard.

The channel is a webhook: ``MEDBUILDER_NOTIFY_WEBHOOK_URL`` gets a ``CustomWebhookNotificationBlock`` (block
``WEBHOOK_BLOCK``) that POSTs ``{"subject": ..., "body": ..., "name": ...}`` as JSON (Slack, Teams, Mattermost,
a mail gateway or a hospital's paging system behind one URL).

No e-mail channel: on Prefect 3.8.7 the server runs SendNotification itself and can only load block classes it
has imported. The generic ``AppriseNotificationBlock`` (which would take a ``mailto://`` URL) is an interface
class that cannot be saved (``InvalidBlockRegistration``), no built-in block sends over SMTP, ``SendgridEmail``
posts to SendGrid's cloud API (out of reach of an air-gapped network) and ``prefect-email`` has no notification
block; a medbuilder block class would need to be registered with the server through a ``prefect.collections``
entry point.

``register_notifications()`` (called by ``serve_all``, i.e. by ``medbuilder up``) is idempotent: it saves the
block (overwriting), deletes every automation named ``AUTOMATION_NAME`` and creates it again; with no webhook
set it only deletes the automation.
"""

from __future__ import annotations

from typing import Callable

AUTOMATION_NAME = "medbuilder: gate waiting -> notify"
WEBHOOK_BLOCK = "medbuilder-gate-webhook"
PAUSED_EVENT = "prefect.flow-run.Paused"  # a CLI run's gate (pause_flow_run)
SUSPENDED_EVENT = "prefect.flow-run.Suspended"  # a deployment's run's gate (suspend_flow_run: no process waits)
GATE_EVENTS = {PAUSED_EVENT, SUSPENDED_EVENT}
BUILD_FLOW = "build_model"

# The waiting gate's key. The server renders the templates with the flow run read from the API, but replaces its
# state with one rebuilt from the event, which has no state_details (no pause_key). The run's
# empirical_policy.pause_keys holds every key it paused on; build_model asks dataset-1..N and then review-0..K
# (flows/build.py), so the waiting gate is the greatest in that order.
GATE_KEY = ('{%- set gate = namespace(key="?", rank=-1) -%}'
            '{%- for k in (flow_run.empirical_policy.pause_keys or []) -%}'
            '{%- set r = (1000 if k.startswith("review-") else 0) + (k.rsplit("-", 1)[-1] | int(0)) -%}'
            '{%- if r > gate.rank %}{% set gate.key = k %}{% set gate.rank = r %}{% endif -%}'
            '{%- endfor -%}')
SUBJECT = GATE_KEY + "medbuilder: gate {{ gate.key }} of {{ flow_run.name }} is waiting"


def body_template(ui_url: str | None, dashboard_url: str | None) -> str:
    """The Jinja body the server renders (flow_run is the paused run, read from the API when the action runs)."""
    lines = [
        GATE_KEY + "A medbuilder gate is waiting for an answer.",
        "Gate: {{ gate.key }}",
        "Flow run: {{ flow_run.name }} ({{ flow_run.id }}) of build_model",
        "Request: {{ flow_run.parameters.request }}",
        "Dataset: {{ flow_run.parameters.dataset }}",
    ]
    if ui_url:
        lines.append(f"Prefect UI: {ui_url.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}")
    if dashboard_url:
        lines.append(f"Dashboard: {dashboard_url}")
    lines.append("Answer it in the dashboard, the Prefect UI's form, or with `medbuilder approve RUN`.")
    return "\n".join(lines)


def channel_blocks(settings) -> list[tuple[str, object]]:
    """[(block name, notification block)] for the channels the settings turn on."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    blocks: list[tuple[str, object]] = []
    if settings.notify_webhook_url:
        blocks.append((WEBHOOK_BLOCK, CustomWebhookNotificationBlock(
            name="medbuilder gate", url=settings.notify_webhook_url, method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"})))
    return blocks


def gate_trigger():
    from prefect.events.schemas.automations import EventTrigger

    return EventTrigger(
        expect=GATE_EVENTS,
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": BUILD_FLOW},
        for_each={"prefect.resource.id"}, posture="Reactive", threshold=1)


def register_notifications(settings=None, ui_url: str | None = None,
                           echo: Callable[[str], None] = lambda _: None):
    """Save the channel blocks and (re)create the automation; returns it, or None when no channel is set (an
    automation of that name is deleted then).

    Needs PREFECT_API_URL (the server). `ui_url` defaults to the Prefect UI the API belongs to."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.settings import PREFECT_UI_URL

    from medbuilder.settings import get_settings

    settings = settings or get_settings()
    blocks = channel_blocks(settings)
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(AUTOMATION_NAME):
            if old.name == AUTOMATION_NAME:
                client.delete_automation(old.id)
    if not blocks:
        echo("gate notifications: off (set MEDBUILDER_NOTIFY_WEBHOOK_URL)")
        return None
    body = body_template(ui_url or PREFECT_UI_URL.value(), settings.dashboard_url or None)
    actions = []
    for name, block in blocks:
        block_id = block.save(name, overwrite=True)
        actions.append(SendNotification(block_document_id=block_id, subject=SUBJECT, body=body))
    automation = Automation(
        name=AUTOMATION_NAME, enabled=True, trigger=gate_trigger(), actions=actions,
        description=f"When a gate of a {BUILD_FLOW} run waits ({' or '.join(sorted(GATE_EVENTS))}), notify through "
                    f"{', '.join(name for name, _ in blocks)}.").create()
    echo(f"gate notifications: {', '.join(name for name, _ in blocks)} on {' and '.join(sorted(GATE_EVENTS))} of {BUILD_FLOW} runs "
         f"(automation '{AUTOMATION_NAME}')")
    return automation
