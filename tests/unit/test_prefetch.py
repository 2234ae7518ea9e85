"""The bounded producer/consumer that decodes ahead of the face and detector work."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from worker.media.prefetch import Cancelled, run_ahead


def test_items_arrive_in_order_and_the_result_comes_back() -> None:
    seen: list[int] = []

    def produce(put: Callable[[int], None]) -> str:
        for item in range(50):
            put(item)
        return "done"

    for depth in (0, 1, 3):
        seen.clear()
        assert run_ahead(produce, seen.append, depth) == "done"
        assert seen == list(range(50))


def test_the_producer_waits_when_depth_items_are_unconsumed() -> None:
    produced: list[int] = []
    most_ahead = 0

    def produce(put: Callable[[int], None]) -> None:
        for item in range(20):
            put(item)
            produced.append(item)

    def consume(item: int) -> None:
        nonlocal most_ahead
        threading.Event().wait(0.002)  # let the producer run ahead as far as it can
        most_ahead = max(most_ahead, len(produced) - item)

    run_ahead(produce, consume, depth=2)
    assert 1 <= most_ahead <= 3  # the item in hand, two queued, one being put


def test_the_producers_error_reaches_the_caller_after_what_came_before() -> None:
    seen: list[int] = []

    def produce(put: Callable[[int], None]) -> None:
        put(1)
        put(2)
        raise ValueError("corrupt packet")

    with pytest.raises(ValueError, match="corrupt packet"):
        run_ahead(produce, seen.append, depth=2)
    assert seen == [1, 2]


def test_a_failing_consumer_stops_the_producer() -> None:
    stopped = threading.Event()

    def produce(put: Callable[[int], None]) -> None:
        try:
            for item in range(10_000):
                put(item)
        except Cancelled:
            stopped.set()
            raise

    def consume(item: int) -> None:
        if item == 3:
            raise RuntimeError("detector failed")

    with pytest.raises(RuntimeError, match="detector failed"):
        run_ahead(produce, consume, depth=2)
    assert stopped.is_set()
    assert not [t for t in threading.enumerate() if t.name == "dfw-decode-ahead"]
