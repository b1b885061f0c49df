"""Seconds an evaluation spends in the model's forward passes, apart from the rest of its work.

The bench splits the evaluation stage into model inference (the forward passes, with or without
gradients: predictions, counterfactuals, saliency) and the report's own work around it (masks,
figures, measures). ``attach`` puts a timer on a loaded network's top-level forward; ``measure``
counts what the forwards since its start took.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

_clock = {"seconds": 0.0, "depth": 0}


def attach(network):
    """Time every top-level forward of `network` (a torch module); returns it. Attaching twice is harmless."""
    if getattr(network, "_medbuilder_timed", False):
        return network

    def before(module, args):
        _clock["depth"] += 1
        if _clock["depth"] == 1:
            module._medbuilder_started = time.perf_counter()

    def after(module, args, output):
        if _clock["depth"] == 1:
            _clock["seconds"] += time.perf_counter() - module._medbuilder_started
        _clock["depth"] = max(0, _clock["depth"] - 1)

    network.register_forward_pre_hook(before)
    network.register_forward_hook(after)
    network._medbuilder_timed = True
    return network


class Span:
    """The forward seconds since it began (live: read it inside or after its block)."""

    def __init__(self):
        self.start = _clock["seconds"]

    @property
    def seconds(self) -> float:
        return _clock["seconds"] - self.start


@contextmanager
def measure():
    """Yields a Span counting the forward seconds spent inside the block."""
    _clock["depth"] = 0
    yield Span()
