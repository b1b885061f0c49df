"""Apply a layout: one record per image with the fields its sources give, and the evidence of what matched."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from pydantic import BaseModel

from medbuilder.protocol.indexing.discover import Item, find_images
from medbuilder.protocol.indexing.masks import MaskFinder, mask_excludes
from medbuilder.protocol.indexing.report import (EXAMPLES, MIN_CLASS_IMAGES, CrossCheck, IndexingReport, Miss,
                                                 weak_evidence)
from medbuilder.protocol.indexing.sources import SourceReader
from medbuilder.protocol.indexing.tables import TableError
from medbuilder.protocol.layout import SPLIT_VOCABULARY, Layout, TableSource
from medbuilder.protocol.task import Task

TRUE_VALUES = ("1", "true", "yes", "y", "t", "present")
SAMPLES_PER_CLASS = 3


class DatasetFacts(BaseModel):
    """What a layout is applied to: the dataset root and what its datacard says."""

    root: str
    task: str
    dimension: str
    label_names: list[str] = []
    normal_class: str | None = None
    min_class_images: int = MIN_CLASS_IMAGES


class IndexJob(DatasetFacts):
    """A layout and the dataset it is applied to (the indexer's input file)."""

    layout: Layout

    @classmethod
    def of(cls, facts: DatasetFacts, layout: Layout) -> "IndexJob":
        if layout.task is None:
            layout = layout.model_copy(update={"task": Task(facts.task)})
        return cls(**facts.model_dump(), layout=layout)


class LayoutFailure(ValueError):
    """The layout cannot be applied at all (a missing table or column); the message names it and the fix."""


def label_key(value: str) -> str:
    """How raw values are compared with label names: case, spaces, '_' and '-' do not count (no_mass = No mass).

    A number keeps its sign: '-1.0' (CheXpert's uncertain) is not '1.0'."""
    if re.fullmatch(r"\s*[+-]?\d+(?:\.\d*)?\s*", value):
        return value.strip()
    return re.sub(r"[\s_\-]+", " ", value.strip().lower()).strip()


def label_lookup(layout: Layout, label_names: list[str]) -> dict[str, str]:
    """Raw value (as `label_key`) -> label name: the names themselves, then the layout's label_map."""
    lookup = {label_key(name): name for name in label_names}
    lookup.update({label_key(raw): name for raw, name in layout.label_map.items()})
    return lookup


class _Builder:
    def __init__(self, job: IndexJob):
        self.job, self.layout = job, job.layout
        self.root = Path(job.root).resolve()
        self.reader = SourceReader(self.root)
        self.masks = MaskFinder(self.root, self.layout, self.reader) if self.layout.masks else None
        self.lookup = label_lookup(self.layout, job.label_names)
        self.report = IndexingReport(layout=self.layout.summary())
        self.misses: Counter = Counter()
        self.unmapped: Counter = Counter()

    def miss(self, item: Item, field: str, reason: str) -> None:
        self.misses[field] += 1
        if len(self.report.unmatched_examples) < EXAMPLES:
            self.report.unmatched_examples.append(Miss(image=item.rel, field=field, reason=reason))

    def label(self, item: Item, source) -> tuple[str | None, str | None]:
        raw, why = self.reader.value(item, source)
        if raw is None:
            return None, why
        label = self.lookup.get(label_key(raw)) if self.job.label_names else self.layout.label_map.get(raw, raw)
        if label is None:
            return None, f"label value '{raw}' is no label name and has no label_map entry"
        return label, None

    def record(self, item: Item) -> dict | None:
        layout = self.layout
        record = {"image": str(self.root / item.rel)}
        if layout.label is not None:
            label, why = self.label(item, layout.label)
            if label is None:
                if why.startswith("label value"):
                    self.unmapped[why.split("'")[1].lower()] += 1
                self.miss(item, "label", why)
                return None
            record["label"] = label
        if self.masks is not None:
            mask, why = self.masks.mask_of(item)
            if mask is None:
                self.miss(item, "mask", why)
                return None
            record["mask"] = mask
        if layout.report is not None:
            text, why = self.reader.value(item, layout.report)
            if text is None:
                self.miss(item, "report", why)
                return None
            record["report"] = text
        for part in ("patient", "group"):
            source = getattr(layout, part)
            if source is not None:
                value, _ = self.reader.value(item, source)
                if value:
                    record["patient_id" if part == "patient" else "group"] = value
        attributes = {name: self.reader.value(item, source)[0] for name, source in layout.attributes.items()}
        if any(attributes.values()):
            record["attributes"] = {name: value for name, value in attributes.items() if value}
        if layout.split is not None:
            raw, why = self.reader.value(item, layout.split)
            split = layout.split_map.get(raw, SPLIT_VOCABULARY.get((raw or "").strip().lower())) if raw else None
            if split is None:
                self.miss(item, "split", why or f"split value '{raw}' is not train/val/test (set split_map)")
                return None
            record["split"] = split
        if layout.confounder is not None:
            record.update(self.confounder_fields(item))
        return record

    def confounder_fields(self, item: Item) -> dict:
        confounder, fields = self.layout.confounder, {}
        if confounder.presence is not None:
            value, _ = self.reader.value(item, confounder.presence)
            if value is not None:
                present = value.strip().lower() in TRUE_VALUES
                fields["confounder"] = present
                fields["group"] = confounder.name if present else "no " + confounder.name
        for part, field in (("mask", "confounder_mask"), ("counterfactual", "counterfactual")):
            source = getattr(confounder, part)
            if source is not None:
                value, _ = self.reader.value(item, source)
                if value:
                    fields[field] = str(self.reader.resolve_path(value, source))
        return fields

    def cross_check(self, pairs: list[tuple[Item, dict]]) -> None:
        for source in self.layout.label_cross_checks:
            compared, examples, disagree = 0, [], 0
            for item, record in pairs:
                other, _ = self.label(item, source)
                if other is None:
                    continue
                compared += 1
                if other != record["label"]:
                    disagree += 1
                    if len(examples) < EXAMPLES:
                        examples.append(f"{item.rel}: '{record['label']}' vs '{other}'")
            self.report.cross_checks.append(CrossCheck(source=source.describe(), compared=compared,
                                                       disagree=disagree, examples=examples))

    def table_sources(self) -> list[TableSource]:
        layout = self.layout
        sources = [layout.label, layout.report, layout.patient, layout.group, layout.split,
                   *(layout.label_cross_checks), *layout.attributes.values(),
                   layout.masks.table if layout.masks else None]
        if layout.confounder:
            sources += [layout.confounder.presence, layout.confounder.mask, layout.confounder.counterfactual]
        return [s for s in sources if isinstance(s, TableSource)]

    def rows_without_image(self) -> None:
        for source in self.table_sources():
            table = self.reader.table(source)
            unused = table.unused_rows()
            if unused and source.table not in self.report.rows_without_image:
                self.report.rows_without_image[source.table] = len(unused)
                self.report.rows_without_image_examples[source.table] = [
                    table.rows[i].get(source.key_column, "") for i in unused[:EXAMPLES]]


def _summarise(report: IndexingReport, records: list[dict], builder: _Builder) -> None:
    report.records = len(records)
    report.unmatched = sum(builder.misses.values())
    report.unmatched_by_field = dict(builder.misses)
    report.unmapped_values = dict(builder.unmapped.most_common())
    labels = Counter(r["label"] for r in records if "label" in r)
    names = builder.job.label_names
    report.per_class = {n: labels[n] for n in [*names, *sorted(set(labels) - set(names))] if n in labels or n in names}
    samples = defaultdict(list)
    for record in records:
        bucket = samples[record.get("label", "all")]
        if len(bucket) < SAMPLES_PER_CLASS:
            bucket.append(str(Path(record["image"]).relative_to(builder.root)))
    report.samples = dict(samples)
    patients = {r["patient_id"] for r in records if r.get("patient_id")}
    report.patients = len(patients) or None
    if builder.layout.split is not None:
        report.predefined_split = dict(Counter(r["split"] for r in records))


def apply_layout(job: IndexJob) -> tuple[list[dict], IndexingReport]:
    """Records (with a 'split' key where the layout has a predefined split) and the report with its questions."""
    started = time.monotonic()
    layout = job.layout
    if not layout.resolved:
        report = IndexingReport(layout=layout.summary(), questions=list(layout.questions))
        return [], report
    try:
        builder = _Builder(job)
        found = find_images(builder.root, layout.images, mask_excludes(layout))
        report = builder.report
        report.images_found, report.ignored_files = len(found.items), dict(found.ignored.most_common())
        report.links_refused, report.missing_roots = found.links_refused[:EXAMPLES], found.missing_roots
        pairs = []
        for item in found.items:
            record = builder.record(item)
            if record is not None:
                pairs.append((item, record))
        builder.rows_without_image()
    except (TableError, KeyError) as err:
        raise LayoutFailure(str(err).strip("'\"")) from None
    records = [record for _, record in pairs]
    if layout.label_cross_checks and records and "label" in records[0]:
        builder.cross_check(pairs)
    _summarise(report, records, builder)
    report.notes = list(dict.fromkeys(builder.reader.notes))
    report.questions = weak_evidence(report, layout.questions, layout.task.value, job.label_names,
                                     job.normal_class, job.min_class_images)
    report.seconds = round(time.monotonic() - started, 2)
    return records, report
