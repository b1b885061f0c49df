"""The images of an external-validation set, read as medbuilder reads any dataset.

The set's datacard gives its folder; its layout is the card's own, or inferred from the files by the
offline Data Engineer's steps (survey with the preview tools, candidate layouts tried with the shared
indexer), and the shared indexer applies it in the sandbox, in ``runs/<id>/external/<name>/indexer/``.
Every record, whichever split the indexer put it on, is a validation case. Labels are mapped to the
model's class names (same names, or the clinician's ``--label-map``), and any image that copies one of
the run's own training or test images (same bytes, or a near-duplicate thumbnail) is set aside, so the
external figure never scores an image the model was trained or tuned on.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.indexing import DatasetFacts, IndexJob, IndexingReport
from medbuilder.protocol.indexing.apply import label_key
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.untrusted import read_text_nofollow


class ExternalDataError(ValueError):
    """The external set cannot be used as asked; the message says why and what to do."""


@dataclass
class ExternalSet:
    card: Datacard
    root: Path
    records: list[dict]
    label_map: dict[str, str]
    layout: list[str]
    set_aside: list[dict] = field(default_factory=list)


def check_card(card: Datacard, task: str, dimension: str, run_dataset: str) -> None:
    if card.name == run_dataset:
        raise ExternalDataError(f"{card.name} is the dataset the model was built on: name another datacard "
                                "(external validation uses images the model never saw)")
    if task not in [t.value for t in card.tasks] or not card.has_images:
        raise ExternalDataError(f"{card.name} does not serve {task} (its tasks: "
                                f"{', '.join(t.value for t in card.tasks)}; images: {card.has_images}): name a "
                                f"datacard of {task} images")
    if card.dimension != dimension:
        raise ExternalDataError(f"{card.name} holds {card.dimension} images and the model reads {dimension} ones")


def parse_label_map(pairs: list[str]) -> dict[str, str]:
    """['tumour=yes', 'normal=no'] -> {'tumour': 'yes', 'normal': 'no'}."""
    mapping = {}
    for pair in pairs:
        if "=" not in pair or not all(part.strip() for part in pair.split("=", 1)):
            raise ExternalDataError(f"--label-map {pair!r} is not EXTERNAL=MODEL (e.g. --label-map tumour=yes)")
        external, model = (part.strip() for part in pair.split("=", 1))
        mapping[external] = model
    return mapping


def resolve_label_map(external: list[str], model: list[str], given: dict[str, str], card: str,
                      normals: tuple[str | None, str | None] = (None, None)) -> dict[str, str]:
    """Each external label name -> the model's class name: the clinician's mapping, else the same name."""
    by_key = {label_key(n): n for n in model}
    unknown_keys = sorted(set(given) - set(external))
    wrong_values = sorted(v for v in given.values() if v not in model)
    if unknown_keys or wrong_values:
        raise ExternalDataError(
            f"--label-map names {', '.join(unknown_keys + wrong_values)}, which "
            f"{'are not labels of ' + card if unknown_keys else 'are not classes of the model'}: the labels of "
            f"{card} are {', '.join(external)} and the model's classes are {', '.join(model)}")
    mapping = {name: given.get(name) or by_key.get(label_key(name)) for name in external}
    missing = [name for name, target in mapping.items() if target is None]
    if missing:
        raise ExternalDataError(f"the labels of {card} ({', '.join(external)}) are not the model's classes "
                                f"({', '.join(model)}); say which is which, e.g. "
                                + " ".join(f"--label-map {k}={v}" for k, v in _suggestion(external, model, normals)))
    return mapping


def _suggestion(external: list[str], model: list[str], normals: tuple[str | None, str | None]) -> list[tuple[str, str]]:
    """A pairing to offer (never applied unasked): the two normal classes together, then in order."""
    ext_normal, model_normal = normals
    if ext_normal and model_normal and len(external) == len(model) == 2:
        return [(ext_normal, model_normal), (next(e for e in external if e != ext_normal),
                                             next(m for m in model if m != model_normal))]
    return list(zip(external, model))


def card_layout(card: Datacard, facts: DatasetFacts, work: Path) -> Layout:
    """The card's layout, else the one the offline Data Engineer infers from the files."""
    if card.layout is not None:
        return card.layout
    from medbuilder.agents.layout.choose import choose
    from medbuilder.agents.layout.propose import CardFacts, proposals_for
    from medbuilder.agents.roles.data_engineer import take_survey, try_layout
    from medbuilder.agents.scripted import play
    from medbuilder.protocol.tools import Workspace

    def infer(act):  # the offline Data Engineer's inference, in the agents' loop
        survey = take_survey(act, facts.root)
        wanted = CardFacts(task=facts.task, dimension=facts.dimension, label_names=card.label_names,
                           synonyms=card.label_synonyms, description=card.description)
        return choose(proposals_for(survey, wanted), lambda candidate: try_layout(act, candidate), wanted)

    workspace = replace(Workspace.create(work, [Path(facts.root)]), dataset=facts)
    found = play(infer, workspace, ["preview_dirs", "preview_files", "load_med_data", "apply_layout"],
                 "external_validation")
    layout, tried = found
    if layout is None or not layout.resolved:
        seen = "; ".join(t.error or t.proposal.what for t in tried) or "no class folders or label tables"
        raise ExternalDataError(f"no layout explains the labels of {card.name} in {facts.root} ({seen}): add a "
                                "`layout` to its datacard (`medbuilder datacards draft` writes one)")
    return layout


def index_external(card: Datacard, root: Path, task: str, folder: Path, settings) -> tuple[list[dict], Layout]:
    """Every record the layout gives (train and test side alike), indexed in the sandbox in `folder`."""
    from medbuilder.agents.layout.labels import LabelMatcher
    from medbuilder.agents.roles.index_build import run_indexer

    facts = DatasetFacts(root=str(root), task=task, dimension=card.dimension, label_names=card.label_names,
                         normal_class=LabelMatcher(card.label_names).normal)
    with tempfile.TemporaryDirectory(prefix="medbuilder-external-") as work:
        layout = card_layout(card, facts, Path(work))
    report = run_indexer(folder, root, IndexJob.of(facts, layout), settings)
    if isinstance(report, str):
        raise ExternalDataError(f"the layout of {card.name} could not be applied: {report}")
    records = []
    for split in ("train.json", "test.json"):
        try:
            records += json.loads(read_text_nofollow(folder, f"index/{split}"))
        except FileNotFoundError:
            continue
    if not records:
        raise ExternalDataError(f"no image of {card.name} in {root} got a label: {_why(report)}")
    return records, layout


def _why(report: IndexingReport) -> str:
    misses = "; ".join(f"{m.image}: {m.reason}" for m in report.unmatched_examples[:3])
    return f"{report.images_found} images found, {report.records} matched" + (f" ({misses})" if misses else "")


def copies_of_run_images(external: list[str], run_images: list[str]) -> tuple[dict[str, str], int]:
    """(external image -> a run image it copies (same sha256, or near-duplicate thumbnails), how many images
    could be compared by their bytes only (not decodable as pictures: DICOM, volumes))."""
    from medbuilder.protocol.datasets.near_duplicates import duplicate_keys
    from medbuilder.protocol.splits import group_by_keys

    undecoded: list[str] = []
    groups = group_by_keys(duplicate_keys([Path(p) for p in [*external, *run_images]], unreadable=undecoded))
    first_run_image: dict[int, str] = {}
    for path, group in zip(run_images, groups[len(external):]):
        first_run_image.setdefault(group, path)
    copies = {image: first_run_image[group] for image, group in zip(external, groups[:len(external)])
              if group in first_run_image}
    return copies, len(undecoded)


def run_images(run, root: Path | None) -> list[str]:
    """The run's own training and test images (its index), those inside its dataset folder only."""
    images = []
    for split in ("train.json", "test.json"):
        try:
            images += [str(r.get("image")) for r in json.loads(read_text_nofollow(run.index_dir, split))]
        except FileNotFoundError:
            continue
    if root is None:
        return []
    root = root.resolve()
    return [p for p in images if Path(p).resolve().is_relative_to(root) and Path(p).resolve().is_file()]
