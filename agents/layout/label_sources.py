"""Where a class label could come from, read off the survey: class folders, file-name tokens, table
columns, DICOM tags. Each candidate carries its source, the label_map it needs and how sure the
reading of the values is; the evaluation on the real files decides between them."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from medbuilder.agents.layout.labels import GUESS, LabelMatcher, normalise
from medbuilder.agents.layout.survey import Survey, TableView
from medbuilder.protocol.indexing.discover import IMAGE_EXTENSIONS, extension_of, stem_of
from medbuilder.protocol.layout import (SPLIT_VOCABULARY, DicomTagSource, FileNameSource, FolderSource,
                                        TableSource)

LABEL_COLUMN_NAMES = ("label", "labels", "class", "classes", "diagnosis", "finding", "findings", "target",
                      "category", "y", "outcome", "result", "ground_truth", "gt", "group", "dx")
LABEL_TAGS = ("ImageComments", "StudyDescription", "SeriesDescription", "ProtocolName", "BodyPartExamined")
MAX_CLASSES = 30
ID_PATTERN = re.compile(r"^[A-Za-z]*[-_]?\d+[A-Za-z]?$|^(sub|subject|patient|pat|case|p|id|s)[-_]?\w+$", re.I)


@dataclass
class LabelOption:
    source: object
    label_map: dict[str, str]
    strength: int
    labels: set[str]
    what: str  # in words, for the evidence
    coverage: float = 1.0  # share of the previewed images or rows whose value was read
    values: list[str] = field(default_factory=list)
    preferred: bool = False  # named like a label (a column 'diagnosis', a tag 'ImageComments')


def _option(matcher: LabelMatcher, values: Counter, source, what: str, minimum: int = 2) -> LabelOption | None:
    distinct = [v for v in values if v]
    if not distinct or len(distinct) > MAX_CLASSES:
        return None
    label_map, strength, unmatched = matcher.mapping(distinct)
    known = [v for v in distinct if v not in unmatched]
    labels = {matcher.match(v).label for v in known} if matcher.names else set(known)
    if len(labels) < minimum:
        return None
    coverage = sum(values[v] for v in known) / max(sum(values.values()), 1)
    if coverage < 0.5:
        return None
    return LabelOption(source, label_map, strength, labels, what, coverage, sorted(distinct))


def folder_options(survey: Survey, matcher: LabelMatcher, minimum: int) -> list[LabelOption]:
    """A depth at which folder names are class names: 0, 1, ... below the root, or -1 (each file's own folder)."""
    folders = [f for f in survey.image_folders() if f.parts]
    if not folders:
        return []
    options, seen = [], set()
    deepest = max(len(f.parts) for f in folders)
    for depth in [*range(deepest), -1]:
        names = Counter()
        for folder in folders:
            if (depth >= 0 and len(folder.parts) > depth) or depth < 0:
                names[folder.parts[depth]] += folder.images
        if set(normalise(n) for n in names) <= set(SPLIT_VOCABULARY):
            continue
        option = _option(matcher, names, FolderSource(depth=depth), f"folder names at depth {depth}", minimum)
        key = tuple(sorted(names))
        if option and key not in seen:
            seen.add(key)
            option.what = f"class folders {', '.join(f'{n}/' for n in sorted(names))}"
            option.preferred = True
            options.append(option)
    return options


def split_folder(survey: Survey) -> FolderSource | None:
    """A depth whose folder names are all train/val/test words, with a test side."""
    folders = [f for f in survey.image_folders() if f.parts]
    if not folders:
        return None
    for depth in range(max(len(f.parts) for f in folders)):
        names = {normalise(f.parts[depth]) for f in folders if len(f.parts) > depth}
        if names and names <= set(SPLIT_VOCABULARY) and "test" in {SPLIT_VOCABULARY[n] for n in names}:
            if all(len(f.parts) > depth for f in folders):
                return FolderSource(depth=depth)
    return None


def _name_samples(survey: Survey) -> Counter:
    """Image file names (patterns with '#' for digits) weighted by how many files they stand for."""
    names = Counter()
    for folder in survey.image_folders():
        if folder.name_patterns:
            for pattern, n in folder.name_patterns.items():
                if extension_of(pattern) in IMAGE_EXTENSIONS or extension_of(pattern) == "":
                    names[pattern] += n
        else:
            names.update(folder.image_names())
    return names


def filename_options(survey: Survey, matcher: LabelMatcher, minimum: int) -> list[LabelOption]:
    """A class code at the start of the file name, or a class word anywhere in it."""
    names = _name_samples(survey)
    options = []
    prefixes = Counter()
    for name, n in names.items():
        found = re.match(r"[A-Za-z]+", name)
        if found:
            prefixes[found.group(0)] += n
    option = _option(matcher, prefixes, FileNameSource(regex=r"^([A-Za-z]+)"), "the letters a file name starts with",
                     minimum)
    if option:
        options.append(option)
    tokens = Counter()
    for name, n in names.items():
        for token in set(re.findall(r"[A-Za-z]+", stem_of(name))):
            tokens[token] += n
    if matcher.names:
        mapped = {t: n for t, n in tokens.items() if len(t) > 1 and matcher.match(t) and matcher.match(t).strength > GUESS}
        if len(mapped) >= 2:
            words = "|".join(sorted(map(re.escape, mapped), key=len, reverse=True))
            regex = rf"(?<![A-Za-z])({words})(?![A-Za-z])"
            option = _option(matcher, Counter(mapped), FileNameSource(regex=regex), "a class word in the file name",
                             minimum)
            if option and (not options or option.labels != options[0].labels or option.strength > options[0].strength):
                options.append(option)
    return options


def table_label_options(table: TableView, key_column: str, join: str, matcher: LabelMatcher,
                        minimum: int) -> list[LabelOption]:
    """Columns of `table` whose values read as class names; and the folder part of a path column."""
    options = []
    for column in table.columns:
        if column == key_column:
            continue
        values = Counter(table.values(column))
        source = TableSource(table=table.rel, column=column, key_column=key_column, join=join,
                             records_key=table.records_key)
        option = _option(matcher, values, source, f"column '{column}' of {table.rel}", 1 if matcher.names else minimum)
        if option:
            option.preferred = normalise(column).replace(" ", "_") in LABEL_COLUMN_NAMES
            options.append(option)
    for column in table.columns:
        values = table.values(column)
        if values and all("/" in v.replace("\\", "/") for v in values):
            for regex, what in ((r"([^/]+)/[^/]+$", "the folder part of"), (r"^([^/]+)/", "the first folder of")):
                parts = Counter(re.search(regex, v.replace("\\", "/")).group(1) for v in values)
                source = TableSource(table=table.rel, column=column, key_column=key_column, join=join, regex=regex,
                                     records_key=table.records_key)
                option = _option(matcher, parts, source, f"{what} column '{column}' of {table.rel}", minimum)
                if option:
                    options.append(option)
                    break
    return options


def dicom_tag_options(survey: Survey, matcher: LabelMatcher) -> list[LabelOption]:
    options = []
    tags = sorted({t for tags in survey.dicom_tags.values() for t in tags},
                  key=lambda t: LABEL_TAGS.index(t) if t in LABEL_TAGS else len(LABEL_TAGS))
    for tag in tags:
        if tag in ("PatientID", "StudyID", "SeriesNumber", "SeriesInstanceUID", "Modality", "Manufacturer"):
            continue
        values = Counter(t[tag] for t in survey.dicom_tags.values() if tag in t)
        option = _option(matcher, values, DicomTagSource(tag=tag), f"DICOM tag {tag}", 1 if matcher.names else 2)
        if option:
            option.preferred = tag in LABEL_TAGS
            options.append(option)
    return options


def looks_like_ids(names: list[str]) -> bool:
    """Folder or cell values that read as patient/subject/case ids: many distinct, id-shaped."""
    distinct = set(names)
    return len(distinct) >= 3 and sum(bool(ID_PATTERN.match(n)) for n in distinct) >= 0.8 * len(distinct)
