"""Work the roles need whichever core acts, as tools: rank the datacards, fill a template's data keys, choose the
training keys. Both cores reach them the same way, and every result a decision uses is a tool result in the
trajectory. The index files are read from the workspace without following links (agents can write there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from medbuilder.agents.hyperparameters import TRAINING_KEYS, choose_hyperparameters
from medbuilder.agents.planning import draft_plan
from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.registry import CARD_SUFFIXES, DatacardError, load_card
from medbuilder.protocol.templates import build_config, get_template, suggest_values
from medbuilder.protocol.tools.context import ToolError, Workspace, natural_key
from medbuilder.protocol.tools.registry import ToolSpec
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow


@dataclass
class Ranking:
    plan: Plan
    left_out: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        note = f"\n(cards left out, they do not load: {', '.join(self.left_out)})" if self.left_out else ""
        return self.plan.model_dump_json(indent=1) + note


@dataclass
class ConfigDraft:
    config: dict
    data_keys: dict

    def as_text(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.data_keys.items() if k != "index_dir")
        return f"data keys: {shown}\nconfig.json:\n{json.dumps(self.config, indent=1)}"


@dataclass
class TrainingChoice:
    values: dict
    reasons: list[str]

    def as_text(self) -> str:
        return json.dumps(self.values) + "\nwhy: " + "; ".join(self.reasons)


def rank_datacards(ctx: Workspace, request: str, datacards_dir: str, dataset: str | None = None) -> Ranking:
    """Rank every datacard of a folder against the request and draft the plan.

    A card whose task, modality, anatomy, dimension or named findings contradict the request is ruled out;
    the others are ranked by how close their description is in meaning. The draft names the card to use (the
    one the clinician named, unless it cannot serve the task), the task, the metric, the reasons and every
    card's score, or says that none fits and why. Write it to plan.json as it is, or change it and say why.

    Args:
        request: The clinician's request, as written.
        datacards_dir: The folder of datacards (*.yaml, *.json).
        dataset: The datacard the clinician named, if any.
    """
    folder = ctx.existing(datacards_dir, kind="dir")
    cards, left_out = [], []
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.suffix not in CARD_SUFFIXES or path.is_symlink() or not path.is_file():
            continue
        try:
            cards.append(load_card(path))
        except DatacardError:
            left_out.append(path.name)  # `medbuilder datacards validate` names the problem
    return Ranking(draft_plan(request, cards, dataset or None), left_out)


def _read_index(ctx: Workspace, index_dir: str, task: str) -> tuple[DataIndex, Path]:
    folder = ctx.existing(index_dir, kind="dir")
    try:
        rel = folder.relative_to(ctx.root)
    except ValueError:
        raise ToolError(f"'{index_dir}' is not in the workspace; the index is in index/ there") from None

    def load(name: str):
        return json.loads(read_text_nofollow(ctx.root, str(rel / name)))

    try:
        labels = load("label_dict.json") if (folder / "label_dict.json").exists() else {}
        return DataIndex(task=task, train=load("train.json"), test=load("test.json"), label_dict=labels), folder
    except (FileNotFoundError, UntrustedFileError, ValueError, ValidationError) as err:
        raise ToolError(f"the index in '{index_dir}' cannot be read ({str(err).splitlines()[0]}); it must hold "
                        "train.json, test.json and label_dict.json") from None


def suggest_config(ctx: Workspace, task: str, dimension: str, index_dir: str = "index") -> ConfigDraft:
    """The task template's config.json with the keys that follow from the data filled in.

    The data keys (image size, channels, classes, spatial dimensions) are read from the index and a sample of
    its images; every other key keeps the template's default. Training keys (epochs, batch size, learning
    rate) are left to the Model Trainer.

    Args:
        task: diagnosis, segmentation, anomaly_detection or report_generation.
        dimension: 2D or 3D.
        index_dir: The folder with train.json, test.json and label_dict.json (default: index/ in the workspace).
    """
    index, folder = _read_index(ctx, index_dir, task)
    values = suggest_values(task, index, dimension)
    data_keys = {k: v for k, v in values.items() if k not in TRAINING_KEYS} | {"index_dir": str(folder)}
    config, _, _ = build_config(get_template(task), data_keys)
    return ConfigDraft(config, data_keys)


def choose_training(ctx: Workspace, task: str, dimension: str, index_dir: str = "index", lower_lr: bool = False,
                    halve_batch: bool = False, time_limit_s: float | None = None, max_epochs: int | None = None,
                    epochs: int | None = None) -> TrainingChoice:
    """Training keys for config.json, chosen from the data, with the reason for each.

    Epochs and batch size follow the data size and dimension, class weights the class balance; with fewer than
    1,000 independent training items (patients, duplicate groups) nothing is held out for validation.

    Args:
        task: diagnosis, segmentation, anomaly_detection or report_generation.
        dimension: 2D or 3D.
        index_dir: The folder with train.json, test.json and label_dict.json (default: index/ in the workspace).
        lower_lr: Lower the learning rate (the last loss was not finite).
        halve_batch: Halve the batch size (the last training ran out of memory).
        time_limit_s: Stop training after this many seconds.
        max_epochs: Train at most this many epochs.
        epochs: Train exactly this many epochs.
    """
    index, _ = _read_index(ctx, index_dir, task)
    adjust = [kind for kind, wanted in (("loss_not_finite", lower_lr), ("out_of_memory", halve_batch)) if wanted]
    values, reasons = choose_hyperparameters(task, index, dimension, adjust, time_limit_s, max_epochs, epochs)
    return TrainingChoice(values, reasons)


WORK_TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec("rank_datacards", rank_datacards, "planning"),
    ToolSpec("suggest_config", suggest_config, "planning"),
    ToolSpec("choose_training", choose_training, "planning"),
)}
