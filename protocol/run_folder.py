"""The run folder: every artifact of one build, where it lives and what model reads it.

Run folder (``runs/<run-id>/``)::

    run.json                    run id, request, core, gate mode, data folder, dataset root, flow run id, status
    request.json                the clinician's request and optional dataset name
    process.json                the flow process (pid, its start time, host): tells a live run from an interrupted one
    interruptions.json          what each resume after an interruption found and cleaned up
    plan.json                   Task Manager: chosen dataset, task, metric, reasons, candidates
    datacard.json               the chosen datacard, as it was when chosen
    dataset_manifest.json       size and time of every dataset file when first read: raw data must not change
    dataset_violation.json      when a stage changed the dataset: what changed (the run stops until restored)
    decisions/<gate>.json       each gate's answer: action, who, via (auto/terminal/prefect/cli), when
    gates/<gate>.md             the question each gate showed; gates/pending.json while one waits;
                                gates/unanswered.json when automatic approval stopped at a question
    layout.json                 Data Engineer: the submitted layout (where images, labels, masks, ids, split are)
    indexing_report.json        what the shared indexer found with it: counts, samples, unmatched files, questions
    index_build.json            whether the submitted layout could be applied, and why not
    indexer/                    the shared indexer's own folder (medbuilder runs it here, sandboxed)
    workspace/                  where the agents work (the only place they write)
      layout.json index/        Data Engineer's submitted layout; index/{train,test,label_dict}.json
      dataloader.py model.py train.py common.py engine.py config.json
      checkpoints/ metrics.json predictions.json train_log.jsonl train_output.log
    index_report.json           index checks: counts per split and class, problems
    fixed_split/                the test split and label map as approved at the dataset gate (the metric's split)
    metadata_audit.json         classifiers: AUROC of a metadata-only model (size, borders, format, scanner), cross-
                                validated on the training split by unit; shown at the dataset and review gates
    metadata_features.json      each audited image's acquisition features
    template_fill.json          which role chose each template key, or the template's default
    batch_check.json            the dataloader batch check
    metric_check.json           medbuilder's recomputation of the metric from the predictions
    trajectories/<role>-<n>.json  one per role attempt: messages, tool calls, tokens, timings
    feedback/<role>-<n>.json    why attempt n failed its check (attempt n+1 starts from it)
    logs/<name>.log             the output of the scripts each attempt ran; flow.log: the flow's log with every
                                traceback (the console shows one line per error)
    stages/<stage>.json         status, attempts, actions, tokens, seconds per stage
    rounds/<k>/                 round k's model: metrics, predictions, config, checkpoints/model.pt
    objective.json              what the model must not rely on: confounder, measure, limits (editable at review)
    report/round-<k>/           summary.json, figures (ROC, confusion matrix, Dice), interpretability.md/.json,
                                saliency-*.png, reliability.png, counterfactuals/ (roi confounders)
    refinement.json             the refinement the Model Trainer trains next (the last round's)
    refinements/round-<k>.json  the feedback that started round k and the changes made
    operating_point.json        the threshold the approved model is delivered at
    calibration.json            the temperature the approved model is delivered with, when asked for
    bundle/                     MONAI bundle of the approved round (configs/, models/, scripts/, docs/)
    model_card.md               data and split, metrics with 95% CIs, intended use, limits, decisions
    reevaluations/<date>.json   the nightly re-check of a delivered model on its test split
    external/<dataset>/         external validation on another datacard's images (`medbuilder evaluate`)
    failure.json                when a role gave up or a stage failed: what, why, the fix, the resume command

``ARTIFACTS`` lists the same entries with the model each is read with; a test keeps the two in step.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from medbuilder.protocol.artifacts import (Failure, Feedback, GateDecision, Plan, Refinement, Request, RoundSummary,
                                           RunRecord, StageRecord)
from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.indexing.report import IndexingReport
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.objective import Objective

T = TypeVar("T", bound=BaseModel)


class Artifact(NamedTuple):
    path: str  # relative to the run folder; <name> marks a part that varies; a trailing / a folder
    model: type[BaseModel] | None = None  # what a JSON artifact is read with (None: a file or folder read by the
    # module that writes it, or a record kept as written: process, interruptions, audit, checks)


ARTIFACTS: dict[str, Artifact] = {
    "run": Artifact("run.json", RunRecord),
    "request": Artifact("request.json", Request),
    "process": Artifact("process.json"),
    "interruptions": Artifact("interruptions.json"),
    "plan": Artifact("plan.json", Plan),
    "datacard": Artifact("datacard.json", Datacard),
    "dataset_manifest": Artifact("dataset_manifest.json"),
    "dataset_violation": Artifact("dataset_violation.json"),
    "decision": Artifact("decisions/<gate>.json", GateDecision),
    "gate_text": Artifact("gates/<gate>.md"),
    "layout": Artifact("layout.json", Layout),
    "indexing_report": Artifact("indexing_report.json", IndexingReport),
    "index_build": Artifact("index_build.json"),
    "indexer": Artifact("indexer/"),
    "workspace": Artifact("workspace/"),
    "index_report": Artifact("index_report.json"),
    "fixed_split": Artifact("fixed_split/"),
    "metadata_audit": Artifact("metadata_audit.json"),
    "metadata_features": Artifact("metadata_features.json"),
    "template_fill": Artifact("template_fill.json"),
    "batch_check": Artifact("batch_check.json"),
    "metric_check": Artifact("metric_check.json"),
    "trajectory": Artifact("trajectories/<role>-<n>.json"),
    "feedback": Artifact("feedback/<role>-<n>.json", Feedback),
    "log": Artifact("logs/<name>.log"),
    "stage": Artifact("stages/<stage>.json", StageRecord),
    "round": Artifact("rounds/<k>/"),
    "objective": Artifact("objective.json", Objective),
    "report": Artifact("report/round-<k>/"),
    "refinement": Artifact("refinement.json", Refinement),
    "refinements": Artifact("refinements/round-<k>.json", Refinement),
    "operating_point": Artifact("operating_point.json"),
    "calibration": Artifact("calibration.json"),
    "bundle": Artifact("bundle/"),
    "model_card": Artifact("model_card.md"),
    "reevaluation": Artifact("reevaluations/<date>.json"),
    "external": Artifact("external/<dataset>/"),
    "failure": Artifact("failure.json", Failure),
}


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

    # -------------------------------------------------------------- paths

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def index_dir(self) -> Path:
        return self.workspace / "index"

    def round_dir(self, k: int) -> Path:
        return self.root / "rounds" / str(k)

    def report_dir(self, k: int) -> Path:
        return self.root / "report" / f"round-{k}"

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    # -------------------------------------------------------------- typed artifacts

    def record(self) -> RunRecord:
        return self.read("run.json", RunRecord)

    def request(self) -> Request:
        return self.read("request.json", Request)

    def plan(self) -> Plan | None:
        return self.read("plan.json", Plan) if self.exists("plan.json") else None

    def datacard(self) -> Datacard | None:
        return self.read("datacard.json", Datacard) if self.exists("datacard.json") else None

    def objective(self) -> Objective | None:
        return self.read("objective.json", Objective) if self.exists("objective.json") else None

    def refinement(self) -> Refinement | None:
        return self.read("refinement.json", Refinement) if self.exists("refinement.json") else None

    def summary(self, k: int) -> RoundSummary | None:
        file = self.report_dir(k) / "summary.json"
        return RoundSummary.model_validate_json(file.read_text()) if file.exists() else None

    def write_summary(self, k: int, summary: dict) -> Path:
        """report/round-<k>/summary.json, checked against RoundSummary as it is written."""
        RoundSummary.model_validate(summary)
        return self.write(f"report/round-{k}/summary.json", summary)

    def recorded_dataset_root(self) -> Path | None:
        """The dataset folder run.json recorded when the dataset was chosen (None before, or in an older run)."""
        root = self.record().dataset_root if self.exists("run.json") else None
        return Path(root) if root else None

    @property
    def dataset_root(self) -> Path | None:
        """The chosen dataset's folder, as resolved when it was chosen (run.json); None before a dataset is."""
        recorded = self.recorded_dataset_root()
        if recorded:
            return recorded
        card = self.datacard()
        if card is None:
            return None
        from medbuilder.settings import get_settings  # a run folder from before run.json kept the root

        return get_settings().resolve_data_path(card.path)

    def choose_dataset(self, card: Datacard, data_dir: Path | None = None) -> Path:
        """Record the chosen card and its folder (under the data folder the run was created with)."""
        self.write("datacard.json", card.model_dump(mode="json"))
        record = self.record() if self.exists("run.json") else None
        base = Path(record.data_dir) if record and record.data_dir else data_dir
        root = card.path if card.path.is_absolute() or base is None else (base / card.path).resolve()
        if record is not None:
            record.dataset_root = str(root)
            self.write("run.json", record)
        return root

    def ask_for_dataset(self, name: str | None) -> None:
        """The dataset the clinician asks for (at the start, or picked at the dataset gate): request.json and
        run.json say the same."""
        self.write("request.json", self.request().model_copy(update={"dataset": name}))
        if self.exists("run.json"):
            self.write("run.json", self.record().model_copy(update={"dataset_hint": name}))

    # -------------------------------------------------------------- raw reads and writes

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
