"""`medbuilder bench layouts`: the Data Engineer on every generated layout family, scored against the truth.

Why: a layout the Data Engineer gets wrong without asking trains a model on wrong labels, and nobody
notices; a question at the dataset gate costs the clinician a minute. So each family ends in one of:

- ``correct``: no question, and the index matches the truth: every expected image indexed with its
  expected label, mask or report, no other file indexed, patients kept together and the dataset's own
  split kept where the truth has them;
- ``asked``: the dataset gate has questions (``indexing_report.json``), the layout is unresolved, or
  the role failed its index check (then the check's problems are what the clinician sees);
- ``wrong``: no question, but the index disagrees with the truth (the note says how).

A bad variant (missing files, a tiny class, disagreeing sources, ...) is expected to be ``asked``,
with a question that names its problem. Targets: 0 indexed wrong, at least 80% of the good families
``correct``, every bad variant asked.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from medbuilder.bench.layout_families import GeneratedFamily, Truth, generate, select

CORRECT_SHARE_TARGET = 0.8
SHOWN = 3  # examples per disagreement


@dataclass
class Row:
    family: str
    kind: str  # good | bad
    expected: str
    outcome: str  # correct | asked | wrong
    seconds: float
    note: str = ""
    layout: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    problem_named: bool | None = None  # bad variants: whether a question names the planted problem
    root: str = ""

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected and self.problem_named is not False


# --- running the Data Engineer ----------------------------------------------------------------------------------


@dataclass
class RoleResult:
    """What one Data Engineer run left in its run folder."""

    layout: list[str]
    resolved: bool
    questions: list[str]
    check_problems: list[str]
    train: list[dict]
    test: list[dict]


def _settings():
    """The configured settings, quiet: scripts' output is not echoed to the console."""
    from medbuilder.settings import get_settings

    return get_settings().model_copy(update={"echo_scripts": False})


def _read_list(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def run_data_engineer(family: GeneratedFamily, runs_dir: Path) -> RoleResult:
    """The offline Data Engineer on the family's folder and datacard, as `medbuilder build` runs it."""
    from medbuilder.agents.roles.base import RoleCheckFailed
    from medbuilder.agents.runner import run_role
    from medbuilder.protocol.artifacts import Plan
    from medbuilder.protocol.datacard import Datacard
    from medbuilder.protocol.layout import Layout
    from medbuilder.protocol.run_folder import RunFolder

    card = Datacard.model_validate(family.card)
    task = family.truth.task
    request = f"train a {task} model on {card.title}"
    run = RunFolder.new(runs_dir, slug=family.name)
    run.write("request.json", {"text": request, "dataset": card.name})
    run.write("plan.json", Plan(status="ok", request=request, dataset=card.name, task=task,
                                dimension=card.dimension, metric="dice" if task == "segmentation" else "auroc"))
    run.write("datacard.json", card.model_dump(mode="json"))
    problems = []
    try:
        run_role("data_engineer", run, _settings(), "offline")
    except RoleCheckFailed as failed:
        problems = list(failed.feedback.problems)
    layout = Layout.model_validate_json(run.path("layout.json").read_text()) if run.exists("layout.json") else None
    report = run.read_json("indexing_report.json") if run.exists("indexing_report.json") else {}
    questions = list(report.get("questions") or (layout.questions if layout else []))
    return RoleResult(layout=layout.summary() if layout else [], resolved=bool(layout and layout.resolved),
                      questions=questions, check_problems=problems, train=_read_list(run.index_dir / "train.json"),
                      test=_read_list(run.index_dir / "test.json"))


# --- comparing the index with the truth -------------------------------------------------------------------------


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return path


def _examples(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _indexed(result: RoleResult, root: Path) -> dict[str, tuple[dict, str]]:
    """Relative image path -> (record, 'train' or 'test')."""
    return {_relative(r["image"], root): (r, side) for side in ("train", "test") for r in getattr(result, side)}


def _field_disagreements(truth: Truth, indexed: dict, root: Path) -> list[str]:
    wrong = defaultdict(list)
    for rel, expected in truth.images.items():
        if rel not in indexed:
            continue
        record, side = indexed[rel]
        if expected.label is not None and record.get("label") != expected.label:
            wrong["label"].append(f"{rel}: '{record.get('label')}' instead of '{expected.label}'")
        if expected.mask is not None and _relative(record.get("mask") or "", root) != expected.mask:
            wrong["mask"].append(f"{rel}: {_relative(record.get('mask') or 'none', root)} instead of {expected.mask}")
        if expected.report is not None and (record.get("report") or "").strip() != expected.report.strip():
            wrong["report"].append(f"{rel}: another report text")
        if expected.split is not None and side != expected.split:
            wrong["split"].append(f"{rel} in {side} (the dataset puts it in {expected.split})")
    return [f"{len(items)} wrong {part}s: {_examples(items)}" for part, items in wrong.items()]


def _patient_disagreements(truth: Truth, indexed: dict) -> list[str]:
    """The index must group images exactly as the truth's patients do (the ids may be spelled otherwise)."""
    expected = {rel: e.patient for rel, e in truth.images.items() if e.patient and rel in indexed}
    if not expected:
        return []
    missing = [rel for rel in expected if not indexed[rel][0].get("patient_id")]
    if missing:
        sides = defaultdict(set)
        for rel, patient in expected.items():
            sides[patient].add(indexed[rel][1])
        both = sorted(p for p, s in sides.items() if len(s) > 1)
        return [f"{len(missing)} of {len(expected)} images have no patient id, so the split ignores patients: "
                f"{len(both)} of {len(sides)} patients have images in both train and test"
                + (f" ({_examples(both)})" if both else "") + f"; e.g. {_examples(missing)}"]
    by_truth, by_index = defaultdict(set), defaultdict(set)
    for rel, patient in expected.items():
        by_truth[patient].add(indexed[rel][0]["patient_id"])
        by_index[indexed[rel][0]["patient_id"]].add(patient)
    split = [f"{p} as {sorted(ids)}" for p, ids in by_truth.items() if len(ids) > 1]
    merged = [f"'{i}' holds {sorted(ps)}" for i, ps in by_index.items() if len(ps) > 1]
    problems = []
    if split:
        problems.append(f"patients split over several ids: {_examples(split)}")
    if merged:
        problems.append(f"patient ids that merge patients: {_examples(merged)}")
    return problems


def disagreements(truth: Truth, result: RoleResult, root: Path) -> list[str]:
    """How the index differs from the truth, in words; empty when it matches."""
    indexed = _indexed(result, root)
    missing = sorted(set(truth.images) - set(indexed))
    extra = sorted(set(indexed) - set(truth.images))
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(truth.images)} expected images not indexed: {_examples(missing)}")
    if extra:
        named = [rel for rel in extra if rel in truth.left_out]
        problems.append(f"{len(extra)} files indexed that should not be"
                        + (f" ({len(named)} of them masks or other non-images)" if named else "")
                        + f": {_examples(extra)}")
    return problems + _field_disagreements(truth, indexed, root) + _patient_disagreements(truth, indexed)


# --- one family, all families -----------------------------------------------------------------------------------


def classify(result: RoleResult, problems: list[str]) -> str:
    if result.questions or not result.resolved or result.check_problems:
        return "asked"
    return "wrong" if problems else "correct"


def _note(outcome: str, result: RoleResult, problems: list[str], family: GeneratedFamily) -> str:
    if outcome == "wrong":
        return "; ".join(problems)
    if outcome == "asked":
        said = result.questions or [f"index check: {p}" for p in result.check_problems] or ["layout unresolved"]
        note = f"{len(said)} question(s): {said[0][:160]}"
        if family.expected == "correct" and problems:
            note += f" | and the index differs: {'; '.join(problems)[:200]}"
        return note
    return ""


def score_family(family: GeneratedFamily, runs_dir: Path) -> Row:
    started = time.monotonic()
    result = run_data_engineer(family, runs_dir)
    seconds = round(time.monotonic() - started, 1)
    problems = disagreements(family.truth, result, family.root)
    outcome = classify(result, problems)
    named = None
    if family.truth.problem:
        said = result.questions + result.check_problems
        named = any(re.search(family.truth.problem, q, re.I) for q in said)
    note = _note(outcome, result, problems, family)
    if named is False:
        note = f"no question names {family.truth.problem_words}; " + note
    return Row(family.name, family.kind, family.expected, outcome, seconds, note, result.layout,
               result.questions + [f"index check: {p}" for p in result.check_problems], problems, named,
               str(family.root))


def run_layouts(names: list[str] | None, data_dir: Path, runs_dir: Path | None = None,
                echo: Callable[[str], None] = lambda text: None) -> list[Row]:
    """Generate each family under `data_dir` (kept, for a look at the failures) and score it.

    The runs go to `runs_dir`, or to a temporary folder removed afterwards.
    """
    specs = select(names)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layout-runs-") as scratch:
        runs = Path(runs_dir or scratch)
        rows = []
        for spec in specs:
            shutil.rmtree(data_dir / spec.name, ignore_errors=True)  # a generated folder from an earlier run
            family = generate(spec, data_dir)
            rows.append(score_family(family, runs))
            echo(f"{spec.name}: {rows[-1].outcome} ({rows[-1].seconds:.1f} s)")
    return rows


# --- totals and the report --------------------------------------------------------------------------------------


def totals(rows: list[Row]) -> dict:
    good = [r for r in rows if r.kind == "good"]
    bad = [r for r in rows if r.kind == "bad"]
    correct = sum(r.outcome == "correct" for r in good)
    return {"families": len(rows), "wrong": sum(r.outcome == "wrong" for r in rows), "wrong_target": 0,
            "good": len(good), "good_correct": correct,
            "good_correct_share": round(correct / len(good), 3) if good else None,
            "good_correct_target": CORRECT_SHARE_TARGET,
            "bad": len(bad), "bad_asked": sum(r.outcome == "asked" for r in bad),
            "bad_asked_naming_problem": sum(r.outcome == "asked" and bool(r.problem_named) for r in bad),
            "seconds": round(sum(r.seconds for r in rows), 1)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    """A markdown table and the totals against the targets."""
    lines = ["| family | expected | outcome | seconds | note |", "|---|---|---|---:|---|"]
    for r in rows:
        mark = "" if r.as_expected else " (!)"
        lines.append(f"| {r.family} | {r.expected} | {r.outcome}{mark} | {r.seconds:.1f} | {_cell(r.note[:300])} |")
    t = totals(rows)
    share = f"{t['good_correct_share']:.0%}" if t["good_correct_share"] is not None else "n/a"
    lines += ["", f"- indexed wrong: {t['wrong']} of {t['families']} (target {t['wrong_target']})",
              f"- good families indexed with no question: {t['good_correct']} of {t['good']} = {share} "
              f"(target >= {t['good_correct_target']:.0%})",
              f"- bad variants asked: {t['bad_asked']} of {t['bad']} "
              f"({t['bad_asked_naming_problem']} with a question naming the problem)",
              f"- {t['seconds']:.0f} s in all"]
    return "\n".join(lines)


def write(rows: list[Row], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "layouts.json", "markdown": out / "layouts.md"}
    files["json"].write_text(json.dumps({"totals": totals(rows), "rows": [asdict(r) for r in rows]}, indent=1))
    files["markdown"].write_text("# Layout families: the Data Engineer against the truth\n\n"
                                 "Generated arrangements of real images (Br35H, pydicom test headers, Colin27) by "
                                 "medbuilder.bench.layout_families.\n\n" + render(rows) + "\n")
    return files
