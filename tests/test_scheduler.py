"""Scheduler specs: jobs, workers, reschedule and the grace-period shutdown, with plain
callables (the scheduler knows nothing of polling) on a fake clock. The one real wait is
a grace period that is meant to run out (10 ms)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from structlog.testing import capture_logs

from listingbot.clock import FakeClock
from listingbot.scheduler import LIVENESS_STALE_S, Every, Scheduler

DEADLINE_S = 5.0


async def test_a_job_marked_now_runs_at_once(clock: FakeClock) -> None:
    """Every(..., now=True) runs the callable as soon as the scheduler starts."""
    scheduler = Scheduler(clock)
    ran = asyncio.Event()

    async def work() -> None:
        ran.set()

    scheduler.start([Every("job", work, interval_s=3600, now=True)])
    try:
        await asyncio.wait_for(ran.wait(), DEADLINE_S)
    finally:
        scheduler.begin_shutdown()
        await scheduler.shutdown(1.0)


async def test_no_job_starts_once_shutdown_has_begun(clock: FakeClock) -> None:
    """A job that comes due after begin_shutdown does not call its work."""
    scheduler = Scheduler(clock)
    calls: list[str] = []

    async def work() -> None:
        calls.append("ran")

    scheduler.start([Every("job", work, interval_s=3600, now=True)])
    scheduler.begin_shutdown()
    for _ in range(20):  # let APScheduler hand the due job to the loop, and run it
        await asyncio.sleep(0)
    await scheduler.shutdown(1.0)
    assert calls == []


async def test_shutdown_lets_work_in_flight_finish_within_the_grace_period(
    clock: FakeClock,
) -> None:
    """A worker that finishes during the grace period finishes: nothing is cancelled."""
    scheduler = Scheduler(clock)
    gate = asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        await gate.wait()
        finished.append(True)

    scheduler.worker("w", work())
    asyncio.get_running_loop().call_soon(gate.set)
    scheduler.begin_shutdown()
    with capture_logs() as logs:
        await scheduler.shutdown(DEADLINE_S)
    assert finished == [True]
    assert [e for e in logs if e["event"] == "shutdown_cancelled_work"] == []


async def test_work_still_running_when_the_grace_period_ends_is_cancelled(
    clock: FakeClock,
) -> None:
    """A worker that would never end is cancelled after the grace period, and said so."""
    scheduler = Scheduler(clock)
    cancelled: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    scheduler.worker("w", work())
    await asyncio.sleep(0)  # the worker is waiting now
    scheduler.begin_shutdown()
    with capture_logs() as logs:
        await scheduler.shutdown(0.01)
    assert cancelled == [True]
    (line,) = [e for e in logs if e["event"] == "shutdown_cancelled_work"]
    assert line["tasks"] == 1


async def test_reschedule_keeps_the_next_run_of_the_jobs_it_is_told_to_keep(
    clock: FakeClock,
) -> None:
    """A kept job keeps its next run time under a new interval; the others start afresh."""
    scheduler = Scheduler(clock)

    async def work() -> None:
        pass

    scheduler.start([Every("kept", work, interval_s=3600), Every("moved", work, interval_s=3600)])
    try:
        kept = scheduler.get_job("kept")
        moved = scheduler.get_job("moved")
        assert kept is not None
        assert moved is not None
        kept_at, moved_at = kept.next_run_time, moved.next_run_time
        scheduler.reschedule(
            [Every("kept", work, interval_s=7200), Every("moved", work, interval_s=7200)],
            keep=lambda job_id: job_id == "kept",
        )
        kept, moved = scheduler.get_job("kept"), scheduler.get_job("moved")
        assert kept is not None
        assert moved is not None
        assert kept.next_run_time == kept_at
        assert kept.trigger.interval == timedelta(hours=2)
        assert moved.next_run_time - moved_at >= timedelta(minutes=59)
    finally:
        scheduler.begin_shutdown()
        await scheduler.shutdown(1.0)


async def test_problems_name_a_dead_worker_and_a_stalled_tick(clock: FakeClock) -> None:
    """Liveness problems: a worker that ended, and no tick for longer than the limit."""
    scheduler = Scheduler(clock)

    async def quits() -> None:
        pass

    scheduler.start([])
    try:
        scheduler.worker("delivery", quits())
        await asyncio.sleep(0)
        clock.advance(LIVENESS_STALE_S + 1)
        assert scheduler.problems() == [
            f"the scheduler has not ticked for {LIVENESS_STALE_S + 1:.0f}s",
            "the delivery worker has stopped",
        ]
    finally:
        scheduler.begin_shutdown()
        await scheduler.shutdown(1.0)
