"""Answer a paused run's gate from another process: validate the input, resume through Prefect.

A gate of a run with no deployment waits in its live flow process (Paused); a deployment's run is Suspended
with no process (``flows/gates.py``): the answer reschedules it, and a worker or the serve process runs it on."""

from __future__ import annotations

import getpass
import json
from contextlib import nullcontext
from uuid import UUID

from pydantic import ValidationError

from medbuilder.lifecycle.gate_forms import GATE_INPUTS, answer_fields, gate_kind, note_channel
from medbuilder.lifecycle.recovery import api_reachable, process_gone
from medbuilder.protocol.run_folder import RunFolder


class NotWaiting(RuntimeError):
    """The run is not paused at a gate."""


class GateInputError(ValueError):
    """The answer does not fit the gate's form; the message lists what is allowed."""


CLI_FLAGS = {"action": "--action", "dataset": "--dataset", "layout": "--layout", "reason": "--reason",
             "feedback": "--feedback", "who": "--who", "max_reliance": "--max-reliance",
             "max_metric_drop": "--max-metric-drop", "threshold": "--threshold", "target": "--target",
             "target_value": "--target-value", "confounder": "--confounder", "measure": "--measure",
             "strategies": "--strategy"}


def _flag(field: str) -> str:
    return f"{field} ({CLI_FLAGS[field]})" if field in CLI_FLAGS else field


def validate_answer(gate: str, values: dict):
    """The gate's typed answer from `values`; GateInputError names each bad field and what it takes."""
    model = GATE_INPUTS[gate_kind(gate)]
    allowed = [name for name in model.model_fields if name in CLI_FLAGS]
    foreign = [name for name in values if name not in model.model_fields]
    if foreign:
        raise GateInputError(f"gate {gate} does not take {', '.join(_flag(f) for f in foreign)}; it takes "
                             f"{', '.join(_flag(f) for f in allowed)}. Leave the others out.")
    try:
        answer = model(**values)
    except ValidationError as err:
        problems = "; ".join(_problem(model, e) for e in err.errors())
        raise GateInputError(f"gate {gate} cannot take {json.dumps(values)}: {problems}. The run still waits "
                             f"there: answer again with valid values") from err
    if getattr(answer, "action", None) == "pick":
        _check_dataset(gate, answer.dataset)
    return answer


def _check_dataset(gate: str, name: str) -> None:
    from medbuilder.protocol.registry import Registry
    from medbuilder.settings import get_settings

    try:
        Registry(get_settings().datacards_dir).get(name)
    except KeyError as err:
        raise GateInputError(f"gate {gate}: {_flag('dataset')}: {err.args[0]} The run still waits there.") from None


def _problem(model, error: dict) -> str:
    field = str(error["loc"][0]) if error.get("loc") else ""
    text = error["msg"].removeprefix("Value error, ")
    if field == "action":
        choices = model.model_fields["action"].annotation.__args__
        return f"{_flag(field)}: {text} (allowed: {', '.join(choices)})"
    if field in ("max_reliance", "max_metric_drop", "threshold", "target_value"):
        return f"{_flag(field)}: {text} (a fraction from 0 to 1, e.g. 0.2)"
    return f"{_flag(field)}: {text}" if field else text


def record_answer(run: RunFolder, values: dict, via: str = "cli") -> str:
    """Answer the gate a run stopped at (automatic approval met a question); `medbuilder resume` goes on from it."""
    from medbuilder.protocol.artifacts import GateDecision

    asked = run.read_json("gates/unanswered.json")
    model = GATE_INPUTS[gate_kind(asked["gate"])]
    answer = validate_answer(asked["gate"], values)
    run.write(f"decisions/{asked['gate']}.json",
              GateDecision(gate=asked["gate"], via=via, os_user=getpass.getuser(),
                           **answer_fields(answer)))
    run.path("gates/unanswered.json").unlink()
    return asked["gate"]


def answer_gate(run: RunFolder, values: dict, via: str = "cli") -> str:
    """Resume the run waiting at its pending gate with `values` (or record the answer to the question a
    stopped run left); returns the gate id."""
    if not run.exists("gates/pending.json") and run.exists("gates/unanswered.json"):
        return record_answer(run, values, via)
    if not run.exists("gates/pending.json"):
        status = run.record().status
        raise NotWaiting(f"run {run.run_id} is not waiting at a gate (status: {status}); "
                         "`medbuilder resume` continues a stopped run")
    pending = run.read_json("gates/pending.json")
    answer = validate_answer(pending["gate"], values)
    if not pending.get("suspended") and process_gone(run):  # a suspended gate has no process by design
        raise NotWaiting(f"run {run.run_id} was waiting at gate {pending['gate']}, but its flow process is gone "
                         f"(interrupted): `medbuilder resume {run.run_id}` starts it again at the same gate; "
                         "answer it then")
    from prefect.exceptions import FlowPauseTimeout, NotPausedError
    from prefect.flow_runs import resume_flow_run

    from medbuilder.stack.auth import api_settings

    api_url = run.record().api_url
    scope = api_settings(api_url) if api_reachable(api_url) else nullcontext()
    model = GATE_INPUTS[gate_kind(pending["gate"])]
    note_channel(run, pending["gate"], via)
    try:
        with scope:
            resume_flow_run(UUID(pending["flow_run_id"]),
                            run_input=answer.model_dump(include=set(model.model_fields), exclude_none=True))
    except (NotPausedError, FlowPauseTimeout) as err:
        raise NotWaiting(f"run {run.run_id}: flow run {pending['flow_run_id']} is no longer paused at gate "
                         f"{pending['gate']} ({err}); `medbuilder runs` shows its status") from err
    return pending["gate"]
