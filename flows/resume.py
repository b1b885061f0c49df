"""Answer a paused run's gate from another process: validate the input, resume through Prefect."""

from __future__ import annotations

import json
import urllib.request
from contextlib import nullcontext
from uuid import UUID

from pydantic import ValidationError

from medbuilder.flows.gates import GATE_INPUTS, gate_kind
from medbuilder.protocol.artifacts import RunFolder, RunRecord


class NotWaiting(RuntimeError):
    """The run is not paused at a gate."""


class GateInputError(ValueError):
    """The answer does not fit the gate's form; the message lists what is allowed."""


def _reachable(api_url: str | None) -> bool:
    if not api_url:
        return False
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def answer_gate(run: RunFolder, values: dict) -> str:
    """Resume the run waiting at its pending gate with `values`; returns the gate id."""
    if not run.exists("gates/pending.json"):
        status = run.read("run.json", RunRecord).status
        raise NotWaiting(f"run {run.run_id} is not waiting at a gate (status: {status}); "
                         "`medbuilder resume` continues a stopped run")
    pending = run.read_json("gates/pending.json")
    model = GATE_INPUTS[gate_kind(pending["gate"])]
    try:
        answer = model(**values)
    except ValidationError as err:
        allowed = model.model_fields["action"].annotation.__args__
        problems = "; ".join(e["msg"] for e in err.errors())
        raise GateInputError(f"gate {pending['gate']} cannot take {json.dumps(values)}: {problems}. "
                             f"Actions allowed here: {', '.join(allowed)}") from err
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = run.read("run.json", RunRecord).api_url
    scope = temporary_settings({PREFECT_API_URL: api_url}) if _reachable(api_url) else nullcontext()
    with scope:
        resume_flow_run(UUID(pending["flow_run_id"]), run_input=answer.model_dump(include=set(model.model_fields)))
    return pending["gate"]
