"""Metrics medbuilder computes on the host (the review gate, the acquisition audit, subgroups, re-evaluation).

One AUROC for all of them. The templates keep their own (``templates/_common/engine.py``'s ``auroc``): it is
part of the template code that runs in the sandbox and ships in bundles, and never imports medbuilder.
"""

from __future__ import annotations

import numpy as np


def auroc(y, score) -> float | None:
    """Area under the ROC curve of `score` for the positives `y` (booleans, or 0/1); None when `y` is empty
    or holds only one class."""
    y = np.asarray(y)
    if len(y) == 0 or y.all() or not y.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))
