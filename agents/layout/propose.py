"""Candidate layouts for one dataset, from the survey and the datacard, most likely first."""

from __future__ import annotations

from dataclasses import dataclass, field

from medbuilder.agents.layout.extras import (attribute_sources, confounder_source, group_source, patient_source,
                                             report_source, split_source)
from medbuilder.agents.layout.label_sources import (LabelOption, dicom_tag_options, filename_options, folder_options,
                                                    table_label_options)
from medbuilder.agents.layout.labels import LabelMatcher
from medbuilder.agents.layout.mask_sources import mask_options
from medbuilder.agents.layout.survey import Survey, TableView
from medbuilder.agents.layout.table_keys import TableKey, key_options
from medbuilder.protocol.layout import Choice, FolderSource, Images, Layout

FAMILY_WEIGHT = {"table": 4, "folder": 3, "dicom tag": 2, "file name": 1}


@dataclass
class CardFacts:
    """What the datacard says that the inference uses."""

    task: str
    dimension: str
    label_names: list[str]
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    description: str = ""
    confounders: list[dict] = field(default_factory=list)

    def matcher(self) -> LabelMatcher:
        return LabelMatcher(self.label_names, self.synonyms, self.description)


@dataclass
class Proposal:
    layout: Layout
    family: str
    prior: float
    option: LabelOption | None = None

    @property
    def what(self) -> str:
        return self.option.what if self.option else self.layout.summary()[1 if len(self.layout.summary()) > 1 else 0]


def _images(survey: Survey, facts: CardFacts, roots: list[str]) -> Images:
    series = facts.dimension == "3D" and survey.is_dicom() and any(
        f.files > 1 for f in survey.image_folders())
    return Images(roots=roots, dicom_series=series)


def _extras(survey: Survey, facts: CardFacts, table: TableView | None, key: TableKey | None,
            label_depth: int | None) -> tuple[dict, list[Choice]]:
    parts, notes = {}, []
    for part, (source, note) in (("patient", patient_source(survey, table, key, label_depth)),
                                 ("split", split_source(survey, table, key)),
                                 ("group", group_source(table, key))):
        if source is not None:
            parts[part] = source
            notes.append(note)
    attributes, attribute_notes = attribute_sources(survey, table, key)
    if attributes:
        parts["attributes"] = attributes
        notes += attribute_notes
    confounder = confounder_source(table, key, facts.confounders)
    if confounder is not None:
        parts["confounder"] = confounder
        notes.append(Choice(part="confounder", choice=f"'{confounder.name}' columns of {table.rel}",
                            evidence="the datacard names these columns"))
    return parts, notes


def _label_layout(survey: Survey, facts: CardFacts, option: LabelOption, family: str,
                  table: TableView | None = None, key: TableKey | None = None) -> Proposal:
    depth = option.source.depth if isinstance(option.source, FolderSource) else None
    parts, notes = _extras(survey, facts, table, key, depth)
    label_note = Choice(part="label", choice=option.what,
                        evidence=f"values {option.values[:8]} read as {sorted(option.labels)}")
    layout = Layout(task=facts.task, images=_images(survey, facts, key.roots if key else ["."]),
                    label=option.source, label_map=option.label_map, evidence=[label_note, *notes], **parts)
    prior = 10 * option.strength + FAMILY_WEIGHT[family] + 2 * option.preferred + option.coverage
    return Proposal(layout, family, prior, option)


def _table_proposals(survey: Survey, facts: CardFacts, matcher: LabelMatcher, minimum: int) -> list[Proposal]:
    proposals = []
    for table in survey.tables.values():
        for key in key_options(table, survey)[:3]:
            options = table_label_options(table, key.column, key.join, matcher, minimum)
            for option in options:
                proposal = _label_layout(survey, facts, option, "table", table, key)
                proposal.layout.evidence[0].alternatives += _columns_not_read_as_labels(table, key, options)
                proposal.prior += key.overlap
                proposal.layout.evidence.insert(0, Choice(
                    part="rows", choice=f"{table.rel} rows found by {key.join} in column '{key.column}'",
                    evidence=f"{key.overlap:.0%} of the previewed keys were seen among the files"))
                proposals.append(proposal)
    return proposals


def _columns_not_read_as_labels(table: TableView, key: TableKey, options: list[LabelOption]) -> list[str]:
    """Short-valued columns that were looked at as the label and why they were not taken."""
    taken = {o.source.column for o in options}
    found = []
    for column in table.columns:
        values = sorted(set(table.values(column)))
        if column in taken or column == key.column or not values or len(values) > 12:
            continue
        found.append(f"column '{column}' (values {values[:4]}): not read as the card's labels")
    return found


def label_proposals(survey: Survey, facts: CardFacts) -> list[Proposal]:
    matcher = facts.matcher()
    minimum = 2 if facts.task == "diagnosis" or not facts.label_names else 1
    proposals = _table_proposals(survey, facts, matcher, minimum)
    proposals += [_label_layout(survey, facts, o, "folder") for o in folder_options(survey, matcher, minimum)]
    proposals += [_label_layout(survey, facts, o, "dicom tag") for o in dicom_tag_options(survey, matcher)]
    proposals += [_label_layout(survey, facts, o, "file name") for o in filename_options(survey, matcher, minimum)]
    return sorted(proposals, key=lambda p: -p.prior)


def mask_proposals(survey: Survey, facts: CardFacts) -> list[Proposal]:
    proposals = []
    for rank, option in enumerate(mask_options(survey)):
        parts, notes = _extras(survey, facts, None, None, None)
        images = _images(survey, facts, option.images.roots)
        layout = Layout(task=facts.task, images=images, masks=option.masks,
                        evidence=[Choice(part="masks", choice=option.what), *notes], **parts)
        proposals.append(Proposal(layout, "masks", 10 - rank))
    return proposals


def report_proposals(survey: Survey, facts: CardFacts) -> list[Proposal]:
    proposals = []
    tables = list(survey.tables.values()) or [None]
    for table in tables:
        keys = key_options(table, survey)[:2] if table else [None]
        for key in keys:
            source, note = report_source(survey, table, key)
            if source is None:
                continue
            parts, notes = _extras(survey, facts, table, key, None)
            layout = Layout(task=facts.task, images=_images(survey, facts, key.roots if key else ["."]),
                            report=source, evidence=[note, *notes], **parts)
            proposals.append(Proposal(layout, "report", 10 + (key.overlap if key else 0)))
    return sorted(proposals, key=lambda p: -p.prior)


def proposals_for(survey: Survey, facts: CardFacts) -> list[Proposal]:
    if facts.task == "segmentation":
        return mask_proposals(survey, facts)
    if facts.task == "report_generation":
        return report_proposals(survey, facts)
    return label_proposals(survey, facts)
