"""Data Engineer: survey the dataset with the preview tools, infer a typed layout, try it, submit it.

medbuilder then builds the index from the submitted layout (`index_build`) and checks it. The
offline policy decides only from what its tools return: the folder preview, the table previews,
the DICOM tags, and the reports of the layouts it tries. A layout given by the clinician at the
dataset gate, or by the datacard, is applied as it is.
"""

from __future__ import annotations

from collections import Counter

from medbuilder.agents.core import AgentExit, RoleJob
from medbuilder.agents.layout.choose import choose, unresolved
from medbuilder.agents.layout.propose import CardFacts, proposals_for
from medbuilder.agents.layout.survey import DICOM_EXTENSIONS, Survey
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.agents.roles.index_build import build_index, dataset_facts, submitted_layout
from medbuilder.agents.scripted import Actor
from medbuilder.protocol.artifacts import GateDecision
from medbuilder.protocol.checks import check_index
from medbuilder.protocol.indexing import IndexingReport
from medbuilder.protocol.indexing.discover import extension_of
from medbuilder.protocol.layout import Layout

SCRIPT = "make_index.py"  # only when no layout can express the data
MAX_TABLES = 4
MAX_DICOM_SAMPLES = 6


def given_layout(ctx: RoleContext) -> tuple[dict | None, str | None]:
    """The layout to apply as it is: the clinician's correction at the last dataset gate, else the card's."""
    decisions = sorted(ctx.run.root.glob("decisions/dataset-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    if decisions:
        decision = GateDecision.model_validate_json(decisions[-1].read_text())
        if decision.action == "correct" and decision.layout:
            return decision.layout, f"the clinician's correction ({decision.who}, gate {decision.gate})"
    if ctx.card.layout is not None:
        return ctx.card.layout.model_dump(mode="json", exclude_none=True), f"the datacard {ctx.card.name}"
    return None, None


def _context(ctx: RoleContext) -> dict:
    card = ctx.card
    layout, given_by = given_layout(ctx)
    return {"request": ctx.request, "task": ctx.plan.task, "dataset": card.name, "dataset_root": str(ctx.dataset_root),
            "dimension": card.dimension, "description": card.description, "label_names": card.label_names,
            "label_synonyms": card.label_synonyms, "confounders": [c.model_dump() for c in card.confounders],
            "workspace": str(ctx.run.workspace), "script": SCRIPT, "given_layout": layout, "given_by": given_by,
            "feedback": ctx.feedback.text() if ctx.feedback else None}


def _dicom_samples(survey: Survey) -> list[str]:
    """Up to MAX_DICOM_SAMPLES DICOM files spread over the image folders (several from one folder when there
    are few folders): tag values that vary, such as PatientID, show only across files."""
    folders = [f for f in survey.image_folders() if any(extension_of(n) in (*DICOM_EXTENSIONS, "")
                                                        for n in f.image_names())]
    per_folder = max(1, MAX_DICOM_SAMPLES // max(len(folders), 1))
    step = max(1, len(folders) // MAX_DICOM_SAMPLES)
    samples = []
    for folder in folders[::step]:
        names = [n for n in folder.image_names() if extension_of(n) in (*DICOM_EXTENSIONS, "")]
        spread = names[:: max(1, len(names) // per_folder)][:per_folder]
        samples += [n if folder.rel == "." else f"{folder.rel}/{n}" for n in spread]
    return samples[:MAX_DICOM_SAMPLES]


def take_survey(act: Actor, root: str) -> Survey:
    preview = act.expect("preview_dirs", "How is the dataset organised?", path=root, max_depth=4, max_names=20,
                         max_folders=300)
    survey = Survey.from_preview(root, preview.result)
    for rel in survey.table_files()[:MAX_TABLES]:
        shown = act("preview_files", f"Does {rel} hold labels, ids or a split?", path=f"{root}/{rel}", n=30)
        if shown.ok:
            survey.add_table(rel, shown.result.summary)
    if survey.is_dicom():
        for rel in _dicom_samples(survey):
            shown = act("load_med_data", "Which DICOM tags could hold the label or the patient?", path=f"{root}/{rel}")
            if shown.ok:
                survey.dicom_tags[rel] = shown.result.meta.get("tags", {})
    return survey


def try_layout(act: Actor, layout: Layout):
    tried = act("apply_layout", "Try: " + "; ".join(layout.summary()[1:3]), layout=layout.model_dump(mode="json"))
    if not tried.ok:
        raise ValueError(tried.text.removeprefix("Error: "))
    return tried.result.report


def infer_layout(act: Actor, values: dict) -> Layout:
    survey = take_survey(act, values["dataset_root"])
    facts = CardFacts(task=values["task"], dimension=values["dimension"], label_names=values["label_names"],
                      synonyms=values["label_synonyms"], description=values["description"],
                      confounders=values["confounders"])
    layout, tried = choose(proposals_for(survey, facts), lambda candidate: try_layout(act, candidate), facts)
    return layout if layout is not None else unresolved(survey, facts, tried)


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    if values["given_layout"] is not None:
        layout, how = values["given_layout"], f"Apply the layout given by {values['given_by']}."
    else:
        layout, how = infer_layout(act, values).model_dump(mode="json"), "Submit the layout that fits best."
    submitted = act("apply_layout", how, layout=layout, submit=True)
    if not submitted.ok:
        raise AgentExit("exit_error", submitted.text)
    report = submitted.result.report
    questions = f" {len(report.questions)} question(s) for the dataset gate." if report.questions else ""
    return f"Layout: {'; '.join(report.layout)}. {report.records} of {report.images_found} images matched.{questions}"


def after(ctx: RoleContext) -> None:
    """Build the index from the submitted layout (an agent's own make_index.py output is kept as it is)."""
    try:
        layout = submitted_layout(ctx)
        result = None if layout is None else build_index(ctx, layout)
        error = result if isinstance(result, str) else None
    except ValueError as err:
        error = str(err)
    ctx.run.write("index_build.json", {"layout": ctx.run.exists("layout.json"), "error": error})


def check(ctx: RoleContext) -> list[str]:
    build = ctx.run.read_json("index_build.json") if ctx.run.exists("index_build.json") else {}
    if build.get("error"):
        return [f"the submitted layout could not be applied: {build['error']}; correct it and submit again"]
    if ctx.run.exists("layout.json") and not Layout.model_validate_json(ctx.run.path("layout.json").read_text()).resolved:
        return []  # the dataset gate asks the clinician where the target is
    if ctx.run.exists("indexing_report.json") and not ctx.run.exists("workspace/index/train.json"):
        return nothing_indexed(ctx.run.read("indexing_report.json", IndexingReport), ctx.card.label_names)
    report = check_index(ctx.run.index_dir, ctx.plan.task, ctx.dataset_root, ctx.card.label_names,
                         run_id=ctx.run.run_id)
    ctx.run.write("index_report.json", report)
    return report.problems


def nothing_indexed(report: IndexingReport, label_names: list[str]) -> list[str]:
    """Why a layout gave no index, in the indexer's own words."""
    reasons = Counter(e.reason for e in report.unmatched_examples)
    findings = [f"the layout matched {report.records} of {report.images_found} images"
                + (f" ({', '.join(f'{n} without {f}' for f, n in report.unmatched_by_field.items())})"
                   if report.unmatched_by_field else "")]
    if report.unmapped_values:
        values = ", ".join(f"'{v}' ({n})" for v, n in sorted(report.unmapped_values.items(), key=lambda x: -x[1])[:6])
        findings.append(f"label values {values} are none of the card's labels {list(label_names)} and have no "
                        "label_map entry")
    else:
        findings += [f"{reason} ({n} of the files shown)" for reason, n in reasons.most_common(3)]
    findings += [f"roots not found: {', '.join(report.missing_roots)}"] if report.missing_roots else []
    return findings + ["correct the layout (label source or label_map, image roots) and submit again"]


ROLE = Role(
    name="data_engineer",
    tools=["list_files", "read_files", "preview_dirs", "preview_files", "apply_layout", "write_file", "edit_file",
           "copy_files", "run_script", "load_med_data", "check_3D", "verify_report"],
    policy=policy,
    read_roots=lambda ctx: [ctx.dataset_root],
    check=check,
    context=_context,
    after=after,
    dataset=dataset_facts,
    uses_feedback=False,
)
