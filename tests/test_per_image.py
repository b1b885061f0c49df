"""image_map: results in order, one torch thread per worker meanwhile, torch's thread count restored after."""

from __future__ import annotations

import threading

import torch

from medbuilder.review.per_image import image_map


def test_image_map_keeps_order_and_restores_threads():
    before = torch.get_num_threads()
    seen = set()

    def work(i: int) -> tuple[int, int]:
        seen.add(threading.get_ident())
        return i * i, torch.get_num_threads()

    with image_map(workers=2) as each:
        results = list(each(work, range(50)))
        assert torch.get_num_threads() == 1
    assert [r[0] for r in results] == [i * i for i in range(50)]
    assert {r[1] for r in results} == {1} and threading.get_ident() not in seen
    assert torch.get_num_threads() == before


def test_image_map_raises_the_first_error_and_still_restores():
    before = torch.get_num_threads()

    def fail_on_three(i: int) -> int:
        if i == 3:
            raise ValueError("cannot read image file 3.png")
        return i

    try:
        with image_map(workers=2) as each:
            list(each(fail_on_three, range(6)))
    except ValueError as err:
        assert "3.png" in str(err)
    else:
        raise AssertionError("the worker's error was lost")
    assert torch.get_num_threads() == before
