"""image_map: results in order, one torch thread per worker meanwhile, torch's thread count restored after;
process_map: the same over forked processes, tensors back as plain tensors, a worker's error raised."""

from __future__ import annotations

import os
import threading

import torch

from medbuilder.review.per_image import image_map


class Terminated(Exception):
    """What Prefect's SIGTERM handler does in the flow's process: raise."""


def _raise_on_term(signum, frame):
    raise Terminated(signum)


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


def test_process_map_runs_in_other_processes_and_keeps_order():
    import os

    from medbuilder.review.per_image import MIN_FORKED_ITEMS, process_map

    def work(i: int):
        return os.getpid(), torch.full((2, 3), float(i)), {"square": i * i}

    n = MIN_FORKED_ITEMS + 10
    with process_map(workers=2) as each:
        results = list(each(work, range(n)))
    assert {pid for pid, _, _ in results} - {os.getpid()} and os.getpid() not in {pid for pid, _, _ in results}
    assert all(torch.equal(t, torch.full((2, 3), float(i))) and type(t) is torch.Tensor and d == {"square": i * i}
               for i, (_, t, d) in enumerate(results))
    with process_map(workers=2) as each:  # few items: threads of this process
        assert {pid for pid, _, _ in each(work, range(3))} == {os.getpid()}


def test_process_map_raises_a_workers_error():
    from medbuilder.review.per_image import MIN_FORKED_ITEMS, process_map

    def fail_on_three(i: int) -> int:
        if i == 3:
            raise ValueError("cannot read image file 3.png")
        return i

    try:
        with process_map(workers=2) as each:
            list(each(fail_on_three, range(MIN_FORKED_ITEMS * 2)))
    except ValueError as err:
        assert "3.png" in str(err)
    else:
        raise AssertionError("the worker's error was lost")


def test_workers_end_quietly_under_a_handler_that_raises_on_sigterm(capfd):
    """Prefect's flow process raises on SIGTERM; the forked workers must not inherit that into the flow's log."""
    import signal

    from medbuilder.review.per_image import MIN_FORKED_ITEMS, process_map

    previous = signal.signal(signal.SIGTERM, _raise_on_term)
    try:
        for stop_early in (False, True):
            with process_map(workers=2) as each:
                results = each(lambda i: i + 1, range(MIN_FORKED_ITEMS * 2))
                assert next(results) == 1
                if not stop_early:
                    assert list(results)[-1] == MIN_FORKED_ITEMS * 2
                results.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Terminated" not in err



def test_a_sigterm_before_the_workers_start_ends_it():
    """A worker forked inside sigterm_blocked() that is sent SIGTERM before _worker_start has reset the
    parent's handler: the signal waits (the handler, which raises, never runs) and ends the worker once
    _worker_start unblocks it. Unblocked, the parent's handler would raise (a traceback in the flow's log);
    a signal caught there and dropped once the handler is reset would leave a worker waiting on the pool's
    queue, and terminate() waiting for it, forever."""
    import signal
    import time

    from medbuilder.review.per_image import _worker_start, sigterm_blocked

    previous = signal.signal(signal.SIGTERM, _raise_on_term)
    try:
        with sigterm_blocked():
            pid = os.fork()
            if pid == 0:  # the worker, as a pool's: it never leaves this block
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)
                    _worker_start()
                    time.sleep(0.2)
                    os._exit(3)  # survived the signal
                except BaseException:
                    os._exit(4)  # the parent's handler ran
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, os.waitstatus_to_exitcode(status)
