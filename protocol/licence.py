"""What a datacard's licence text restricts, in plain words (the dataset gate warns about it)."""

from __future__ import annotations

import re

RESTRICTIONS = (
    (r"research", "research use only"),
    (r"teaching|education", "teaching use"),
    (r"non[- ]?commercial|\bnc\b", "non-commercial"),
    (r"no[t]?\s+(for\s+)?clinical|clinical use (is )?not", "no clinical use"),
    (r"no[- ]derivative|\bnd\b", "no derivatives"),
    (r"(do not|don't|no)\s+redistribut", "no redistribution"),
    (r"not (clearly )?stated|unknown|unclear|not specified", "licence unclear"),
)


def licence_restrictions(text: str) -> list[str]:
    """What a licence text restricts (research only, non-commercial, no clinical use, ...), in plain words."""
    return [what for pattern, what in RESTRICTIONS if re.search(pattern, text, re.IGNORECASE)]
