"""The markdown each gate shows (Prefect UI form, terminal, dashboard)."""

from __future__ import annotations

from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.metadata_audit import audit_lines


def dataset_question(run: RunFolder, plan: Plan) -> str:
    card = run.datacard().model_dump(mode="json")
    lines = [f"## Dataset for: \"{plan.request}\"", "",
             f"**Chosen: {plan.dataset}** ({card['title']}; {card['provenance']} data)",
             f"Task: **{plan.task}**, {plan.dimension}, metric: {plan.metric}.", "",
             *licence_lines(card.get("licence")), "", "Why:"]
    lines += [f"- {reason}" for reason in plan.reasons]
    lines.append(f"- {score_meaning()}")
    others = [c for c in plan.candidates if c.name != plan.dataset]
    if others:
        lines += ["", "Other datacards:"]
        lines += [f"- {c.name} (score {c.score:.2f}, {'fits' if c.fits else 'does not fit'})" for c in others]
    lines += ["", *layout_section(run)]
    lines += test_units_lines(run)
    audit = audit_lines(run)
    lines += ["", *audit] if audit else []
    questions = gate_questions(run)
    if questions:
        lines += ["", "### Questions: the layout needs your answer", ""]
        lines += [f"{i}. {q}" for i, q in enumerate(questions, 1)]
    lines += ["", "### Your answer", "", "- **approve**: use the index as shown;",
              "- **correct**: give a corrected layout (the form starts from the inferred one);",
              "- **pick**: use another datacard instead; - **reject**: stop, with your reason."]
    return "\n".join(lines)


def test_units_lines(run: RunFolder) -> list[str]:
    """How many independent units the test split holds: every interval resamples them."""
    import json

    from medbuilder.protocol.untrusted import read_text_nofollow
    from medbuilder.review.clustered import describe, independent_units

    try:
        records = json.loads(read_text_nofollow(run.index_dir, "test.json"))
        unit, units = independent_units([r for r in records if isinstance(r, dict)])
    except (OSError, ValueError):  # an unreadable index is the index check's finding, shown above
        return []
    if not len(units):
        return []
    return ["", f"Test split: {describe(len(units), unit, len(set(units.tolist())))}; every interval resamples "
                "these units, so copies of one scan count once."]


def score_meaning() -> str:
    from medbuilder.agents.matching import TERM_BONUS

    return (f"The score is how close the request's words are to the datacard's description (sentence similarity, "
            f"0 to 1) plus {TERM_BONUS} for each point of the request the datacard supports (task, modality, "
            "anatomy, finding); higher fits better, and a card with a listed mismatch does not fit.")


def licence_lines(licence: str | None) -> list[str]:
    """The licence, with a warning naming what it restricts (research only, non-commercial, unclear, ...)."""
    from medbuilder.protocol.licence import licence_restrictions

    text = " ".join((licence or "not stated").split())
    restricted = licence_restrictions(text)
    if restricted:
        return [f"> **Licence: {text}.** It restricts use ({', '.join(restricted)}): check that your purpose "
                "(a clinical tool, a commercial product, a publication) is allowed before you approve."]
    return [f"Licence: {text}."]


def gate_questions(run: RunFolder) -> list[str]:
    """What the clinician must decide at the dataset gate: the indexer's questions on the submitted layout."""
    if run.exists("indexing_report.json"):
        return list(run.read_json("indexing_report.json").get("questions", []))
    if run.exists("layout.json"):
        return list(run.read_json("layout.json").get("questions", []))
    return []


def _class_rows(run: RunFolder, report: dict) -> list[str]:
    counts = run.read_json("index_report.json").get("class_counts", {}) if run.exists("index_report.json") else {}
    classes = list(report.get("per_class") or {}) or sorted(set(counts.get("train", {})) | set(counts.get("test", {})))
    if not classes:
        return []
    rows = ["| class | images | train | test | examples |", "|---|---|---|---|---|"]
    for name in classes:
        samples = ", ".join(f"`{s}`" for s in report.get("samples", {}).get(name, []))
        rows.append(f"| {name} | {report.get('per_class', {}).get(name, '')} | {counts.get('train', {}).get(name, 0)} "
                    f"| {counts.get('test', {}).get(name, 0)} | {samples} |")
    return rows


def layout_section(run: RunFolder) -> list[str]:
    """How the files were read (the layout, with its evidence) and what that found."""
    if not run.exists("layout.json"):
        if run.exists("index_report.json"):
            counts = run.read_json("index_report.json").get("counts", {})
            return ["### How the files were read", "",
                    f"The agent wrote its own index script (no layout could express the data): {counts}."]
        return []
    layout = run.read_json("layout.json")
    report = run.read_json("indexing_report.json") if run.exists("indexing_report.json") else {}
    lines = ["### How the files were read", ""]
    correction = _last_correction(run)
    if correction:
        lines.append(f"- *layout*: as corrected by {correction['who']} at gate {correction['gate']}")
    lines += [f"- {line}" for line in report.get("layout", [])]
    for choice in layout.get("evidence", []):
        also = f" (also tried: {'; '.join(choice['alternatives'][:3])})" if choice.get("alternatives") else ""
        lines.append(f"- *{choice['part']}*: {choice['choice']}" + (f": {choice['evidence']}" if choice.get(
            "evidence") else "") + also)
    if report:
        split = " (the dataset's own split)" if report.get("predefined_split") else ""
        lines += ["", f"{report.get('images_found', 0)} images found, {report.get('records', 0)} matched, "
                      f"{report.get('unmatched', 0)} not matched; {report.get('train')} train, "
                      f"{report.get('test')} test{split}."]
        if report.get("patients"):
            lines.append(f"{report['patients']} patients (each kept in one split).")
        lines += ["", *_class_rows(run, report)]
        for miss in report.get("unmatched_examples", [])[:5]:
            lines.append(f"- not matched: `{miss['image']}`: {miss['reason']}")
        lines += _cross_check_lines(report)
    return lines


def _cross_check_lines(report: dict) -> list[str]:
    lines = []
    for check in report.get("cross_checks", []):
        examples = "; ".join(str(e) for e in check.get("examples", [])[:3])
        verdict = "all agree" if not check.get("disagree") else f"{check['disagree']} disagree (e.g. {examples})"
        lines.append(f"- cross-check with {check['source']}: {check.get('compared', 0)} compared, {verdict}")
    return ["", *lines] if lines else []


def _last_correction(run: RunFolder) -> dict | None:
    decisions = sorted(run.root.glob("decisions/dataset-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    last = run.read_json(f"decisions/{decisions[-1].name}") if decisions else None
    return last if last and last.get("action") == "correct" else None


def review_question(run: RunFolder, summary: dict, round_k: int) -> str:
    """The review gate's page: the figures in plain words, the shortcut measures, the objective, the rounds."""
    from medbuilder.review.compare import headline

    lines = [f"## Review of round {round_k}", "", *headline(summary)]
    for section in summary.get("sections", []):
        lines += ["", section]
    audit = audit_lines(run, (summary.get("interpretability") or {}).get("metadata_reliance"))
    lines += ["", *audit] if audit else []
    if summary.get("figures"):
        lines += ["", "The ROC curve, the confusion matrix and the saliency maps are shown with this page in the "
                      "dashboard, and kept in the run's report."]
    lines += ["", "### Your answer", "",
              "- **approve**: deliver this round's model, at the operating point shown (or at the threshold or "
              "target sensitivity or specificity you set);",
              "- **refine**: say in plain words what should change (for example which confounder the model must "
              "ignore, or \u201ctrain longer\u201d); another round is trained and comes back here;",
              "- **reject**: stop, with your reason."]
    return "\n".join(lines)
