"""Clinician gates: the dataset decision and the review decision.

In ``prefect`` mode a gate is a real ``pause_flow_run(wait_for_input=...)`` in the
flow body: the Prefect UI shows the markdown description and a form for the
typed input, and `medbuilder approve` (or the dashboard) resumes the run with
``resume_flow_run``. ``auto`` records an automatic approval as such;
``terminal`` asks on the console. Every decision is written to
``decisions/<gate>.json`` with who, when and how; a decision already on disk
(a resumed run) is reused, so no gate is asked twice.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, pause_flow_run
from prefect.context import get_run_context
from prefect.input import RunInput

from medbuilder.lifecycle.gate_forms import GATE_INPUTS, answer_fields, answered_through, gate_kind
from medbuilder.protocol.artifacts import GateDecision, now
from medbuilder.protocol.run_folder import RunFolder


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
        answer, via = _pause(run, gate_id, model, description, timeout_s, poll_s, initial or {}), "prefect"
    channel = answered_through(run, gate_id) if via == "prefect" else {}
    decision = GateDecision(gate=gate_id, via=channel.get("via", via), os_user=channel.get("os_user"),
                            **answer_fields(answer))
    run.write(file, decision)
    get_run_logger().info("gate %s: %s by %s via %s", gate_id, decision.action, decision.who, via)
    return decision


def _write_text(run: RunFolder, gate_id: str, description: str) -> None:
    target = run.path(f"gates/{gate_id}.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(description)


def _pause(run: RunFolder, gate_id: str, model, description: str, timeout_s: int, poll_s: int, initial: dict):
    flow_run_id = str(get_run_context().flow_run.id)
    run.write("gates/pending.json", {"gate": gate_id, "flow_run_id": flow_run_id, "asked": now()})
    try:
        return pause_flow_run(wait_for_input=model.with_initial_data(description=description, **initial),
                              timeout=timeout_s, poll_interval=poll_s, key=gate_id)
    finally:
        run.path("gates/pending.json").unlink(missing_ok=True)


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
