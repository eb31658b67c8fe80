"""When work runs, and how it stops: APScheduler interval jobs, long-lived workers, the
in-flight set and the grace-period shutdown.

It takes callables and knows nothing of what they do (polls, deliveries, channel checks
are the composition root's). Every job is a coroutine: AsyncIOScheduler runs a plain
function in a thread, where neither the loop's clock nor an ``asyncio.Event`` may be
touched. Jobs never overlap themselves, coalesce misfires and never expire
(``misfire_grace_time=None``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from listingbot.clock import Clock

log = structlog.get_logger("listingbot.scheduler")

# Liveness: a tick job runs this often; the scheduler counts as stalled when the last
# tick is older than LIVENESS_STALE_S (the loop or APScheduler has stopped turning).
TICK_S = 5.0
LIVENESS_STALE_S = 60.0


@dataclass(frozen=True)
class Every:
    """An interval job: ``work`` every ``interval_s`` (plus up to ``jitter_s``); the first
    run is at once when ``now`` is set, else one interval from the start."""

    job_id: str
    work: Callable[[], Awaitable[Any]]
    interval_s: float
    jitter_s: float = 0.0
    now: bool = False


class Scheduler:
    """Runs :class:`Every` jobs and named workers; ``shutdown`` lets them finish within a
    grace period, then cancels what is left.

    ``stopping`` is set once, by :meth:`begin_shutdown`; from then on no job starts.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.stopping = False
        self.last_tick: float | None = None
        self._aps = AsyncIOScheduler()
        self._started = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}

    @property
    def started(self) -> bool:
        return self._started

    @property
    def inflight(self) -> int:
        """Jobs and workers running now."""
        return len(self._inflight)

    def start(self, jobs: Iterable[Every]) -> None:
        """Schedule ``jobs`` and the liveness tick, and start turning."""
        for job in jobs:
            self._add(job)
        self._aps.add_job(
            self._tick_job,
            IntervalTrigger(seconds=TICK_S),
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._tick()
        self._aps.start()
        self._started = True

    def reschedule(self, jobs: Iterable[Every], *, keep: Callable[[str], bool]) -> None:
        """Replace every interval job with ``jobs``; a job for which ``keep(job_id)`` holds
        keeps its next run time. Nothing to do before :meth:`start`."""
        if not self._aps.running:
            return
        kept: dict[str, datetime] = {}
        for job in self._aps.get_jobs():
            if job.id == "tick":
                continue
            if keep(job.id) and job.next_run_time is not None:
                kept[job.id] = job.next_run_time
            job.remove()
        for every in jobs:
            self._add(every)
        for job_id, when in kept.items():
            if self._aps.get_job(job_id) is not None:
                self._aps.modify_job(job_id, next_run_time=when)

    def get_job(self, job_id: str) -> Job | None:
        return self._aps.get_job(job_id)

    def worker(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a long-lived worker (its death makes the service not alive)."""
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        self._workers[name] = task

    async def cancel_worker(self, name: str) -> None:
        """Stop a worker now, without a grace period (its work is worth none)."""
        task = self._workers.get(name)
        if task is not None:
            task.cancel()
            self._inflight.discard(task)
            await asyncio.gather(task, return_exceptions=True)

    def problems(self) -> list[str]:
        """Why the scheduler is not alive (empty while it turns)."""
        problems: list[str] = []
        if not self._aps.running:
            problems.append("the scheduler is not running")
        age = self.tick_age_s()
        if age is not None and age > LIVENESS_STALE_S:
            problems.append(f"the scheduler has not ticked for {age:.0f}s")
        for name, task in self._workers.items():
            if task.done():
                problems.append(f"the {name} worker has stopped")
        return problems

    def tick_age_s(self) -> float | None:
        return None if self.last_tick is None else self.clock.monotonic() - self.last_tick

    def begin_shutdown(self) -> bool:
        """No job starts from now on; False when a shutdown had already begun."""
        if self.stopping:
            return False
        self.stopping = True
        return True

    async def shutdown(self, grace_period_s: float) -> None:
        """Stop scheduling, give in-flight work ``grace_period_s``, cancel the rest."""
        running = self._aps.running
        if running:
            # Pause, not shut down: APScheduler's shutdown cancels running jobs, and the
            # jobs in flight deserve their grace period first.
            self._aps.pause()
        log.info("shutdown_started", inflight=len(self._inflight), grace_period_s=grace_period_s)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace_period_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "shutdown_cancelled_work", tasks=len(pending), grace_period_s=grace_period_s
                )
                await asyncio.gather(*pending, return_exceptions=True)
        if running:
            self._aps.shutdown(wait=False)

    def _add(self, every: Every) -> None:
        self._aps.add_job(
            self._job(every.work),
            IntervalTrigger(seconds=every.interval_s, jitter=every.jitter_s or None),
            id=every.job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **({"next_run_time": self.clock.now()} if every.now else {}),
        )

    def _job(self, work: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """``work`` as APScheduler runs it, tracked so shutdown can wait for it."""

        async def job() -> None:
            if self.stopping:
                return
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await work()
            except asyncio.CancelledError:
                # Only shutdown cancels jobs, after their grace period: say so, quietly.
                log.warning("job_cancelled_at_shutdown")
            finally:
                self._inflight.discard(task)

        return job

    def _tick(self) -> None:
        self.last_tick = self.clock.monotonic()

    async def _tick_job(self) -> None:
        self._tick()
