"""The report template's BLEU equals sacrebleu's on real report text.

The template keeps its own BLEU (protocol/templates/report_generation/text.py) because its bootstrap interval
resamples per-case n-gram counts a thousand times, and because it runs inside the sandbox with the template's
own tokenizer; sacrebleu is a test dependency only. Parity is checked on the same tokens (sacrebleu with
tokenize="none" on the template's tokens), orders 1 to 4, corpus level, on 400 real IU-Xray reports: each
report's FINDINGS against the FINDINGS of the next report (different real texts with much shared wording).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medbuilder.protocol.datasets import iu_xray
from medbuilder.protocol.templates.spec import get_template


def _text_module():
    spec = importlib.util.spec_from_file_location("report_text", get_template("report_generation").folder / "text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pairs() -> list[tuple[list[str], list[str]]]:
    text = _text_module()
    members = iu_xray._members(iu_xray.source_archive())
    findings = [r["findings"] for r in (iu_xray.parse_report(n, d) for n, d in list(members.items())[:600])
                if r["findings"]][:401]
    return [(text.tokenize(h), text.tokenize(r)) for h, r in zip(findings[1:], findings[:-1])]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_corpus_bleu_matches_sacrebleu(pairs, order):
    from sacrebleu.metrics import BLEU

    text = _text_module()
    stats = np.stack([text.ngram_stats(h, r) for h, r in pairs])
    ours = text.bleu_from_stats(stats, order)
    theirs = BLEU(tokenize="none", max_ngram_order=order, smooth_method="none", effective_order=False).corpus_score(
        [" ".join(h) for h, _ in pairs], [[" ".join(r) for _, r in pairs]]).score / 100
    assert len(pairs) == 400 and 0.05 < ours < 0.95
    assert ours == pytest.approx(theirs, abs=1e-9)
