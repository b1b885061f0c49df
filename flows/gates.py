"""Clinician gates: the dataset decision and the review decision.

In ``prefect`` mode a gate waits in the flow body for a typed answer: the Prefect UI shows the markdown
description and a form, and `medbuilder approve` or the dashboard (``medbuilder/lifecycle/answer.py``) resumes
the run with ``resume_flow_run(..., run_input=...)``. How it waits depends on how the run was started:

- **a deployment's run** (its flow run has a deployment_id: the dashboard, ``medbuilder up``, a worker of the
  pool) is *suspended*: ``suspend_flow_run(wait_for_input=..., key=<gate id>, timeout=...)`` sets the flow run
  Suspended and raises Prefect's ``Pause``, so the flow process exits and the worker or serve slot is free
  while the clinician thinks. ``gates/pending.json`` stays (``"suspended": true``) and ``run.json`` says
  ``suspended``. The answer reschedules the run (Scheduled, "Resuming"); a worker or the serve process runs the
  flow again from the top. That run continues the run folder whose ``run.json`` names its flow run
  (``run_dir_to_continue``); finished stages are skipped by their records in ``stages/``, earlier gates are
  read from ``decisions/``, and the same ``suspend_flow_run`` call, reached again with the same key, is
  refused by the server ("already fired") and returns the stored answer instead of suspending. No Prefect
  result persistence is needed: every value the flow body uses after a gate is read back from the run folder.
- **a run started from the CLI** (``medbuilder build``/``resume``: no deployment, nothing could run it again)
  keeps its process: ``pause_flow_run(wait_for_input=..., key=<gate id>)`` polls until the answer comes.

``auto`` records an automatic approval as such; ``terminal`` asks on the console. Every decision is written
to ``decisions/<gate>.json`` with who, when and how; a decision already on disk (a resumed run) is reused, so no
gate is asked twice.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, pause_flow_run, suspend_flow_run
from prefect.context import get_run_context
from prefect.input import RunInput

from medbuilder.lifecycle.gate_forms import GATE_INPUTS, answer_fields, answered_through, gate_kind
from medbuilder.protocol.artifacts import GateDecision, RunRecord, now
from medbuilder.protocol.run_folder import RunFolder

SUSPENDED = "suspended"  # run.json's status while a deployment's run waits at a gate with no process


def ask(run: RunFolder, gate_id: str, description: str, mode: str, *, timeout_s: int, poll_s: int,
        auto_answer: RunInput | None = None, initial: dict | None = None) -> GateDecision:
    """The decision for `gate_id`: from disk if already taken, else asked in `mode`.

    In ``auto`` mode the answer is `auto_answer` when given (e.g. "refine" while an objective is not
    met), else an approval; either way recorded as who="auto". `initial` fills the Prefect form
    (the dataset gate's inferred layout, to correct)."""
    file = f"decisions/{gate_id}.json"
    if run.exists(file):
        return run.read(file, GateDecision)
    model = GATE_INPUTS[gate_kind(gate_id)]
    _write_text(run, gate_id, description)
    if mode == "auto":
        answer, via = auto_answer or model(who="auto"), "auto"
    elif mode == "terminal":
        answer, via = _ask_terminal(model, description), "terminal"
    else:
        answer, via = _wait(run, gate_id, model, description, timeout_s, poll_s, initial or {}), "prefect"
    channel = answered_through(run, gate_id) if via == "prefect" else {}
    decision = GateDecision(gate=gate_id, via=channel.get("via", via), os_user=channel.get("os_user"),
                            **answer_fields(answer))
    run.write(file, decision)
    get_run_logger().info("gate %s: %s by %s via %s", gate_id, decision.action, decision.who, decision.via)
    return decision


def _write_text(run: RunFolder, gate_id: str, description: str) -> None:
    target = run.path(f"gates/{gate_id}.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(description)


def _wait(run: RunFolder, gate_id: str, model, description: str, timeout_s: int, poll_s: int, initial: dict):
    form = model.with_initial_data(description=description, **initial)
    flow_run = get_run_context().flow_run
    if flow_run.deployment_id is None:
        return _pause(run, gate_id, form, str(flow_run.id), timeout_s, poll_s)
    return _suspend(run, gate_id, form, flow_run, timeout_s)


def _pause(run: RunFolder, gate_id: str, form, flow_run_id: str, timeout_s: int, poll_s: int):
    """A run with no deployment: its process waits (nothing could start it again)."""
    run.write("gates/pending.json", {"gate": gate_id, "flow_run_id": flow_run_id, "asked": now()})
    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=poll_s, key=gate_id)
    finally:
        run.path("gates/pending.json").unlink(missing_ok=True)


def _suspend(run: RunFolder, gate_id: str, form, flow_run, timeout_s: int):
    """A deployment's run: suspend and exit (Prefect's Pause, a BaseException, passes through with the gate left
    pending). Reached again after the answer, the server refuses the same key and the call returns the answer."""
    if gate_id in (flow_run.empirical_policy.pause_keys or ()):  # the run again, after this gate's answer
        answer = suspend_flow_run(wait_for_input=form, key=gate_id, timeout=timeout_s)
        _stop_waiting(run)
        return answer
    run.write("gates/pending.json", {"gate": gate_id, "flow_run_id": str(flow_run.id), "asked": now(),
                                     "suspended": True})
    _set_status(run, SUSPENDED)
    try:
        answer = suspend_flow_run(wait_for_input=form, key=gate_id, timeout=timeout_s)
    except Exception:
        _stop_waiting(run)
        raise
    _stop_waiting(run)  # not suspended after all (the key had fired): the answer is here
    return answer


def _stop_waiting(run: RunFolder) -> None:
    run.path("gates/pending.json").unlink(missing_ok=True)
    _set_status(run, "running")


def _set_status(run: RunFolder, status: str) -> None:
    record = run.record()
    record.status = status
    run.write("run.json", record)


def run_dir_to_continue(runs_dir: Path) -> str | None:
    """The run folder a deployment's run continues when it runs again after a suspended gate was answered
    (the folder whose run.json names this flow run); None for a run that was never suspended."""
    flow_run = get_run_context().flow_run
    if flow_run.deployment_id is None or not flow_run.empirical_policy.pause_keys:
        return None
    for path in sorted(Path(runs_dir).glob("*/run.json")):
        try:
            record = RunRecord.model_validate_json(path.read_text())
        except (OSError, ValueError):
            continue  # a run folder being written, or not medbuilder's
        if record.flow_run_id == str(flow_run.id):
            return str(path.parent)
    raise FileNotFoundError(f"flow run {flow_run.id} was resumed after gate(s) "
                            f"{', '.join(sorted(flow_run.empirical_policy.pause_keys))}, but no run.json under "
                            f"{runs_dir} names it (another MEDBUILDER_RUNS_DIR, or `medbuilder resume` went on "
                            "with the run in a new flow run): run the worker with the runs folder the run began "
                            "in, or see `medbuilder runs`")


def was_asked(run: RunFolder, gate_id: str) -> bool:
    """The gate's question is written: what came before it in the flow body is done (a resumed run)."""
    return run.exists(f"gates/{gate_id}.md")


def _ask_terminal(model, description: str):
    import typer

    typer.echo(description)
    fields = {}
    for name, field in model.model_fields.items():
        default = "" if field.is_required() or field.default_factory or field.default is None else field.default
        fields[name] = typer.prompt(field.title or name, default=default, show_default=True) or None
        if name == "layout" and fields[name] and Path(fields[name]).expanduser().is_file():
            fields[name] = Path(fields[name]).expanduser().read_text()  # a corrected layout's file, on this console
        if name == "strategies" and fields[name]:
            fields[name] = [part.strip() for part in str(fields[name]).replace(",", " ").split()]
    return model(**{k: v for k, v in fields.items() if v is not None})


def stop_at_question(run: RunFolder, gate_id: str, description: str, questions: list[str]) -> None:
    """Automatic approval met questions: write them down and leave the gate unanswered.

    `medbuilder approve RUN ...` then records the answer (decisions/<gate>.json) and
    `medbuilder resume RUN` goes on from it."""
    _write_text(run, gate_id, description)
    run.write("gates/unanswered.json", {"gate": gate_id, "questions": questions, "asked": now()})
    get_run_logger().warning("gate %s: %d question(s) need an answer; automatic approval accepts only an "
                             "unambiguous layout", gate_id, len(questions))
