"""Every stage of a build, in the order a build runs them: its plain function, what it reads and writes in the
run folder, and how it runs as a Prefect task. The flow, the CLI's ``stage`` command, the dashboard and the
bench read this table; nothing else lists the stages or the roles.

Stage records are named after the stage, with a suffix where a stage runs more than once: ``task_manager-2``
(the second dataset round), ``model_trainer-1`` (refinement round 1), ``evaluate-0`` (round 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from medbuilder.stages.deliver import deliver_stage
from medbuilder.stages.evaluate import evaluate_stage
from medbuilder.stages.prepare import prepare_stage
from medbuilder.stages.roles import role_stage


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    function: Callable[..., dict]  # roles: (run_dir, role, core, record); per round: (run_dir, k); else (run_dir, record)
    phase: Literal["dataset", "build", "review"]  # before the dataset gate, after it, around the review gate
    reads: tuple[str, ...]  # run-folder artifacts (RunFolder.ARTIFACTS names)
    writes: tuple[str, ...]
    role: bool = False  # an agent role: its Prefect task retries while its check fails (the debug loops)
    per_round: bool = False  # run once per training round: the stage takes round_k, its record is <name>-<k>
    holds_training_slot: bool = False  # waits for a slot of the global training limit (`medbuilder up`)

    def run(self, run_dir: str, *, core: str | None = None, round_k: int = 0, record: str | None = None) -> dict:
        """The stage's plain function on the run folder `run_dir` (no Prefect needed)."""
        if self.role:
            return self.function(run_dir, self.name, core, record or self.name)
        if self.per_round:
            return self.function(run_dir, round_k)
        return self.function(run_dir, record or self.name)

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("task_manager", "pick the dataset that fits the request and write the plan",
          role_stage, "dataset",
          reads=("request",), writes=("plan", "datacard"), role=True),
    Stage("prepare_data", "lay the chosen dataset out from its recipe when the folder is missing; check it",
          prepare_stage, "dataset",
          reads=("datacard",), writes=("dataset_manifest",)),
    Stage("data_engineer", "survey the dataset and submit a layout; medbuilder builds and checks the index",
          role_stage, "dataset",
          reads=("plan", "datacard", "decision"),
          writes=("layout", "indexing_report", "index_build", "indexer", "workspace", "index_report"),
          role=True),
    Stage("module_architect", "copy the task's template, fill its data keys, check one batch",
          role_stage, "build",
          reads=("plan", "workspace"), writes=("workspace", "template_fill", "batch_check"), role=True),
    Stage("model_trainer", "choose hyperparameters, train, read the metric (medbuilder recomputes it)",
          role_stage, "build",
          reads=("plan", "workspace", "refinement", "fixed_split"), writes=("workspace", "metric_check"), role=True,
          holds_training_slot=True),
    Stage("evaluate", "metrics with intervals, figures and the interpretability report of round k",
          evaluate_stage, "review",
          reads=("plan", "workspace", "objective"), writes=("round", "report"), per_round=True),
    Stage("deliver", "the approved round as a MONAI bundle with its model card",
          deliver_stage, "review",
          reads=("round", "report", "operating_point", "calibration"), writes=("bundle", "model_card"),
          per_round=True),
)}

ROLES: tuple[str, ...] = tuple(name for name, stage in STAGES.items() if stage.role)
BUILD_ROLES: tuple[str, ...] = tuple(name for name in ROLES if STAGES[name].phase == "build")


def stage_of(record: str) -> Stage | None:
    """The stage a stage record (``model_trainer-1``, ``evaluate-0``, ``deliver``) belongs to."""
    return next((s for name, s in STAGES.items() if record == name or record.startswith(f"{name}-")), None)


def role_of(record: str) -> str | None:
    stage = stage_of(record)
    return stage.name if stage and stage.role else None
