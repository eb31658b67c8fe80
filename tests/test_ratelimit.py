"""SlidingWindowLimiter: a hard cap per window, FIFO waiters, penalties after a 429."""

from __future__ import annotations

import asyncio

import pytest

from listingbot.clock import FakeClock
from listingbot.ratelimit import SlidingWindowLimiter


def _most_in_any_window(grants: list[float], window_s: float) -> int:
    return max(sum(1 for t in grants if start <= t < start + window_s) for start in grants)


async def test_never_more_than_max_requests_in_any_window() -> None:
    """However many acquisitions, no window of window_s seconds holds more than the cap."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 10.0, clock)
    grants = []
    for index in range(20):
        await limiter.acquire()
        grants.append(clock.monotonic())
        if index % 4 == 0:
            clock.advance(1.5)  # irregular spacing, as real callers have
    assert _most_in_any_window(grants, 10.0) == 3


async def test_a_burst_up_to_the_cap_does_not_wait() -> None:
    """The first max_requests acquisitions are granted at once and report no wait."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 60.0, clock)
    waits = [await limiter.acquire() for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    assert clock.sleeps == []


async def test_the_next_acquisition_waits_until_the_oldest_leaves_the_window() -> None:
    """Acquisition N+1 waits exactly until the first grant is window_s old, and says so."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 60.0, clock)
    await limiter.acquire()
    clock.advance(5.0)
    await limiter.acquire()
    waited = await limiter.acquire()
    assert waited == pytest.approx(55.0)
    assert clock.monotonic() == pytest.approx(60.0)


async def test_the_window_slides_so_a_new_burst_is_allowed_later() -> None:
    """Once the window has passed, a full burst is granted again without waiting."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 10.0, clock)
    await limiter.acquire()
    await limiter.acquire()
    clock.advance(10.0)
    assert [await limiter.acquire(), await limiter.acquire()] == [0.0, 0.0]


async def test_waiters_are_served_in_arrival_order() -> None:
    """Concurrent callers get their slots first come, first served."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, 5.0, clock)
    order: list[int] = []

    async def caller(index: int) -> None:
        await limiter.acquire()
        order.append(index)

    tasks = []
    for index in range(6):
        tasks.append(asyncio.create_task(caller(index)))
        await asyncio.sleep(0)  # let it queue before the next one arrives
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert clock.monotonic() == pytest.approx(25.0)


async def test_penalize_blocks_every_acquisition_for_the_given_time() -> None:
    """After penalize(30), even an otherwise free limiter waits 30 s."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, 60.0, clock)
    limiter.penalize(30.0)
    assert await limiter.acquire() == pytest.approx(30.0)


async def test_a_shorter_penalty_does_not_cut_a_longer_one_short() -> None:
    """penalize only ever extends the blocked period."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, 60.0, clock)
    limiter.penalize(30.0)
    limiter.penalize(5.0)
    assert await limiter.acquire() == pytest.approx(30.0)


def test_nonsense_limits_are_refused() -> None:
    """A cap below one or a non-positive window is a programming error."""
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 60.0, FakeClock())
    with pytest.raises(ValueError):
        SlidingWindowLimiter(1, 0.0, FakeClock())
