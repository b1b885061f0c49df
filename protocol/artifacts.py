"""Typed artifacts of a build run.

Every stage reads and writes these as JSON under ``runs/<run-id>/``, through the run folder
(``run_folder.py``, whose docstring is the tree of the folder).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medbuilder.protocol.objective import Objective



def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord(BaseModel):
    run_id: str
    created: str = Field(default_factory=now)
    request: str
    dataset_hint: str | None = None
    core: str
    approve: str
    data_dir: str | None = Field(None, description="The data folder when the run was created: datacard paths "
                                                   "resolve under it for the life of the run.")
    dataset_root: str | None = Field(None, description="The chosen dataset's folder, resolved when it was chosen.")
    flow_run_id: str | None = None
    api_url: str | None = None
    status: str = "created"
    failed_role: str | None = Field(None, description="status 'failed': the role (or stage) that stopped the build.")
    failure_reason: str | None = Field(None, description="status 'failed': why, in one line (failure.json has more).")


class Request(BaseModel):
    """What the clinician asked for: the request's words and the dataset they named, if any."""

    text: str
    dataset: str | None = None


class Candidate(BaseModel):
    name: str
    score: float
    fits: bool
    reasons: list[str]


class Plan(BaseModel):
    """The Task Manager's plan: the chosen dataset and why, or why none fits."""

    status: Literal["ok", "no_fit"]
    request: str
    dataset: str | None = None
    task: str | None = None
    dimension: str | None = None
    metric: str | None = None
    reasons: list[str] = []
    candidates: list[Candidate] = []
    steps: list[str] = Field(default_factory=list, description="What each later role must do.")
    objective: Objective | None = Field(None, description="What the model must not rely on, if the request says.")


class GateDecision(BaseModel):
    gate: str
    action: str
    dataset: str | None = None
    layout: dict[str, Any] | None = Field(None, description="Dataset gate, action 'correct': the corrected layout.")
    reason: str | None = None
    feedback: str | None = None
    max_reliance: float | None = None
    max_metric_drop: float | None = None
    threshold: float | None = Field(None, description="Review gate, approve: the operating threshold set.")
    target: str | None = Field(None, description="Review gate, approve: sensitivity or specificity to reach.")
    target_value: float | None = None
    calibrate: bool | None = Field(None, description="Review gate, approve: deliver with the temperature fitted "
                                                     "on the validation split (report/round-<k>/calibration.json).")
    confounder: str | None = Field(None, description="Review gate, refine: the reading of the feedback, corrected.")
    measure: str | None = None
    strategies: list[str] | None = None
    who: str
    via: Literal["auto", "terminal", "prefect", "cli", "dashboard"]
    os_user: str | None = Field(None, description="The OS account of a CLI or dashboard answer.")
    when: str = Field(default_factory=now)


class StageRecord(BaseModel):
    stage: str
    status: Literal["pending", "running", "completed", "failed", "skipped"] = "pending"
    attempts: int = 0
    actions: int = 0
    tokens: int = 0
    started: str | None = None
    ended: str | None = None
    seconds: float = 0.0
    error: str | None = None
    outputs: list[str] = []
    result: dict[str, Any] = Field(default_factory=dict, description="What the stage returned (reused on resume).")


FeedbackKind = Literal["loss_not_finite", "out_of_memory"]


class Feedback(BaseModel):
    """Why a role's output failed its check; the next attempt starts from it."""

    role: str
    attempt: int
    problems: list[str]
    kinds: list[FeedbackKind] = Field(default_factory=list, description="What made the attempt fail, typed: what "
                                      "the next attempt adjusts (the problems say it in words).")
    attempts: list[str] = []  # how every attempt so far ended, this one last ("attempt 2: exit_format (...)")

    def text(self) -> str:
        return "\n".join(f"- {p}" for p in self.problems)


class Refinement(BaseModel):
    """How review feedback was read for round k: what the Model Trainer changes in that round."""

    model_config = ConfigDict(extra="allow")

    round: int
    feedback: str = ""
    objective: dict[str, Any] | None = None
    strategies: list[str] = []
    config: dict[str, Any] = Field(default_factory=dict, description="Template keys the round sets.")
    summary: str = ""


class RoundSummary(BaseModel):
    """report/round-<k>/summary.json: round k's figure with its interval, and what the review gate shows."""

    model_config = ConfigDict(extra="allow")

    round: int
    metric: str
    value: float | None
    ci95: list[float] | None = None
    n_train: int | None = None
    n_test: int | None = None
    unit: str | None = None
    n_units: int | None = None
    units_note: str | None = None
    interpretability: dict[str, Any] | None = None
    sections: list[str] = []


class Failure(BaseModel):
    """failure.json: which role or stage stopped the build, what it found, the fix and the resume command."""

    model_config = ConfigDict(extra="allow")

    role: str | None = None
    stage: str | None = None
    attempts: int | None = None
    status: str
    history: list[str] = []
    findings: list[str] = []
    fix: str
    resume: str
    log: str
