"""The composition root: builds the HTTP session, clients, store, clock and scheduler from a
``Config`` and runs them. Nothing below this module looks anything up by itself.

Lifecycle of ``run``::

    start()  open the state file, create the clients, resolve and check every channel,
             register subscriptions, reconcile sends left unknown by a crash
    loop     one APScheduler job per source (interval + jitter, never overlapping, misfires
             coalesced) and one delivery job; a finished poll wakes delivery at once
    stop     SIGTERM/SIGINT: no new polls or sends, in-flight work gets a grace period,
             then sessions and the state file are closed
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clients.kato import KatoClient
from listingbot.clients.kotohomes import KotohomesClient
from listingbot.clock import Clock, SystemClock
from listingbot.config import Config, Subscription
from listingbot.delivery import Deliverer, DeliveryOutcome
from listingbot.errors import ConfigError, ListingBotError
from listingbot.metrics import Metrics
from listingbot.models import SOURCES, Source
from listingbot.polling import (
    ExistenceCheck,
    Fetcher,
    Housekeeping,
    KatoFetcher,
    KotohomesFetcher,
    Poller,
    PollOutcome,
)
from listingbot.store import Store

log = structlog.get_logger("listingbot.app")

# `listingbot once`: extra delivery passes for transient failures, and the longest wait.
ONCE_DELIVERY_RETRIES = 3
ONCE_MAX_WAIT_S = 15.0


@dataclass
class SourceHealth:
    """What readiness and logs need to know about a source between polls."""

    interval_s: float
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    failing: bool = False
    stopped: str | None = None  # why polling is suspended (credentials refused)


@dataclass
class Totals:
    """Counters for the demo's summary and `once`'s exit code."""

    polls: int = 0
    failed_polls: int = 0
    listings: int = 0
    events: int = 0
    queued: int = 0
    sent: int = 0
    failed_messages: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


class App:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        wait_lock_s: float = 0.0,
    ) -> None:
        self.config = config
        self.wait_lock_s = wait_lock_s  # how long start() waits for the state file's lock
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.rng = rng or random.Random()  # noqa: S311 - jitter only
        self.totals = Totals()
        self.health: dict[str, SourceHealth] = {}
        self.started_at: datetime | None = None
        self.store: Store | None = None
        self.session: aiohttp.ClientSession | None = None
        self.chatkitty: ChatKittyClient | None = None
        self.deliverer: Deliverer | None = None
        self.pollers: dict[Source, Poller] = {}
        self.housekeeping: Housekeeping | None = None  # one per state file, for every source
        self.channels: dict[str, int] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.on_poll: list[Callable[[PollOutcome], Awaitable[None] | None]] = []
        self.on_delivery: list[Callable[[DeliveryOutcome], Awaitable[None] | None]] = []

    # ------------------------------------------------------------------ building
    async def start(self, *, dry_run: bool = False) -> None:
        cfg = self.config
        self.started_at = self.clock.now()
        # Service work holds the state file's lock for the process's lifetime (one process
        # per state file); a dry run changes nothing and needs none.
        self.store = await Store.open(
            cfg.state.path,
            self.clock.now,
            exclusive=not dry_run,
            wait_lock_s=self.wait_lock_s,
            sleep=self.clock.sleep,
        )
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": "listingbot/0.1 (+https://github.com/listingbot)"},
        )
        # aiohttp silently re-sends an idempotent request once when a kept-alive connection
        # drops. That hidden retry bypasses the Kato limiter (Kato then sees more than
        # requests_per_minute) and our own retry policy; listingbot retries dropped
        # connections itself, through the limiter. There is no public switch: the attribute
        # is private, and requirements.lock pins the aiohttp version it was checked against.
        self.session._retry_connection = False
        ck = cfg.chatkitty
        self.chatkitty = ChatKittyClient(
            api_url=ck.api_url,
            path_prefix=ck.path_prefix,
            token_url=ck.token_url,
            client_id=ck.client_id,
            client_secret=ck.client_secret,
            session=self.session,
            clock=self.clock,
            timeout_s=ck.timeout_s,
            observer=self.metrics,
        )
        self.deliverer = Deliverer(
            self.store, self.chatkitty, self.clock, self.metrics, cfg.delivery, rng=self.rng
        )
        self._build_pollers()
        self.channels = await self._resolve_channels(cfg.subscriptions, dry_run=dry_run)
        for poller in self.pollers.values():
            poller.set_subscriptions(cfg.subscriptions, self.channels)

    def _build_pollers(self) -> None:
        assert self.session is not None
        assert self.store is not None
        cfg = self.config
        fetchers: dict[Source, Fetcher] = {}
        intervals: dict[Source, timedelta] = {}
        if cfg.sources.kotohomes is not None:
            k = cfg.sources.kotohomes
            client = KotohomesClient(
                base_url=k.api_url,
                key=k.key,
                session=self.session,
                clock=self.clock,
                array_style=k.array_style,
                created_sort=k.created_sort,
                timeout_s=k.timeout_s,
                min_request_interval_s=k.min_request_interval_s,
                observer=self.metrics,
            )
            fetchers["kotohomes"] = KotohomesFetcher(client, limit=k.limit, metrics=self.metrics)
            intervals["kotohomes"] = k.poll_interval
        if cfg.sources.kato is not None:
            c = cfg.sources.kato
            kato = KatoClient(
                base_url=c.api_url,
                api_version=c.api_version,
                client_id=c.client_id,
                client_secret=c.client_secret,
                session=self.session,
                clock=self.clock,
                requests_per_minute=c.requests_per_minute,
                page_size=c.page_size,
                scope=c.scope,
                token_path=c.token_path,
                timeout_s=c.timeout_s,
                observer=self.metrics,
            )
            fetchers["kato"] = KatoFetcher(kato, listing_url=c.listing_url, metrics=self.metrics)
            intervals["kato"] = c.poll_interval
        if self.housekeeping is None:
            self.housekeeping = Housekeeping(self.store, self.clock, cfg.state.retention)
        self.housekeeping.retention = cfg.state.retention
        for source, fetcher in fetchers.items():
            self.pollers[source] = Poller(
                source,
                fetcher,
                self.store,
                self.clock,
                self.metrics,
                channels={},
                retention=cfg.state.retention,
                housekeeping=self.housekeeping,
                checker=fetcher if isinstance(fetcher, ExistenceCheck) else None,
                gone_checks=cfg.state.gone_checks_per_poll,
                gone_after_sweeps=cfg.state.gone_after_sweeps,
            )
            previous = self.health.get(source)
            self.health[source] = SourceHealth(intervals[source].total_seconds())
            if previous is not None:
                self.health[source].last_success = previous.last_success

    async def _resolve_channels(
        self, subs: Sequence[Subscription], *, dry_run: bool
    ) -> dict[str, int]:
        """Channel ids for every subscription; every channel must exist in ChatKitty."""
        assert self.chatkitty is not None
        by_name: dict[str, int] = {}
        known_ids: set[int] = set()
        needs_lookup = not dry_run or any(isinstance(s.channel, str) for s in subs)
        if needs_lookup:
            for channel in await self.chatkitty.list_channels():
                known_ids.add(channel.id)
                by_name.setdefault(channel.name, channel.id)
                if channel.display_name:
                    by_name.setdefault(channel.display_name, channel.id)
        out: dict[str, int] = {}
        problems: list[str] = []
        for index, sub in enumerate(subs):
            where = f"subscriptions[{index}].channel"
            if isinstance(sub.channel, int):
                if needs_lookup and sub.channel not in known_ids:
                    problems.append(f"{where}: ChatKitty has no channel with id {sub.channel}")
                out[sub.name] = sub.channel
            elif sub.channel in by_name:
                out[sub.name] = by_name[sub.channel]
            else:
                problems.append(f"{where}: ChatKitty has no channel named {sub.channel!r}")
        if problems:
            raise ConfigError("\n".join(problems))
        return out

    # ------------------------------------------------------------------ work units
    async def poll(self, source: Source, *, dry_run: bool = False) -> PollOutcome:
        """One poll of one source. Never raises on upstream trouble: it reports it."""
        poller = self.pollers[source]
        health = self.health[source]
        if health.stopped and not dry_run:
            # Said loudly once when it stopped (see _account_poll); quietly from then on.
            log.debug("source_still_stopped", source=source)
            return PollOutcome(source, ok=False, error=health.stopped, auth_failed=True)
        try:
            outcome = await poller.poll(dry_run=dry_run)
        except ListingBotError as err:
            outcome = PollOutcome(source, ok=False, error=str(err))
        self._account_poll(outcome)
        for hook in self.on_poll:
            result = hook(outcome)
            if result is not None:
                await result
        return outcome

    def _account_poll(self, outcome: PollOutcome) -> None:
        source = outcome.source
        health = self.health[source]
        now = self.clock.now()
        self.totals.polls += 1
        self.totals.listings += outcome.listings
        self.totals.events += outcome.events
        self.totals.queued += outcome.queued
        log.info(
            "poll_finished",
            source=source,
            outcome="ok" if outcome.ok else "failed",
            queries=outcome.queries,
            failed_queries=outcome.failed_queries,
            requests=outcome.requests,
            listings=outcome.listings,
            skipped=outcome.skipped,
            events=outcome.events,
            queued=outcome.queued,
            possible_gaps=outcome.gaps,
            duration_s=round(outcome.duration_s, 3),
        )
        if outcome.ok:
            health.last_success = now
            self.metrics.last_success.labels(source).set(now.timestamp())
            if health.failing:
                health.failing = False
                log.info("source_recovered", source=source)
            return
        self.totals.failed_polls += 1
        health.last_failure = now
        health.last_error = outcome.error
        if outcome.auth_failed and source == "kotohomes":
            health.stopped = (
                f"Kotohomes refused the API key: polling of kotohomes is stopped until the "
                f"configuration changes (fix sources.kotohomes.key and reload). {outcome.error}"
            )
            log.error("source_stopped", source=source, reason=health.stopped)
        if not health.failing:
            health.failing = True
            log.error("source_failing", source=source, error=outcome.error)

    async def deliver(self) -> DeliveryOutcome:
        assert self.deliverer is not None
        outcome = await self.deliverer.run_pass()
        self.totals.sent += outcome.sent + outcome.reconciled_sent
        self.totals.failed_messages += outcome.failed
        log.info(
            "delivery_finished",
            channels=outcome.channels,
            sent=outcome.sent,
            retried=outcome.retried,
            unknown=outcome.unknown,
            failed=outcome.failed,
            reconciled_sent=outcome.reconciled_sent,
            reconciled_requeued=outcome.reconciled_requeued,
            reconcile_incomplete=outcome.reconcile_incomplete,
            claims_lost=outcome.claims_lost,
            store_errors=outcome.store_errors,
            rounds=outcome.rounds,
            pending=outcome.pending,
            duration_s=round(outcome.duration_s, 3),
        )
        for hook in self.on_delivery:
            result = hook(outcome)
            if result is not None:
                await result
        return outcome

    async def once(self, *, dry_run: bool = False) -> bool:
        """One poll of every source and one delivery pass; True when all went well."""
        ok = True
        failed_before = self.totals.failed_messages
        for source in self.pollers:
            outcome = await self.poll(source, dry_run=dry_run)
            ok = ok and outcome.ok
            if dry_run:
                for message in outcome.messages:
                    print(f"--- channel {message.channel_id} · {message.event} · {message.key}")
                    print(message.body)
                    print()
        if not dry_run:
            delivered = await self.deliver()
            # A transient send failure gets a few retries within this run (bounded, on the
            # backoff schedule) before `once` reports it: exit 1 means "failed after retries".
            assert self.store is not None
            for _attempt in range(ONCE_DELIVERY_RETRIES):
                if delivered.pending == 0:
                    break
                due = await self.store.next_due()
                wait = 0.0 if due is None else (due - self.clock.now()).total_seconds()
                await self.clock.sleep(min(ONCE_MAX_WAIT_S, max(0.0, wait)))
                delivered = await self.deliver()
            failed_now = self.totals.failed_messages - failed_before
            ok = ok and failed_now == 0 and delivered.pending == 0
        return ok

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        """Poll and deliver on schedule until ``stop`` is set, then shut down gracefully."""
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self._schedule_all()
        self.scheduler.start()
        self._spawn(self.deliver_safely())  # rows left by an earlier run go out first
        await stop.wait()
        await self.shutdown()

    def _schedule_all(self) -> None:
        assert self.scheduler is not None
        cfg = self.config
        for source in self.pollers:
            src_cfg = cfg.sources.kotohomes if source == "kotohomes" else cfg.sources.kato
            assert src_cfg is not None
            self.scheduler.add_job(
                self._job(functools.partial(self.poll_then_deliver, source)),
                IntervalTrigger(
                    seconds=src_cfg.poll_interval.total_seconds(),
                    jitter=src_cfg.poll_jitter.total_seconds() or None,
                ),
                id=f"poll-{source}",
                next_run_time=self.clock.now(),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                replace_existing=True,
            )
        self.scheduler.add_job(
            self._job(self.deliver_safely),
            IntervalTrigger(seconds=cfg.delivery.interval.total_seconds()),
            id="deliver",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def _job(self, factory: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """Wrap work for APScheduler so shutdown can wait for it (APScheduler cannot)."""

        async def job() -> None:
            if self._stopping:
                return
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await factory()
            except asyncio.CancelledError:
                # Only shutdown cancels jobs, after their grace period: say so, quietly.
                log.warning("job_cancelled_at_shutdown")
            finally:
                self._inflight.discard(task)

        return job

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def poll_then_deliver(self, source: Source) -> None:
        try:
            outcome = await self.poll(source)
        except Exception:  # the scheduler must never see an exception; log it and go on
            log.exception("poll_crashed", source=source)
            return
        if outcome.queued and not self._stopping:
            await self.deliver_safely()

    async def deliver_safely(self) -> None:
        try:
            await self.deliver()
        except Exception:
            log.exception("delivery_crashed")

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight work finish within the grace period, close.

        Safe to call twice. Work still running when the grace period ends is cancelled:
        a poll commits in one transaction or not at all, and a send cut off mid-request
        leaves its row ``sending``, which the next start reconciles against the channel.
        """
        if self._stopping:
            return
        self._stopping = True
        if self.deliverer is not None:
            self.deliverer.stop()
        running = self.scheduler is not None and self.scheduler.running
        if running:
            assert self.scheduler is not None
            # Pause, not shut down: APScheduler's shutdown cancels running jobs, and the
            # jobs in flight deserve their grace period first.
            self.scheduler.pause()
        grace = self.config.delivery.grace_period_s
        log.info("shutdown_started", inflight=len(self._inflight), grace_period_s=grace)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown_cancelled_work", tasks=len(pending), grace_period_s=grace)
                await asyncio.gather(*pending, return_exceptions=True)
        if running:
            assert self.scheduler is not None
            self.scheduler.shutdown(wait=False)
        await self.close()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    # ------------------------------------------------------------------ reload
    async def reload(self, new: Config) -> None:
        """Apply a new, already validated config without a restart.

        Subscriptions, intervals, source settings, delivery settings and the outbox-age
        threshold change. The state file, the ChatKitty account and the ops endpoint stay:
        changing those needs a restart, and a config that does is refused as a whole.
        Everything that can fail (channel lookup) runs before anything changes. A source
        whose settings did not change keeps its client (token, rate-limit window) and its
        schedule; a source whose settings or subscriptions changed is polled at once.
        """
        if self._stopping:
            raise ConfigError("shutting down: the new configuration was not applied")
        old = self.config
        problems = [
            f"{key}: cannot change while running; restart to apply"
            for key, changed in (
                ("state.path", new.state.path != old.state.path),
                ("chatkitty", new.chatkitty != old.chatkitty),
                ("ops.listen", new.ops.listen != old.ops.listen),
            )
            if changed
        ]
        if problems:
            raise ConfigError("\n".join(problems))
        channels = await self._resolve_channels(new.subscriptions, dry_run=False)

        def subs_of(config: Config, source: Source) -> tuple[Subscription, ...]:
            return tuple(s for s in config.subscriptions if s.source == source)

        changed_sources = {s for s in SOURCES if getattr(new.sources, s) != getattr(old.sources, s)}
        touched = changed_sources | {s for s in SOURCES if subs_of(new, s) != subs_of(old, s)}
        old_pollers, old_health = self.pollers, self.health
        self.config = new
        if changed_sources:
            self.pollers = {}
            self._build_pollers()
            for source in list(self.pollers):
                if source not in changed_sources and source in old_pollers:
                    self.pollers[source] = old_pollers[source]
                    self.health[source] = old_health[source]
                elif source in old_health:
                    # New settings lift a stop (a refused key may have been fixed), but
                    # a source that is still failing is not announced as failing again.
                    before = old_health[source]
                    health = self.health[source]
                    health.failing = before.failing
                    health.last_failure = before.last_failure
                    health.last_error = before.last_error
            for gone in [s for s in self.health if s not in self.pollers]:
                del self.health[gone]
                for gauge in (self.metrics.source_up, self.metrics.last_success):
                    with contextlib.suppress(KeyError):
                        gauge.remove(gone)
        for poller in self.pollers.values():
            poller.set_subscriptions(new.subscriptions, channels)
        self.channels = channels
        if self.deliverer is not None:
            self.deliverer.config = new.delivery
        if self.scheduler is not None and self.scheduler.running:
            keep: dict[str, datetime] = {}
            for job in self.scheduler.get_jobs():
                if job.id == "deliver":
                    unchanged = new.delivery.interval == old.delivery.interval
                else:
                    name = job.id.removeprefix("poll-")
                    unchanged = name in self.pollers and name not in touched
                if unchanged and job.next_run_time is not None:
                    keep[job.id] = job.next_run_time
                job.remove()
            self._schedule_all()
            for job_id, when in keep.items():
                self.scheduler.modify_job(job_id, next_run_time=when)
        old_names = {s.name for s in old.subscriptions}
        new_names = {s.name for s in new.subscriptions}
        log.info(
            "config_reloaded",
            subscriptions=len(new.subscriptions),
            added=sorted(new_names - old_names),
            removed=sorted(old_names - new_names),
            changed=sorted(
                s.name
                for s in new.subscriptions
                if s.name in old_names and s not in old.subscriptions
            ),
            sources=sorted(self.pollers),
            sources_changed=sorted(changed_sources),
        )

    # ------------------------------------------------------------------ health
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while every source polled successfully within 3x its interval and the
        oldest undelivered message is younger than ``ops.max_outbox_age``.

        Start-up counts as a success: a source has 3x its interval from start-up for its
        first successful poll, unless a poll has already failed. Not ready before the
        state file is open and from the moment a shutdown begins.
        """
        now = self.clock.now()
        checks: dict[str, Any] = {}
        if self._stopping or self.store is None:
            state = "shutting down" if self._stopping else "not started"
            checks["lifecycle"] = {"ok": False, "error": state}
            return False, checks
        ready = True
        for source, health in self.health.items():
            limit_s = 3 * health.interval_s
            since = health.last_success or self.started_at
            age_s = None if since is None else (now - since).total_seconds()
            fresh = age_s is not None and age_s <= limit_s
            if health.last_success is None and health.last_failure is not None:
                fresh = False
            if health.stopped:
                fresh = False
            check: dict[str, Any] = {
                "ok": fresh,
                "last_success": health.last_success.isoformat() if health.last_success else None,
                "failing": health.failing,
            }
            if health.last_success is None and fresh:
                check["detail"] = "first poll pending"
            if not fresh:
                if health.stopped:
                    check["error"] = health.stopped
                elif health.last_success is None:
                    check["error"] = f"no successful poll yet; last error: {health.last_error}"
                else:
                    check["error"] = (
                        f"no successful poll for {age_s:.0f}s (limit {limit_s:.0f}s = 3x the "
                        f"poll interval)"
                        + (f"; last error: {health.last_error}" if health.failing else "")
                    )
            checks[f"source:{source}"] = check
            ready = ready and fresh
        outbox = await self.store.outbox_health()
        age = 0.0 if outbox.oldest_open is None else (now - outbox.oldest_open).total_seconds()
        max_age = self.config.ops.max_outbox_age.total_seconds()
        outbox_ok = age <= max_age and outbox.failed == 0
        checks["outbox"] = {
            "ok": outbox_ok,
            "pending": outbox.open,
            "failed": outbox.failed,
            "oldest_age_s": round(age, 1),
        }
        problems = []
        if age > max_age:
            problems.append(f"oldest undelivered message is {age:.0f}s old (limit {max_age:.0f}s)")
        if outbox.failed:
            problems.append(
                f"{outbox.failed} message(s) could not be delivered: see `listingbot outbox "
                "list --state failed`, then `outbox retry KEY` or `outbox drop KEY`"
            )
        if problems:
            checks["outbox"]["error"] = "; ".join(problems)
        if age < 0:
            # Reported, not clamped: a wall clock stepped back makes the outbox look young.
            checks["outbox"]["detail"] = (
                f"the oldest undelivered message is dated {-age:.0f}s in the future: "
                "the clock stepped back"
            )
        return ready and outbox_ok, checks


async def build_and_start(config: Config, **kwargs: Any) -> App:
    """An App that has been started; closed again if start-up fails."""
    app = App(config, **kwargs)
    try:
        await app.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await app.close()
        raise
    return app
