"""The parts of a layout besides the target: patient id, predefined split, subgroup, confounder, report text."""

from __future__ import annotations

from collections import Counter

from medbuilder.agents.layout.label_sources import looks_like_ids, split_folder
from medbuilder.agents.layout.labels import normalise
from medbuilder.agents.layout.survey import Survey, TableView
from medbuilder.agents.layout.table_keys import TableKey
from medbuilder.protocol.layout import (SPLIT_VOCABULARY, Choice, Confounder, DicomTagSource, FolderSource,
                                        SidecarSource, TableSource)

PATIENT_COLUMNS = ("patient_id", "patientid", "patient", "subject", "subject_id", "participant_id", "participant",
                   "case_id", "pid", "mrn", "patient_number")
SPLIT_COLUMNS = ("split", "set", "subset", "fold", "partition", "dataset")
GROUP_COLUMNS = ("site", "centre", "center", "hospital", "scanner", "institution", "sex", "gender", "vendor")
REPORT_COLUMNS = ("report", "report_text", "text", "findings", "impression", "caption", "description")


def _named(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {normalise(c).replace(" ", "_"): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _from_table(table: TableView, key: TableKey, column: str) -> TableSource:
    return TableSource(table=table.rel, column=column, key_column=key.column, join=key.join,
                       records_key=table.records_key)


def patient_source(survey: Survey, table: TableView | None, key: TableKey | None,
                   label_depth: int | None) -> tuple[object | None, Choice | None]:
    if table is not None and key is not None:
        column = _named(table.columns, PATIENT_COLUMNS)
        if column:
            return _from_table(table, key, column), Choice(part="patient", choice=f"column '{column}' of {table.rel}",
                                                           evidence="named like a patient id")
        if key.join == "folder":
            return _from_table(table, key, key.column), Choice(
                part="patient", choice=f"the folder named by column '{key.column}'",
                evidence="the table's rows are keyed by folder ids")
    folders = [f for f in survey.image_folders() if f.parts]
    if folders:
        for depth in range(max(len(f.parts) for f in folders)):
            if depth == label_depth:
                continue
            names = [f.parts[depth] for f in folders if len(f.parts) > depth]
            if looks_like_ids(names) and not set(map(normalise, names)) & set(SPLIT_VOCABULARY):
                return FolderSource(depth=depth), Choice(
                    part="patient", choice=f"folder names at depth {depth}",
                    evidence=f"{len(set(names))} id-like folders, e.g. {', '.join(sorted(set(names))[:3])}")
    ids = {t.get("PatientID") for t in survey.dicom_tags.values() if t.get("PatientID")}
    if len(ids) >= 2:
        return DicomTagSource(tag="PatientID"), Choice(part="patient", choice="DICOM tag PatientID",
                                                       evidence=f"{len(ids)} distinct ids in the files previewed")
    return None, None


def split_source(survey: Survey, table: TableView | None, key: TableKey | None) -> tuple[object | None, Choice | None]:
    if table is not None and key is not None:
        column = _named(table.columns, SPLIT_COLUMNS)
        values = {normalise(v) for v in table.values(column)} if column else set()
        if column and values and values <= set(SPLIT_VOCABULARY):
            return _from_table(table, key, column), Choice(
                part="split", choice=f"column '{column}' of {table.rel}",
                evidence=f"values {sorted(values)}: a predefined split, kept (validation counts as training)")
    folder = split_folder(survey)
    if folder is not None:
        return folder, Choice(part="split", choice=f"folder names at depth {folder.depth}",
                              evidence="train/val/test folders: a predefined split, kept")
    return None, None


def group_source(table: TableView | None, key: TableKey | None) -> tuple[object | None, Choice | None]:
    if table is None or key is None:
        return None, None
    column = _named(table.columns, GROUP_COLUMNS)
    if column and 2 <= len(set(table.values(column))) <= 20:
        return _from_table(table, key, column), Choice(part="group", choice=f"column '{column}' of {table.rel}",
                                                       evidence="subgroups for subgroup metrics")
    return None, None


ATTRIBUTE_COLUMNS = {"site": ("site", "centre", "center", "hospital", "institution", "institution_name"),
                     "scanner": ("scanner", "vendor", "manufacturer", "scanner_model", "device", "machine"),
                     "sex": ("sex", "gender", "patient_sex"),
                     "age": ("age", "patient_age", "age_years", "age_at_scan")}
ATTRIBUTE_TAGS = {"site": "InstitutionName", "scanner": "Manufacturer", "sex": "PatientSex", "age": "PatientAge"}


def attribute_sources(survey: Survey, table: TableView | None, key: TableKey | None) -> tuple[dict, list[Choice]]:
    """Site, scanner, sex and age for subgroup metrics: a table column named like one (2 to 20 values; age any
    number of them), else a DICOM tag that is filled in the files previewed."""
    found, notes = {}, []
    for name, columns in ATTRIBUTE_COLUMNS.items():
        column = _named(table.columns, columns) if table is not None and key is not None else None
        if column and (name == "age" or 2 <= len(set(table.values(column))) <= 20):
            found[name] = _from_table(table, key, column)
            notes.append(Choice(part=f"attribute {name}", choice=f"column '{column}' of {table.rel}",
                                evidence="named like it; for subgroup metrics"))
            continue
        tag = ATTRIBUTE_TAGS[name]
        if any(tags.get(tag) for tags in survey.dicom_tags.values()):
            found[name] = DicomTagSource(tag=tag)
            notes.append(Choice(part=f"attribute {name}", choice=f"DICOM tag {tag}",
                                evidence="filled in the files previewed; for subgroup metrics"))
    return found, notes


def confounder_source(table: TableView | None, key: TableKey | None, confounders: list[dict]) -> Confounder | None:
    if table is None or key is None:
        return None
    for confounder in confounders:
        found = {part: confounder.get(f"{part}_column") for part in ("presence", "mask", "counterfactual")}
        found = {part: column for part, column in found.items() if column in table.columns}
        if found:
            return Confounder(name=confounder["name"], **{p: _from_table(table, key, c) for p, c in found.items()})
    return None


def report_source(survey: Survey, table: TableView | None, key: TableKey | None) -> tuple[object | None, Choice | None]:
    if table is not None and key is not None:
        column = _named(table.columns, REPORT_COLUMNS)
        if column is None:
            lengths = Counter({c: sum(len(v) for v in table.values(c)) for c in table.columns if c != key.column})
            column = lengths.most_common(1)[0][0] if lengths else None
        if column:
            return _from_table(table, key, column), Choice(part="report", choice=f"column '{column}' of {table.rel}",
                                                           evidence="named like report text, or the longest text")
    for folder in survey.image_folders():
        texts = {n.rsplit(".", 1)[0] for n in folder.first_files if n.lower().endswith(".txt")}
        images = {n.rsplit(".", 1)[0] for n in folder.image_names()}
        if texts & images:
            return SidecarSource(suffix=".txt"), Choice(part="report", choice="a .txt file beside each image",
                                                        evidence=f"e.g. {sorted(texts & images)[0]}.txt")
    return None, None
