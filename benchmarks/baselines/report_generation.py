"""Standard baseline for report generation: nearest-neighbour retrieval, the first baseline of the
report-generation literature; each test image gets the report of the most similar training image.

    python benchmarks/baselines/report_generation.py --config RUN/rounds/0/config.json \
        --index-dir RUN/workspace/index --time-budget 60

Images at 32 x 32, intensity scaled to [0, 1], flattened and centred; cosine similarity; no training
(so it always fits its budget); metric: the references' corpus BLEU-4 on the test split.
"""

from __future__ import annotations

import torch

from _common import Budget, parse, reference_module, split
from diagnosis import load_all

SCORING = reference_module("report_generation")  # the same BLEU-4 and tokenisation as the reference

RECIPE = "nearest-neighbour report retrieval on 32 x 32 images (cosine similarity)"


def main() -> None:
    facts, args = parse("Nearest-neighbour report-retrieval baseline.")
    budget = Budget(args.time_budget)
    train, test, _ = split(args, facts, key=None)
    channels = int(facts.get("in_channels", 1))
    xtr = load_all(train, [32, 32], channels).flatten(1)
    xte = load_all(test, [32, 32], channels).flatten(1)
    mean = xtr.mean(0, keepdim=True)
    a = torch.nn.functional.normalize(xtr - mean, dim=1)
    b = torch.nn.functional.normalize(xte - mean, dim=1)
    nearest = (b @ a.T).argmax(1).tolist()
    hyps = [SCORING.words(train[j]["report"]) for j in nearest]
    refs = [SCORING.words(r["report"]) for r in test]
    budget.emit("bleu4", SCORING.corpus_bleu4(hyps, refs), RECIPE, len(train), len(test))


if __name__ == "__main__":
    main()
