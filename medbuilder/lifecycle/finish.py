"""Close a run: its summary, the per-role table, and what a person needs when it failed."""

from __future__ import annotations

from medbuilder.agents.roles.base import RoleCheckFailed, RoleGaveUp
from medbuilder.agents.runner import attempt_history
from medbuilder.lifecycle.log import run_logger
from medbuilder.protocol.artifacts import StageRecord
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.stages.registry import ROLES, role_of


def role_table(run: RunFolder) -> dict[str, dict]:
    """Per role, over all its stages: iterations (attempts), actions (tool calls), tokens, seconds."""
    table: dict[str, dict] = {}
    for file in sorted((run.root / "stages").glob("*.json")):
        record = run.read(f"stages/{file.name}", StageRecord)
        role = role_of(record.stage)
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
    record = run.record()
    record.status = status
    if failure is not None:
        record.failed_role = failure.get("role") or failure.get("stage")
        record.failure_reason = "; ".join([failure["status"], *failure["findings"][:1]])[:300]
    run.write("run.json", record)
    summary = {"run_id": run.run_id, "run_dir": str(run.root), "status": status, "round": round_k}
    report = run.summary(round_k) if round_k is not None else None
    if report is not None:
        summary.update(metric=report.metric, value=report.value, ci95=report.ci95, units=report.units_note)
    summary["roles"] = role_table(run)
    if status == "delivered":
        summary["bundle"] = str(run.root / "bundle")
        summary["model_card"] = str(run.root / "model_card.md")
    if status == "no_fit":
        summary["reasons"] = run.plan().reasons
    if status == "needs_answer":
        summary["questions"] = run.read_json("gates/unanswered.json")
    if failure is not None:
        run.write("failure.json", failure)
        summary["failure"] = failure
    run_logger().info("run %s ended: %s", run.run_id, status)
    return summary
