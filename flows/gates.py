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
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from prefect import get_run_logger, pause_flow_run
from prefect.context import get_run_context
from prefect.input import RunInput

from medbuilder.protocol.artifacts import GateDecision, RunFolder, now
from medbuilder.protocol.layout import Layout


class DatasetDecision(RunInput):
    """approve the chosen dataset and its layout, pick another dataset by name, correct the layout
    (a layout as JSON: the form starts from the inferred one), or reject with a reason."""

    action: Literal["approve", "pick", "correct", "reject"] = "approve"
    dataset: str | None = None
    layout: dict[str, Any] | None = None
    reason: str | None = None
    who: str = "clinician"

    @field_validator("layout", mode="before")
    @classmethod
    def _layout_text(cls, value: Any) -> Any:
        return layout_from_text(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _complete(self) -> "DatasetDecision":
        if self.action == "pick" and not self.dataset:
            raise ValueError("action 'pick' needs 'dataset': the name of the datacard to use instead")
        if self.action == "correct":
            if not self.layout:
                raise ValueError("action 'correct' needs 'layout': the corrected layout (JSON, or a file holding it)")
            self.layout = Layout.model_validate(self.layout).model_dump(mode="json", exclude_none=True)
        return self


def layout_from_text(text: str | None) -> dict | None:
    """A layout written as JSON or YAML text (never a path: the CLI and the console read their files themselves)."""
    import yaml

    text = (text or "").strip()
    if not text:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"the layout is not valid JSON or YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError("the layout must be an object with fields such as task, images, label")
    return data


class ReviewDecision(RunInput):
    """approve the model, refine it with feedback in plain words, or reject it; max_reliance and
    max_metric_drop edit the objective's numbers."""

    action: Literal["approve", "refine", "reject"] = "approve"
    feedback: str | None = None
    reason: str | None = None
    max_reliance: float | None = Field(None, ge=0, le=1)
    max_metric_drop: float | None = Field(None, ge=0, le=1)
    who: str = "clinician"

    @model_validator(mode="after")
    def _complete(self) -> "ReviewDecision":
        if self.action == "refine" and not (self.feedback or "").strip():
            raise ValueError("action 'refine' needs 'feedback': say in plain words what should change")
        return self


GATE_INPUTS = {"dataset": DatasetDecision, "review": ReviewDecision}


def gate_kind(gate_id: str) -> str:
    return gate_id.split("-")[0]


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
                            **answer.model_dump(include=set(model.model_fields)))
    run.write(file, decision)
    get_run_logger().info("gate %s: %s by %s via %s", gate_id, decision.action, decision.who, via)
    return decision


def note_channel(run: RunFolder, gate_id: str, via: str) -> None:
    """Written by the CLI or the dashboard just before it resumes the flow: how the answer came and from which
    OS account; an answer typed into the Prefect UI leaves no note and is recorded as via 'prefect'."""
    import getpass

    run.write(f"gates/{gate_id}.channel.json", {"via": via, "os_user": getpass.getuser(), "when": now()})


def answered_through(run: RunFolder, gate_id: str) -> dict:
    file = f"gates/{gate_id}.channel.json"
    if not run.exists(file):
        return {}
    note = run.read_json(file)
    run.path(file).unlink(missing_ok=True)
    return note if note.get("via") in ("cli", "dashboard") else {}


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
        default = field.default if field.default is not None else ""
        fields[name] = typer.prompt(name, default=default, show_default=True) or None
        if name == "layout" and fields[name] and Path(fields[name]).expanduser().is_file():
            fields[name] = Path(fields[name]).expanduser().read_text()  # a corrected layout's file, on this console
    return model(**fields)


def stop_at_question(run: RunFolder, gate_id: str, description: str, questions: list[str]) -> None:
    """Automatic approval met questions: write them down and leave the gate unanswered.

    `medbuilder approve RUN ...` then records the answer (decisions/<gate>.json) and
    `medbuilder resume RUN` goes on from it."""
    _write_text(run, gate_id, description)
    run.write("gates/unanswered.json", {"gate": gate_id, "questions": questions, "asked": now()})
    get_run_logger().warning("gate %s: %d question(s) need an answer; automatic approval accepts only an "
                             "unambiguous layout", gate_id, len(questions))
