"""A draft datacard for a user's own folder: the inferred layout, counts, formats, a modality guess.

The same steps as the offline Data Engineer (survey through the preview tools, candidate layouts
tried with ``apply_layout``), with no label names given: the classes are the values found. The user
reads the draft, corrects what it guessed (marked EDIT) and adds it with ``medbuilder datacards add``.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from medbuilder.agents.layout.choose import choose
from medbuilder.agents.layout.propose import CardFacts, proposals_for
from medbuilder.agents.layout.survey import DICOM_EXTENSIONS, Survey
from medbuilder.agents.scripted import Actor, play
from medbuilder.protocol.indexing import DatasetFacts, IndexingReport
from medbuilder.protocol.indexing.discover import extension_of
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.tools import Workspace

TOOLS = ["preview_dirs", "preview_files", "load_med_data", "apply_layout"]
VOLUME_EXTENSIONS = ("nii", "nii.gz", "mha", "mhd", "nrrd")
MODALITIES = {"MR": "MRI", "CT": "CT", "CR": "X-ray", "DX": "X-ray", "DR": "X-ray", "US": "ultrasound",
              "MG": "mammography", "PT": "PET", "NM": "nuclear medicine", "OP": "fundus", "XA": "angiography"}


class DraftError(ValueError):
    """The folder gives nothing to draft from; the message says what was seen."""


def _workspace(folder: Path, task: str, dimension: str, work: Path) -> Workspace:
    facts = DatasetFacts(root=str(folder), task=task, dimension=dimension, label_names=[])
    return replace(Workspace.create(work, [folder]), dataset=facts)


def guess_dimension(act: Actor, survey: Survey) -> str:
    """3D when most images are volumes, or when two DICOM files of one folder belong to one series."""
    exts = survey.image_extensions()
    volumes = sum(n for e, n in exts.items() if e in VOLUME_EXTENSIONS)
    if volumes > sum(exts.values()) / 2:
        return "3D"
    return "3D" if survey.is_dicom() and _one_series_per_folder(act, survey) else "2D"


def _one_series_per_folder(act: Actor, survey: Survey) -> bool:
    def dicom_names(folder):
        return [n for n in folder.image_names() if extension_of(n) in (*DICOM_EXTENSIONS, "")]

    folder = max(survey.image_folders(), key=lambda f: len(dicom_names(f)))
    names = dicom_names(folder)
    if len(names) < 2:
        return False
    series = set()
    for name in (names[0], names[-1]):
        rel = name if folder.rel == "." else f"{folder.rel}/{name}"
        shown = act("load_med_data", "Do the files of one folder form one series (a volume)?", path=f"{survey.root}/{rel}")
        series.add(shown.result.meta.get("tags", {}).get("SeriesInstanceUID") if shown.ok else None)
    return len(series) == 1 and None not in series


def guess_modality(survey: Survey) -> tuple[str, str]:
    """(modality, anatomy) from the DICOM tags previewed, 'EDIT: ...' where nothing says."""
    tags = list(survey.dicom_tags.values())
    modality = Counter(t.get("Modality", "") for t in tags if t.get("Modality")).most_common(1)
    anatomy = Counter(t.get("BodyPartExamined", "") for t in tags if t.get("BodyPartExamined")).most_common(1)
    return (MODALITIES.get(modality[0][0], modality[0][0]) if modality else "EDIT: modality (MRI, CT, X-ray...)",
            anatomy[0][0].lower() if anatomy else "EDIT: anatomy (brain, chest...)")


def guess_task(survey: Survey, facts: CardFacts) -> str:
    for task in ("segmentation", "report_generation"):
        if proposals_for(survey, CardFacts(task=task, dimension=facts.dimension, label_names=[])):
            if task == "segmentation" or any("report" in c.lower() or "text" in c.lower()
                                             for t in survey.tables.values() for c in t.columns):
                return task
    return "diagnosis"


def _slug(folder: Path) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", folder.name.lower()).strip("-") or "my-dataset"


def _description(folder: Path, layout: Layout, report: IndexingReport, task: str) -> str:
    classes = ", ".join(f"{k}: {v}" for k, v in report.per_class.items())
    lines = [f"EDIT: say what these images are, where they come from and how they were labelled. Draft written by "
             f"`medbuilder datacards draft` from the files in {folder}:",
             f"{report.images_found} images; {report.records} matched for {task}" + (f" ({classes})." if classes else "."),
             "How the files are read: " + "; ".join(layout.summary()) + "."]
    if report.patients:
        lines.append(f"{report.patients} patients, each kept in one split.")
    if report.predefined_split:
        lines.append(f"A predefined split: {report.predefined_split}.")
    return "\n".join(lines)


def _mask_labels(act: Actor, survey: Survey) -> list[str]:
    """Mask value names from an nnU-Net or MSD dataset.json ('labels': {"0": "background"} or {"background": 0})."""
    for rel in survey.table_files():
        if not rel.endswith("dataset.json"):
            continue
        shown = act("preview_files", "Which names do the mask values have?", path=f"{survey.root}/{rel}", n=30)
        summary = shown.result.summary if shown.ok else {}
        labels = dict(zip(summary.get("keys", []), summary.get("head", []))).get("labels")
        if isinstance(labels, dict) and labels:
            pairs = [(str(k), str(v)) for k, v in labels.items()]
            by_value = {int(v): k for k, v in pairs if v.isdigit()} or {int(k): v for k, v in pairs if k.isdigit()}
            if by_value:
                return [by_value[v] for v in sorted(by_value)]
    return []


def _without_empty(value):
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in (None, [], {})}
    return [_without_empty(v) for v in value] if isinstance(value, list) else value


def draft_card(folder: Path, task: str | None = None, name: str | None = None) -> tuple[dict, list[str]]:
    """A datacard dict for `folder` and the questions the draft leaves for the user."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise DraftError(f"{folder} is not a folder; give the dataset's root folder")
    from medbuilder.agents.roles.data_engineer import take_survey, try_layout

    def look(act: Actor) -> tuple[Survey, str]:
        survey = take_survey(act, str(folder))
        return survey, guess_dimension(act, survey)

    def fit(act: Actor):
        layout, tried = choose(proposals_for(survey, facts), lambda candidate: try_layout(act, candidate), facts)
        if layout is None:
            return None, tried, None, []
        labels = _mask_labels(act, survey) if facts.task == "segmentation" else []
        return layout, tried, try_layout(act, layout), labels

    with tempfile.TemporaryDirectory(prefix="medbuilder-draft-") as work:
        survey, dimension = play(look, _workspace(folder, task or "diagnosis", "2D", Path(work)), TOOLS,
                                 "datacard_draft")
        facts = CardFacts(task=task or "diagnosis", dimension=dimension, label_names=[])
        facts.task = task or guess_task(survey, facts)
        layout, tried, report, mask_labels = play(fit, _workspace(folder, facts.task, dimension, Path(work)), TOOLS,
                                                  "datacard_draft")
    if layout is None:
        raise DraftError(f"no layout for {facts.task} fits the files in {folder}: "
                         + "; ".join(t.error or t.proposal.what for t in tried) if tried else
                         f"no image files, class folders, tables or masks were found in {folder}")
    modality, anatomy = guess_modality(survey)
    formats = sorted({extension_of(n) or "dcm" for f in survey.image_folders() for n in f.image_names()}
                     | {extension_of(t) for t in survey.tables})
    labels = ([k for k in report.per_class if k != "all"] if facts.task != "segmentation"
              else mask_labels or ["background", "EDIT: the name of each mask value"])
    card = {"name": name or _slug(folder), "title": f"EDIT: a title for {folder.name}",
            "description": _description(folder, layout, report, facts.task), "path": str(folder),
            "tasks": [facts.task], "modality": modality, "dimension": dimension, "anatomy": anatomy,
            "label_names": labels, "file_formats": formats or ["EDIT"], "licence": "EDIT: the licence or data-use terms",
            "provenance": "real", "source": f"EDIT: where the files come from ({folder})",
            "layout": _without_empty(layout.model_dump(mode="json", exclude={"evidence", "questions", "task"}))}
    return card, [*layout.questions, *report.questions]
