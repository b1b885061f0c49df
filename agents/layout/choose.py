"""Choose a layout: try the candidates on the real files, keep the one that explains the most images.

Each candidate is tried through the ``apply_layout`` tool (the callback). The best by coverage and
classes found wins; a strong candidate of another kind becomes a cross-check of the label (the
report then counts disagreements). A reading that is only a guess, or no candidate at all, becomes
a question for the dataset gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medbuilder.agents.layout.labels import GUESS, KNOWN
from medbuilder.agents.layout.propose import CardFacts, Proposal
from medbuilder.agents.layout.survey import Survey
from medbuilder.protocol.indexing.report import IndexingReport
from medbuilder.protocol.layout import Choice, Layout

MAX_TRIES = 6
FULL = 1.999  # score of a candidate that matched every image and found every class


@dataclass
class Tried:
    proposal: Proposal
    report: IndexingReport | None
    score: float = -1.0
    error: str | None = None


def score(report: IndexingReport, facts: CardFacts) -> float:
    """Coverage of the images found plus the share of the card's classes that got images (0..2)."""
    if not report.images_found or not report.records:
        return 0.0
    coverage = report.records / report.images_found
    names = facts.label_names if facts.task in ("diagnosis", "anomaly_detection") else []
    classes = sum(bool(report.per_class.get(n)) for n in names) / len(names) if names else 1.0
    listed = sum(report.rows_without_image.values())
    return coverage + classes - 0.5 * listed / max(listed + report.records, 1)


def _cross_checks(best: Tried, tried: list[Tried]) -> list:
    """Other strong readings of the label, each with the label_map entries it needs."""
    if best.proposal.option is None:
        return []
    checks = []
    for other in tried:
        option = other.proposal.option
        if other is best or option is None or other.report is None or option.strength < KNOWN:
            continue
        same = option.source == best.proposal.option.source
        if not same and other.proposal.family != best.proposal.family and other.score >= FULL:
            checks.append(option)
    return checks[:2]


def _guess_question(best: Proposal) -> list[str]:
    option = best.option
    if option is None or option.strength > GUESS or not option.label_map:
        return []
    readings = ", ".join(f"'{raw}' as '{label}'" for raw, label in list(option.label_map.items())[:6])
    return [f"the label values were guessed, not given: {readings} ({option.what}). Is that right? If not, send "
            "the layout back with label_map corrected (or add label_synonyms to the datacard)"]


def _by_family_first(proposals: list[Proposal]) -> list[Proposal]:
    """The best proposal of each kind (table, folder, tag, file name) first, then the rest, each by prior:
    a second kind is always tried, so it can confirm the label or show a disagreement."""
    leaders = {}
    for proposal in proposals:
        leaders.setdefault(proposal.family, proposal)
    first = sorted(leaders.values(), key=lambda p: -p.prior)
    return first + [p for p in proposals if p not in first]


def choose(proposals: list[Proposal], try_layout: Callable[[Layout], IndexingReport], facts: CardFacts,
           ) -> tuple[Layout | None, list[Tried]]:
    """The chosen layout (with evidence, cross-checks and questions) and every candidate tried."""
    tried = []
    ordered = _by_family_first(proposals)
    families = len({p.family for p in proposals})
    for proposal in ordered[:MAX_TRIES]:
        try:
            report = try_layout(proposal.layout)
            tried.append(Tried(proposal, report, score(report, facts)))
        except ValueError as err:  # the tool's message: a missing column, an unreadable table
            tried.append(Tried(proposal, None, error=str(err)))
        if len(tried) >= max(families, 2) and max(t.score for t in tried) >= FULL:
            break
    usable = [t for t in tried if t.report is not None and t.report.records]
    if not usable:
        return None, tried
    best = max(usable, key=lambda t: (round(t.score, 3), t.proposal.prior))
    alternatives = [f"{t.proposal.what}: {t.report.records if t.report else 0} of "
                    f"{t.report.images_found if t.report else 0} images" + (f" ({t.error})" if t.error else "")
                    for t in tried if t is not best]
    layout = best.proposal.layout.model_copy(deep=True)
    checks = _cross_checks(best, tried)
    layout.label_cross_checks = [c.source for c in checks]
    for check in checks:
        layout.label_map = {**check.label_map, **layout.label_map}
    layout.evidence.insert(0, Choice(part="layout", choice=best.proposal.what,
                                     evidence=f"matched {best.report.records} of {best.report.images_found} images",
                                     alternatives=alternatives))
    layout.questions += _guess_question(best.proposal)
    return layout, tried


def unresolved(survey: Survey, facts: CardFacts, tried: list[Tried]) -> Layout:
    """A layout that says what was seen and asks where the target is."""
    target = {"segmentation": "masks", "report_generation": "report text"}.get(facts.task, "labels")
    folders = ", ".join(f"{f.rel}/ ({f.images} images)" for f in survey.image_folders()[:6]) or "none with images"
    tables = "; ".join(f"{t.rel} (columns {', '.join(t.columns[:8])})" for t in survey.tables.values()) or "none"
    names = sorted({p for f in survey.image_folders() for p in f.name_patterns})[:5]
    wanted = f" {facts.label_names}" if facts.label_names else ""
    question = (f"I could not tell where the {target}{wanted} are. Image folders: {folders}. Tables: {tables}. "
                f"File names look like: {', '.join(names) or 'n/a'}."
                + (f" Tried: {'; '.join(t.proposal.what for t in tried)}." if tried else "")
                + " Send a layout that says where they are (label, masks or report source).")
    evidence = [Choice(part="layout", choice="none", evidence="no folder, file name, table or tag read as the target")]
    return Layout(task=facts.task, questions=[question], evidence=evidence)
