"""The evaluation's model-inference clock: top-level forwards only, nested modules not counted twice."""

import time

import torch

from medbuilder.review import inference_clock


class Slow(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module | None = None):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(0.05)
        return self.inner(x) if self.inner is not None else x


def test_counts_each_top_level_forward_once():
    outer = inference_clock.attach(Slow(inference_clock.attach(Slow())))
    inference_clock.attach(outer)  # twice: still one timer
    with inference_clock.measure() as span:
        time.sleep(0.05)  # outside any forward: not counted
        for _ in range(3):
            outer(torch.zeros(1))
    assert 0.29 <= span.seconds < 0.45  # 3 forwards of 0.1 s each (outer + its inner), not 0.45 + the sleep
    with inference_clock.measure() as later:
        pass
    assert later.seconds == 0.0
