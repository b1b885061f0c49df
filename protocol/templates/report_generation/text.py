"""Report text: tokeniser, word-level vocabulary, and BLEU (Papineni et al. 2002), no downloads."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:['\-.][a-z0-9]+)*|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, numbers (3.5, t2-weighted) and punctuation marks as tokens."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """Word <-> index; 0..3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, words: list[str]):
        self.itos = [PAD, BOS, EOS, UNK] + [w for w in words if w not in (PAD, BOS, EOS, UNK)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, reports: list[str], min_freq: int = 1) -> "Vocab":
        counts = Counter(t for r in reports for t in tokenize(r))
        return cls(sorted(w for w, c in counts.items() if c >= min_freq))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """<bos> w1 .. wn <eos>, with at most max_tokens words."""
        ids = [self.stoi.get(t, self.stoi[UNK]) for t in tokenize(text)[:max_tokens]]
        return [self.stoi[BOS]] + ids + [self.stoi[EOS]]

    def decode(self, ids) -> str:
        words = []
        for i in ids:
            w = self.itos[int(i)]
            if w == EOS:
                break
            if w not in (PAD, BOS):
                words.append(w)
        return " ".join(words)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.itos, indent=0))

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        return cls(json.loads(Path(path).read_text())[4:])


def ngram_stats(hypothesis: list[str], reference: list[str], max_n: int = 4) -> np.ndarray:
    """[matches_1..max_n, totals_1..max_n, hyp_len, ref_len] for one case (clipped counts)."""
    row = []
    matches, totals = [], []
    for n in range(1, max_n + 1):
        hyp = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
        ref = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
        matches.append(sum(min(c, ref[g]) for g, c in hyp.items()))
        totals.append(max(0, len(hypothesis) - n + 1))
    row = matches + totals + [len(hypothesis), len(reference)]
    return np.array(row, dtype=float)


def bleu_from_stats(stats: np.ndarray, max_n: int = 4, smooth: bool = False) -> float:
    """BLEU-max_n from summed ngram_stats rows; smooth adds 1 to n>1 counts (for single sentences)."""
    s = stats.sum(0) if stats.ndim == 2 else stats
    matches, totals, hyp_len, ref_len = s[:max_n], s[4:4 + max_n], s[8], s[9]
    if hyp_len == 0:
        return 0.0
    logs = []
    for n in range(max_n):
        m, t = matches[n], totals[n]
        if smooth and n > 0:
            m, t = m + 1, t + 1
        if m == 0 or t == 0:
            return 0.0
        logs.append(math.log(m / t))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(sum(logs) / max_n)


def corpus_bleu(hypotheses: list[str], references: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-max_n, one reference per case, on tokenize()d text."""
    stats = np.stack([ngram_stats(tokenize(h), tokenize(r)) for h, r in zip(hypotheses, references)])
    return bleu_from_stats(stats, max_n)
