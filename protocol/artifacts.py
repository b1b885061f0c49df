"""Typed artifacts of a build run, and the run folder that holds them.

Every stage reads and writes these as JSON under ``runs/<run-id>/``; the tree is
documented once, in ``medbuilder.flows.build`` (the flow's docstring).
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from medbuilder.protocol.objective import Objective

T = TypeVar("T", bound=BaseModel)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord(BaseModel):
    run_id: str
    created: str = Field(default_factory=now)
    request: str
    dataset_hint: str | None = None
    core: str
    approve: str
    flow_run_id: str | None = None
    api_url: str | None = None
    status: str = "created"
    failed_role: str | None = Field(None, description="status 'failed': the role (or stage) that stopped the build.")
    failure_reason: str | None = Field(None, description="status 'failed': why, in one line (failure.json has more).")


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


class Feedback(BaseModel):
    """Why a role's output failed its check; the next attempt starts from it."""

    role: str
    attempt: int
    problems: list[str]
    attempts: list[str] = []  # how every attempt so far ended, this one last ("attempt 2: exit_format (...)")

    def text(self) -> str:
        return "\n".join(f"- {p}" for p in self.problems)


class RunFolder:
    """Paths and typed reads/writes for one run; creates folders on write."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    @classmethod
    def new(cls, runs_dir: Path, slug: str = "build") -> "RunFolder":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run = cls(Path(runs_dir) / f"{stamp}-{slug}-{secrets.token_hex(2)}")
        run.root.mkdir(parents=True)
        return run

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def index_dir(self) -> Path:
        return self.workspace / "index"

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def write(self, name: str, artifact: BaseModel | dict | list) -> Path:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = artifact.model_dump(mode="json") if isinstance(artifact, BaseModel) else artifact
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(target)
        return target

    def read(self, name: str, model: type[T]) -> T:
        return model.model_validate_json((self.root / name).read_text())

    def read_json(self, name: str) -> Any:
        return json.loads((self.root / name).read_text())

    def stage(self, name: str) -> StageRecord:
        file = f"stages/{name}.json"
        return self.read(file, StageRecord) if self.exists(file) else StageRecord(stage=name)

    def save_stage(self, record: StageRecord) -> None:
        self.write(f"stages/{record.stage}.json", record)

    def stage_done(self, name: str) -> bool:
        return self.stage(name).status == "completed"
