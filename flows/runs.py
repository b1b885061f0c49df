"""Open a run folder for the flow (new or resumed) and close it with a status."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import get_run_context

from medbuilder.flows.recovery import describe, record_process, recover
from medbuilder.protocol.artifacts import RunFolder, RunRecord, StageRecord
from medbuilder.settings import Settings


class BadRequest(ValueError):
    """A request the flow cannot start from; the message says what to write instead."""


def check_request(text: str) -> str:
    cleaned = " ".join((text or "").split())
    if len(re.findall(r"[a-zA-Z]{2,}", cleaned)) < 3:
        raise BadRequest(f"the request {text!r} is empty or too short to act on: describe the model in a sentence, "
                         "e.g. \"Classify brain MRI slices as tumour or no tumour\"")
    return cleaned


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:4]) or "build"


def _api_url() -> str | None:
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


def open_run(settings: Settings, request: str, dataset: str | None, core: str | None, approve: str | None,
             run_dir: str | None) -> tuple[RunFolder, str, str]:
    """The run folder, and the core and gate mode it runs with (a resumed run keeps its own)."""
    if run_dir and (Path(run_dir) / "run.json").exists():
        run = RunFolder(Path(run_dir))
        record = run.read("run.json", RunRecord)
        entry = recover(run, record)
        if entry.get("status_was") in ("running", "interrupted"):
            get_run_logger().warning("run %s was interrupted; recovered: %s", run.run_id, describe(entry))
        record.core, record.approve = core or record.core, approve or record.approve
    else:
        text = check_request(request)
        run = RunFolder(Path(run_dir)) if run_dir else RunFolder.new(settings.runs_dir, _slug(text))
        run.root.mkdir(parents=True, exist_ok=True)
        run.write("request.json", {"text": text, "dataset": dataset})
        record = RunRecord(run_id=run.run_id, request=text, dataset_hint=dataset, core=core or settings.core,
                           approve=approve or settings.approve)
    record.flow_run_id, record.api_url, record.status = str(get_run_context().flow_run.id), _api_url(), "running"
    run.write("run.json", record)
    record_process(run)
    get_run_logger().info("run folder %s (core %s, gates %s)", run.root, record.core, record.approve)
    return run, record.core, record.approve


ROLES = ("task_manager", "data_engineer", "module_architect", "model_trainer")


def role_table(run: RunFolder) -> dict[str, dict]:
    """Per role, over all its stages: iterations (attempts), actions (tool calls), tokens, seconds."""
    table: dict[str, dict] = {}
    for file in sorted((run.root / "stages").glob("*.json")):
        record = run.read(f"stages/{file.name}", StageRecord)
        role = next((r for r in ROLES if record.stage == r or record.stage.startswith(f"{r}-")), None)
        if role:
            row = table.setdefault(role, {"iterations": 0, "actions": 0, "tokens": 0, "seconds": 0.0})
            row["iterations"] += record.attempts
            row["actions"] += record.actions
            row["tokens"] += record.tokens
            row["seconds"] = round(row["seconds"] + record.seconds, 1)
    return {role: table[role] for role in ROLES if role in table}


def _last_failed_stage(run: RunFolder) -> StageRecord | None:
    """The stage that failed last; a record that cannot be read is passed over (the failure is still reported)."""
    for path in sorted((run.root / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            record = run.read(f"stages/{path.name}", StageRecord)
        except (OSError, ValueError):
            continue
        if record.status == "failed":
            return record
    return None


def failure_of(run: RunFolder, err: BaseException) -> dict:
    """What a person needs when a build stops: which role or stage, how many attempts, the findings, the fix."""
    from medbuilder.agents.roles.base import RoleCheckFailed, RoleGaveUp
    from medbuilder.agents.runner import attempt_history

    failed = _last_failed_stage(run)
    history: list[str] = []
    if isinstance(err, RoleCheckFailed):
        role, findings, status = err.feedback.role, err.feedback.problems, "its check failed on every attempt"
        history = err.feedback.attempts
    elif isinstance(err, RoleGaveUp):
        role, findings = err.role, err.problems
        status = "another attempt would repeat the last one unchanged (no alternative left)"
        history = attempt_history(run, err.role)
    else:
        role, findings, status = None, [f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"], \
            "it stopped with an error"
    stage = failed.stage if failed else role
    attempts = failed.attempts if failed else None
    return {"role": role, "stage": stage, "attempts": attempts, "status": status, "history": history,
            "findings": findings[:6],
            "fix": "fix what the findings name (the dataset's files, the datacard, or the request), then resume; "
                   "answered gates and finished stages are not redone",
            "resume": f"medbuilder resume {run.run_id}", "log": str(run.path("logs/flow.log"))}


def finish(run: RunFolder, status: str, round_k: int | None = None, failure: dict | None = None) -> dict:
    record = run.read("run.json", RunRecord)
    record.status = status
    if failure is not None:
        record.failed_role = failure.get("role") or failure.get("stage")
        record.failure_reason = "; ".join([failure["status"], *failure["findings"][:1]])[:300]
    run.write("run.json", record)
    summary = {"run_id": run.run_id, "run_dir": str(run.root), "status": status, "round": round_k}
    if round_k is not None and run.exists(f"report/round-{round_k}/summary.json"):
        report = run.read_json(f"report/round-{round_k}/summary.json")
        summary.update(metric=report["metric"], value=report["value"], ci95=report.get("ci95"),
                       units=report.get("units_note"))
    summary["roles"] = role_table(run)
    if status == "delivered":
        summary["bundle"] = str(run.root / "bundle")
        summary["model_card"] = str(run.root / "model_card.md")
    if status == "no_fit":
        summary["reasons"] = run.read_json("plan.json")["reasons"]
    if status == "needs_answer":
        summary["questions"] = run.read_json("gates/unanswered.json")
    if failure is not None:
        run.write("failure.json", failure)
        summary["failure"] = failure
    get_run_logger().info("run %s ended: %s", run.run_id, status)
    return summary
