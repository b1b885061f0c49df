"""The gates' forms: the typed answers a clinician gives at the dataset gate and at the review gate.

The flow pauses with them (``flows/gates.py``); the CLI, the dashboard and the Prefect UI answer with them
(``answer.py``). Each answer is recorded as a GateDecision with who, when and how it came.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.input import RunInput
from pydantic import ConfigDict, Field, field_validator, model_validator

from medbuilder.protocol.artifacts import now
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.run_folder import RunFolder


def _who():
    return Field(min_length=1, title="Your name", description="Your name or staff id: recorded with the decision "
                 "and on the model card.")
MEASURES = ("counterfactual_flip_rate", "attribution_share", "subgroup_gap", "confounded_fpr")
STRATEGY_IDS = ("roi", "counterfactual_aug", "mask_confounder", "group_balanced")


def _plain_optional_fields(schema: dict) -> None:
    """Show an optional field in the Prefect UI's form as its own type (a number box), not as a toggle between
    the type and null; leaving it empty still means 'not given' (the server checks answers against this schema,
    so medbuilder's own channels leave out what is not given rather than send null)."""
    for prop in schema.get("properties", {}).values():
        kinds = prop.get("anyOf")
        if kinds and {"type": "null"} in kinds and len(kinds) == 2:
            prop.update(next(k for k in kinds if k != {"type": "null"}))
            del prop["anyOf"]
            if prop.get("default", 0) is None:  # an empty box is left out of the answer, not sent as null
                del prop["default"]


class DatasetDecision(RunInput):
    """approve the chosen dataset and its layout, pick another dataset by name, correct the layout
    (a layout as JSON: the form starts from the inferred one), or reject with a reason."""

    model_config = ConfigDict(json_schema_extra=_plain_optional_fields)

    action: Literal["approve", "pick", "correct", "reject"] = Field(
        "approve", title="Your decision", description="approve: use the index as shown; pick: use another datacard "
        "(name it below); correct: give the corrected layout below; reject: stop the run.")
    dataset: str = Field("", title="Other datacard (for pick)", description="The name of the datacard to use "
                         "instead, as listed on the Datacards page or by `medbuilder datacards list`.")
    layout: dict[str, Any] | None = Field(None, title="Corrected layout (for correct)", description="Where images, "
                                          "labels, masks, patient ids and the split are; starts from the inferred "
                                          "layout shown above.")
    reason: str = Field("", title="Reason (for reject)", description="Why the dataset cannot be used: kept in "
                        "the run record.")
    who: str = _who()

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
    """approve the model (at the operating point shown, or at a threshold or target you set), refine it with
    feedback in plain words (the reading of the words can be corrected), or reject it."""

    model_config = ConfigDict(json_schema_extra=_plain_optional_fields)

    action: Literal["approve", "refine", "reject"] = Field(
        "approve", title="Your decision", description="approve: deliver this round's model; refine: train another "
        "round with your feedback; reject: stop the run.")
    feedback: str = Field("", title="Feedback (for refine)", description="In plain words what should change, e.g. "
                          "'it must not rely on the text on the image' or 'train longer'.")
    reason: str = Field("", title="Reason (for reject)", description="Why the model cannot be used.")
    max_reliance: float | None = Field(None, ge=0, le=1, title="Max reliance (optional)", description="The most "
                                       "reliance on the confounder you accept, on the measure's 0-1 scale (e.g. "
                                       "0.2). Empty: keep the objective's.")
    max_metric_drop: float | None = Field(None, ge=0, le=1, title="Max metric drop (optional)", description=
                                          "How far AUROC, sensitivity and specificity may fall below round 0 "
                                          "(e.g. 0.02). Empty: keep the objective's.")
    threshold: float | None = Field(None, ge=0, le=1, title="Operating threshold (for approve, optional)",
                                    description="Call a case positive when its probability is at least this. "
                                    "Empty: 0.5, or the threshold that reaches the target below.")
    target: Literal["", "sensitivity", "specificity"] = Field(
        "", title="Target (for approve, optional)", description="Choose the threshold that reaches this rate: "
        "sensitivity (miss fewer diseased cases) or specificity (fewer false alarms).")
    target_value: float | None = Field(None, ge=0, le=1, title="Target value (optional)",
                                       description="The rate to reach, e.g. 0.95.")
    calibrate: bool = Field(False, title="Calibrate (for approve)", description="Deliver the model with the "
                            "temperature fitted on the validation split (shown under Calibration): the same calls, "
                            "probabilities that match observed rates better.")
    confounder: str = Field("", title="Confounder (for refine, optional)", description="Correct how your feedback "
                            "was read: the datacard's name of what the model must not rely on.")
    measure: Literal["", *MEASURES] = Field("", title="Measure (for refine, optional)", description="Correct how "
                                            "reliance is measured.")
    strategies: list[Literal[*STRATEGY_IDS]] = Field(
        default_factory=list, title="Strategies (for refine, optional)", description="Correct which refinement "
        "strategies the round uses (roi: keep only the region; counterfactual_aug: twins with the confounder "
        "toggled; mask_confounder: inpaint it; group_balanced: balance the groups). Empty: medbuilder's choice.")
    who: str = _who()

    @model_validator(mode="after")
    def _complete(self) -> "ReviewDecision":
        if self.action == "refine" and not self.feedback.strip() and not self.confounder:
            raise ValueError("action 'refine' needs 'feedback': say in plain words what should change")
        if bool(self.target) != (self.target_value is not None):
            raise ValueError("'target' and 'target_value' go together, e.g. target sensitivity, target_value 0.95")
        if self.target and self.threshold is not None:
            raise ValueError("give either 'threshold' or a target ('target' and 'target_value'), not both")
        return self


GATE_INPUTS = {"dataset": DatasetDecision, "review": ReviewDecision}


def gate_kind(gate_id: str) -> str:
    return gate_id.split("-")[0]


def answer_fields(answer: RunInput) -> dict:
    """The answer's fields for its GateDecision record; an empty text or list is 'not given'."""
    return {k: v for k, v in answer.model_dump(include=set(type(answer).model_fields)).items()
            if v not in ("", [], None)}


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
