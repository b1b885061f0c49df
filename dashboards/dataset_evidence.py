"""The dataset gate's evidence, without Streamlit: sample images per class, images per class and split, the
index's duplicate groups and patients, the datacard's licence and the Task Manager's score in words.

Everything under ``workspace/`` was written where agents write: it is read without following links and size
capped (``dashboards/progress.py``); the dataset's images are shown only from inside its root, no link followed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medbuilder.dashboards import progress
from medbuilder.dashboards.data import read_json
from medbuilder.protocol.licence import licence_restrictions
from medbuilder.protocol.run_folder import RunFolder


RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def inferred_layout_text(run: RunFolder) -> str:
    """The run's layout (run/layout.json) as indented JSON: the start of a correction at the dataset gate."""
    layout = read_json(run.path("layout.json"))
    if not isinstance(layout, dict):
        return ""
    layout = {k: v for k, v in layout.items() if k not in ("evidence", "questions")}
    return json.dumps(_without_nulls(layout), indent=2)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    return [_without_nulls(v) for v in value] if isinstance(value, list) else value


def sample_images(run: RunFolder, per_class: int = 3) -> dict[str, list[Path]]:
    """Sample raster images per class from the indexing report, inside the dataset root, no links followed."""
    from medbuilder.protocol.manifest import dataset_root

    report = read_json(run.path("indexing_report.json"))
    try:
        root = dataset_root(run)
    except ValueError:
        return {}
    if not isinstance(report, dict) or root is None:
        return {}
    shown = {}
    for label, rels in (report.get("samples") or {}).items():
        paths = [p for rel in rels if (p := _inside_no_links(root, str(rel))) and p.suffix.lower() in RASTER_EXTENSIONS]
        if paths:
            shown[str(label)] = paths[:per_class]
    return shown


def _inside_no_links(root: Path, rel: str) -> Path | None:
    candidate = root / rel
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        return None
    current = root
    for part in Path(rel).parts:
        current = current / part
        if current.is_symlink():
            return None
    return candidate if candidate.is_file() else None


def split_counts(run: RunFolder) -> list[dict]:
    """Per class: images the indexer matched (indexing_report.json) and records in train and test
    (index_report.json); a last row 'all' with the totals."""
    report = _dict(read_json(run.path("indexing_report.json")))
    checked = _dict(read_json(run.path("index_report.json")))
    found = _dict(report.get("per_class"))
    by_split = {split: _dict(_dict(checked.get("class_counts")).get(split)) for split in ("train", "test")}
    classes = list(dict.fromkeys([*found, *by_split["train"], *by_split["test"]]))
    rows = [{"class": str(name), "images": _count(found.get(name)), "train": _count(by_split["train"].get(name)),
             "test": _count(by_split["test"].get(name))} for name in classes]
    totals = _dict(checked.get("counts"))
    if rows or totals:
        rows.append({"class": "all", "images": _count(report.get("records")) or sum(r["images"] for r in rows),
                     "train": _count(totals.get("train", report.get("train"))),
                     "test": _count(totals.get("test", report.get("test")))})
    return rows


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


INDEX_MAX_BYTES = 64 * 1024 * 1024


def index_records(run: RunFolder) -> dict[str, list[dict]]:
    """The records of workspace/index/{train,test}.json (written there by the host-side index build, but in
    the agents' workspace: read without following links, size capped); a split that cannot be read is left out."""
    records = {}
    for split in ("train", "test"):
        found = progress.read_untrusted(run.root, f"workspace/index/{split}.json", INDEX_MAX_BYTES)
        try:
            rows = json.loads(found[0]) if found else None
        except (ValueError, RecursionError):
            rows = None
        if isinstance(rows, list):
            records[split] = [r for r in rows if isinstance(r, dict)]
    return records


def _key(value: Any) -> str | None:
    """A group or patient id as text (str or int only)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


@dataclass
class Duplicates:
    """How the index keeps copies of one image (duplicate_group) and patients together."""

    records: int
    grouped: int  # records with a duplicate_group
    groups: int  # distinct duplicate groups
    multi: int  # groups holding more than one image
    in_multi: int  # images in those groups
    largest: int
    largest_group: str | None
    largest_examples: list[str]
    across: list[str]  # groups with images in both train and test
    patients: int
    patients_across: list[str]

    def text(self) -> str:
        if not self.records:
            return "No index records could be read."
        if not self.grouped:
            return (f"The index's {self.records} records carry no duplicate_group: copies of one image are "
                    "not marked.")
        line = (f"{self.multi} of {self.groups} duplicate groups hold more than one image ({self.in_multi} images)"
                if self.multi else f"No duplicate groups with more than one image among {self.records} images")
        if self.multi:
            line += (f"; the largest, group {self.largest_group}, holds {self.largest}: "
                     + ", ".join(self.largest_examples))
        line += (". Every group is kept in one split." if not self.across else
                 f". {len(self.across)} groups have images in both train and test: {', '.join(self.across[:5])}.")
        if self.patients:
            line += (f" {self.patients} patients, each in one split." if not self.patients_across else
                     f" {len(self.patients_across)} of {self.patients} patients are in both splits.")
        return line


def duplicate_summary(run: RunFolder) -> Duplicates:
    """Duplicate groups and patients of the run's index: how many groups hold several images, the largest,
    and whether each group (and patient) stays in one split."""
    records = index_records(run)
    members: dict[str, list[str]] = {}
    splits: dict[str, set[str]] = {}
    patients: dict[str, set[str]] = {}
    for split, rows in records.items():
        for row in rows:
            group, patient = _key(row.get("duplicate_group")), _key(row.get("patient_id"))
            if group is not None:
                members.setdefault(group, []).append(Path(str(row.get("image", "?"))).name)
                splits.setdefault(group, set()).add(split)
            if patient is not None:
                patients.setdefault(patient, set()).add(split)
    sizes = {g: len(m) for g, m in members.items()}
    largest = max(sizes, key=lambda g: sizes[g], default=None)
    multi = [g for g, n in sizes.items() if n > 1]
    return Duplicates(records=sum(len(r) for r in records.values()), grouped=sum(sizes.values()), groups=len(sizes),
                      multi=len(multi), in_multi=sum(sizes[g] for g in multi),
                      largest=sizes.get(largest, 0), largest_group=largest,
                      largest_examples=members.get(largest, [])[:4],
                      across=sorted(g for g, s in splits.items() if len(s) > 1),
                      patients=len(patients), patients_across=sorted(p for p, s in patients.items() if len(s) > 1))


def licence(run: RunFolder) -> dict | None:
    """The chosen datacard's licence (datacard.json, as it was when chosen) and what it restricts."""
    card = _dict(read_json(run.path("datacard.json")))
    text = card.get("licence")
    if not isinstance(text, str) or not text.strip():
        return None
    return {"dataset": str(card.get("name", "?")), "text": " ".join(text.split()),
            "restrictions": licence_restrictions(text)}


SCORE_EXPLAINED = ("The Task Manager's score of a datacard is the text similarity between the request and the "
                   "card's title and description (cosine of all-MiniLM-L6-v2 sentence embeddings: 1 means the same "
                   "meaning, near 0 unrelated) plus {bonus} for each term of the request the card matches (task, "
                   "modality, anatomy, dimension, finding). Cards that break a hard requirement (wrong task, no "
                   "images, another modality, anatomy, dimension or finding) rank after those that fit; among those "
                   "that fit, the highest score wins. 'best of N' counts every datacard read.")


def candidate_scores(run: RunFolder) -> list[dict]:
    """The plan's candidates with their score split into text similarity and matched terms."""
    import re

    from medbuilder.agents.matching import TERM_BONUS

    plan = _dict(read_json(run.path("plan.json")))
    rows = []
    for c in plan.get("candidates") or []:
        if not isinstance(c, dict):
            continue
        reasons = [str(r) for r in c.get("reasons") or []]
        terms = [r[len("for: "):].split(":", 1)[0] for r in reasons if r.startswith("for: ")]
        similarity = next((float(m.group(1)) for r in reasons
                           if (m := re.match(r"text similarity to the datacard: (-?[0-9.]+)", r))), None)
        rows.append({"dataset": str(c.get("name")), "score": c.get("score"), "similarity": similarity,
                     "matched terms": ", ".join(terms), "term bonus": round(TERM_BONUS * len(terms), 2),
                     "fits": bool(c.get("fits"))})
    return rows


def chosen_score_text(run: RunFolder, rows: list[dict] | None = None) -> str | None:
    """'br35h scored 1.11 = text similarity 0.71 + 4 matched terms x 0.1 (task, ...); best of 6 datacards'."""
    from medbuilder.agents.matching import TERM_BONUS

    plan = _dict(read_json(run.path("plan.json")))
    rows = candidate_scores(run) if rows is None else rows
    chosen = next((r for r in rows if r["dataset"] == plan.get("dataset")), None)
    if chosen is None or not isinstance(chosen["score"], (int, float)) or chosen["similarity"] is None:
        return None
    terms = chosen["matched terms"].split(", ") if chosen["matched terms"] else []
    rank = rows.index(chosen) + 1
    standing = f"the best of {len(rows)} datacards" if rank == 1 else f"rank {rank} of {len(rows)} datacards"
    return (f"{chosen['dataset']} scored {chosen['score']:.2f} = text similarity {chosen['similarity']:.2f} "
            f"(request against the card's title and description, 1 = same meaning) + {len(terms)} matched "
            f"request terms x {TERM_BONUS}"
            + (f" ({', '.join(terms)})" if terms else "") + f"; {standing}.")


def score_explained() -> str:
    from medbuilder.agents.matching import TERM_BONUS

    return SCORE_EXPLAINED.format(bonus=TERM_BONUS)
