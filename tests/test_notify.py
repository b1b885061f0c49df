"""Gate notifications (medbuilder/stack/notify.py): the templates as the Prefect server renders them, and the
idempotent registration on a real Prefect server. The end-to-end path (a build pauses at its gate, the server's
automation POSTs to a webhook receiver) is in tests/test_schedules.py, which shares its stack."""

from __future__ import annotations

import pytest

from medbuilder.settings import Settings
from medbuilder.stack import notify


def _render(template: str, pause_keys: set[str]) -> str:
    from prefect.server.utilities.user_templates import render_user_template_sync

    flow_run = {"id": "0190-run", "name": "brave-otter", "parameters": {"request": "Classify", "dataset": "br35h"},
                "empirical_policy": {"pause_keys": pause_keys}}
    return render_user_template_sync(template, {"flow_run": flow_run})


@pytest.mark.parametrize("keys, waiting", [
    ({"dataset-1"}, "dataset-1"),
    ({"dataset-1", "dataset-2", "dataset-3"}, "dataset-3"),
    ({"dataset-1", "review-0"}, "review-0"),
    ({"dataset-2", "dataset-1", "review-1", "review-0"}, "review-1"),
    ({"dataset-1", "review-2", "review-10", "review-9"}, "review-10"),  # numbers, not strings, order rounds
    (set(), "?"),
])
def test_the_waiting_gate_is_the_newest_pause_key(keys, waiting):
    assert _render(notify.SUBJECT, keys) == f"medbuilder: gate {waiting} of brave-otter is waiting"
    body = _render(notify.body_template("http://127.0.0.1:4200/", "http://127.0.0.1:8501"), keys)
    lines = body.splitlines()
    assert lines[0] == "A medbuilder gate is waiting for an answer." and lines[1] == f"Gate: {waiting}"
    assert "Flow run: brave-otter (0190-run) of build_model" in lines
    assert "Prefect UI: http://127.0.0.1:4200/runs/flow-run/0190-run" in lines
    assert "Dashboard: http://127.0.0.1:8501" in lines and "Request: Classify" in lines


def test_without_links_the_body_has_none():
    body = _render(notify.body_template(None, None), {"dataset-1"})
    assert "Prefect UI:" not in body and "Dashboard:" not in body and "Gate: dataset-1" in body


@pytest.mark.slow
def test_registration_replaces_the_automation_and_off_removes_it(prefect_api):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    def named():
        with get_client(sync_client=True) as client:
            return [a for a in client.read_automations_by_name(notify.AUTOMATION_NAME)
                    if a.name == notify.AUTOMATION_NAME]

    first = notify.register_notifications(Settings(notify_webhook_url="http://127.0.0.1:9/a"), ui_url="http://ui")
    second = notify.register_notifications(Settings(notify_webhook_url="http://127.0.0.1:9/b",
                                                    dashboard_url="http://dash"), ui_url="http://ui")
    (automation,) = named()
    assert automation.id == second.id != first.id and automation.enabled
    trigger = automation.trigger
    assert trigger.expect == {"prefect.flow-run.Paused", "prefect.flow-run.Suspended"} and trigger.posture == "Reactive"
    assert trigger.match_related.model_dump() == {"prefect.resource.role": "flow",
                                                  "prefect.resource.name": "build_model"}
    (action,) = automation.actions
    assert action.type == "send-notification" and "Dashboard: http://dash" in action.body
    assert "http://ui/runs/flow-run/{{ flow_run.id }}" in action.body
    block = CustomWebhookNotificationBlock.load(notify.WEBHOOK_BLOCK)
    assert block.url == "http://127.0.0.1:9/b" and block._block_document_id == action.block_document_id
    assert block.json_data == {"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"}

    assert notify.register_notifications(Settings(notify_webhook_url="")) is None
    assert named() == []
