"""How well the offline Task Manager reads plain-language requests (no training, a few seconds).

Prints, per task and in all, the share of the paraphrased requests in tests/request_paraphrases.py
whose task is recognised: on every request, on the half the word lists and prototypes were
written from, and on the held-out half (the honest figure), by words alone and with the
embedding fallback; then the misread requests, the no-task requests, the German requests and
the requests in a language the offline core does not read (against the six shipped datacards),
and the embedding similarity of finding words to card labels that the lexicon does not know.

    python benchmarks/request_recognition.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from request_paraphrases import (  # noqa: E402
    FINDING_LABEL_PAIRS, GERMAN, HELD_OUT_START, NO_TASK, PARAPHRASES, UNREAD_LANGUAGE)

from medbuilder.agents.request_terms import RequestTerms  # noqa: E402

HALVES = {"all": slice(None), "written-from": slice(None, HELD_OUT_START), "held-out": slice(HELD_OUT_START, None)}


def recognised(by_meaning: bool) -> dict[str, list[tuple[str, str | None]]]:
    """Per task, (request, task read) for every paraphrase."""
    return {task: [(r, RequestTerms.parse(r, by_meaning=by_meaning).task) for r in requests]
            for task, requests in PARAPHRASES.items()}


def rates(readings: dict[str, list[tuple[str, str | None]]], half: slice) -> dict[str, float]:
    """Per task and "all": the share of requests in `half` read as their task."""
    right = {task: [got == task for _, got in rows[half]] for task, rows in readings.items()}
    out = {task: sum(hits) / len(hits) for task, hits in right.items()}
    every = [hit for hits in right.values() for hit in hits]
    out["all"] = sum(every) / len(every)
    return out


def _table(title: str, readings: dict) -> None:
    print(f"\n{title}")
    names = [*PARAPHRASES, "all"]
    print(f"  {'':14}" + "".join(f"{n:>19}" for n in names))
    for label, half in HALVES.items():
        row = rates(readings, half)
        print(f"  {label:14}" + "".join(f"{row[n]:>19.3f}" for n in names))


def _misread(readings: dict) -> None:
    print("\nmisread (with the fallback); H = held out:")
    for task, rows in readings.items():
        for i, (request, got) in enumerate(rows):
            if got != task:
                print(f"  {'H' if i >= HELD_OUT_START else ' '} {task:>17} read as {str(got):<17} | {request}")


def _no_task() -> None:
    print("\nrequests that name no task (must stay None):")
    for request in NO_TASK:
        terms = RequestTerms.parse(request)
        print(f"  {str(terms.task):<17} | {request}")


def _languages() -> None:
    from medbuilder.agents.roles.task_manager import _plan

    cards = shipped_cards()
    print("\nGerman requests (expected dataset / task -> plan):")
    for request, dataset, task in GERMAN:
        plan = _plan(request, cards, None)
        mark = "ok " if (plan.dataset, plan.task) == (dataset, task) else "BAD"
        print(f"  {mark} {dataset}/{task} -> {plan.status} {plan.dataset}/{plan.task} | {request}")
    print("\nrequests in a language the offline core does not read:")
    for request, language in UNREAD_LANGUAGE:
        plan = _plan(request, cards, None)
        first = plan.reasons[0] if plan.reasons else ""
        mark = "ok " if plan.status == "no_fit" and language in first else "BAD"
        print(f"  {mark} {language}: {plan.status}: {first} | {request}")


def shipped_cards() -> list:
    """The six datacards in the repository's datacards/ folder."""
    from medbuilder.protocol.registry import load_card

    return [load_card(p) for p in sorted((REPO / "datacards").glob("*.yaml"))]


def _finding_pairs() -> None:
    from medbuilder.agents.matching import FINDING_SIMILARITY, finding_label_similarity

    print(f"\nfinding word ~ card label by meaning (match at >= {FINDING_SIMILARITY}):")
    for word, label, same in sorted(FINDING_LABEL_PAIRS, key=lambda p: -finding_label_similarity(p[0], p[1])):
        sim = finding_label_similarity(word, label)
        verdict = "right" if (sim >= FINDING_SIMILARITY) == same else "WRONG" if sim >= FINDING_SIMILARITY else "missed"
        print(f"  {sim:.2f} {'same' if same else 'diff'} {verdict:<6} {word} ~ {label}")


def main() -> None:
    words_only, with_fallback = recognised(by_meaning=False), recognised(by_meaning=True)
    n = sum(len(v) for v in PARAPHRASES.values())
    print(f"{n} requests, {len(PARAPHRASES)} tasks; the first {HELD_OUT_START} of each task's list were used to "
          "write the word lists and prototypes, the rest are held out")
    _table("task recognised, words only:", words_only)
    _table("task recognised, words then the embedding fallback:", with_fallback)
    _misread(with_fallback)
    _no_task()
    _languages()
    _finding_pairs()


if __name__ == "__main__":
    main()
