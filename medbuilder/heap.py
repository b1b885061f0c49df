"""The build process's heap and Python's garbage collector.

A build's process holds millions of objects once torch, MONAI, scikit-learn and Prefect are imported, and
each full collection walks all of them: on Br35H a first build ran 11 of them, 0.08-0.45 s each, 2.1 s in
all, most inside the stages (a collection at the evaluation's start took 0.45 s). Objects that outlived a
stage are nearly all modules, classes and caches that live as long as the process, so each stage starts by
moving them out of the collector's sight (``gc.freeze``): later collections walk only what the stage made.
The build gives them back when it ends (``gc.unfreeze``), so a process that runs build after build (the
bench, a deployment's worker) frees the cycles an earlier build left; nothing frozen is lost, only
collected later.
"""

from __future__ import annotations

import gc


def freeze_survivors() -> None:
    """Keep the collector from walking what exists now (cheap: the lists are moved, not walked)."""
    gc.freeze()


def unfreeze_all() -> None:
    """Hand what freeze_survivors kept back to the collector (its oldest generation)."""
    gc.unfreeze()
