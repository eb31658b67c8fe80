"""The composition root: builds the HTTP session, clients, store, clock and scheduler from a
``Config`` and runs them. Nothing below this module looks anything up by itself.

Lifecycle of ``run``::

    start()  open the state file, create the clients, register subscriptions; channels
             are taken from the config (ids) and from the names ChatKitty last resolved
    loop     one APScheduler job per source (interval + jitter, never overlapping, misfires
             coalesced), a delivery worker woken by every poll that queued messages and by
             an interval job, a channel watcher (resolves names and checks that channels
             exist, with backoff while ChatKitty is unreachable, then periodically), and a
             liveness tick
    stop     SIGTERM/SIGINT: no new polls or sends, in-flight work gets a grace period,
             then sessions and the state file are closed

One failing part never stops the others: a poll commits its messages and returns (it
never waits on delivery); ChatKitty being unreachable holds delivery only; a missing
channel holds the subscriptions that post there; a query the source refuses fails its
own subscriptions, not the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from listingbot import sources
from listingbot.clients.base import RequestObserver, new_session
from listingbot.clients.chatkitty import Channel, ChatKittyClient
from listingbot.clock import Clock, SystemClock
from listingbot.config import ChatKittyConfig, Config, Subscription
from listingbot.delivery import Deliverer, DeliveryOutcome
from listingbot.errors import ConfigError, ListingBotError
from listingbot.metrics import Metrics
from listingbot.models import SOURCES, Source
from listingbot.polling import ExistenceCheck, Housekeeping, Poller, PollOutcome
from listingbot.sources import Fetcher
from listingbot.store import PROBLEM_CHANNEL, PROBLEM_QUERY, Store

log = structlog.get_logger("listingbot.app")

# `listingbot once`: extra delivery passes for transient failures, and the longest wait.
ONCE_DELIVERY_RETRIES = 3
ONCE_MAX_WAIT_S = 15.0

# The channel watcher: retry an unreachable ChatKitty from 1 s, doubling up to 60 s; once
# the channels are checked, check again every 5 minutes (and at once after a reload).
CHANNEL_RETRY_MIN_S = 1.0
CHANNEL_RETRY_MAX_S = 60.0
CHANNEL_RECHECK_S = 300.0

# Liveness: the scheduler runs a tick job this often; /healthz fails when the last tick is
# older than LIVENESS_STALE_S (the loop or the scheduler has stopped turning).
TICK_S = 5.0
LIVENESS_STALE_S = 60.0


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
        # Subscriptions that cannot run now, with the reason: their channel does not exist
        # (held), their channel name waits for ChatKitty (unresolved), or their source
        # refuses their query (failing; they keep being polled and recover by themselves).
        self.held: dict[str, str] = {}
        self.unresolved: dict[str, str] = {}
        self.failing_subs: dict[str, str] = {}
        self.channels_checked_at: datetime | None = None
        self.chatkitty_down_since: datetime | None = None
        self.chatkitty_error: str | None = None
        self.reload_rejected: str | None = None
        self.last_tick: float | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._delivery_wanted = asyncio.Event()
        self._recheck_channels = asyncio.Event()
        self._stopping = False
        self.on_poll: list[Callable[[PollOutcome], Awaitable[None] | None]] = []
        self.on_delivery: list[Callable[[DeliveryOutcome], Awaitable[None] | None]] = []

    # ------------------------------------------------------------------ building
    async def start(self, *, dry_run: bool = False, wait_for_chatkitty: bool = True) -> None:
        """Open the state file and build the clients.

        ``wait_for_chatkitty`` (``once``): check the channels now; an unreachable ChatKitty
        fails the start. Without it (``run``), the channel watcher checks them in the
        background and start-up never needs ChatKitty.
        """
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
        self.session = new_session()
        self.chatkitty = chatkitty_client(
            cfg.chatkitty, session=self.session, clock=self.clock, observer=self.metrics
        )
        self.deliverer = Deliverer(
            self.store, self.chatkitty, self.clock, self.metrics, cfg.delivery, rng=self.rng
        )
        self._build_pollers()
        needs_lookup = not dry_run or any(isinstance(s.channel, str) for s in cfg.subscriptions)
        if wait_for_chatkitty and needs_lookup:
            await self.check_channels(dry_run=dry_run)
        else:
            cached = {} if dry_run else await self.store.load_channel_names()
            self._apply_channels(*match_channels(cfg.subscriptions, None, cached), dry_run=True)

    def _build_pollers(self) -> None:
        assert self.session is not None
        assert self.store is not None
        cfg = self.config
        fetchers: dict[Source, Fetcher] = {}
        intervals: dict[Source, timedelta] = {}
        for src in sources.ALL:
            settings = src.settings(cfg)
            if settings is not None:
                fetchers[src.name] = src.fetcher(
                    cfg, session=self.session, clock=self.clock, metrics=self.metrics
                )
                intervals[src.name] = settings.poll_interval
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

    async def check_channels(self, *, dry_run: bool = False) -> None:
        """Ask ChatKitty for its channels and apply them to the subscriptions.

        Raises the client's error when ChatKitty cannot be asked (and records since when).
        """
        assert self.chatkitty is not None
        asked_at = self.clock.now()
        try:
            listing = await self.chatkitty.list_channels()
        except ListingBotError as err:
            if self.chatkitty_down_since is None:
                self.chatkitty_down_since = asked_at
                log.error("chatkitty_unreachable", error=str(err))
            self.chatkitty_error = str(err)
            self.metrics.chatkitty_up.set(0)
            raise
        if self.chatkitty_down_since is not None:
            log.info("chatkitty_reachable", down_since=self.chatkitty_down_since.isoformat())
        self.chatkitty_down_since = None
        self.chatkitty_error = None
        self.channels_checked_at = self.clock.now()
        self.metrics.chatkitty_up.set(1)
        channels, held, _unresolved = match_channels(self.config.subscriptions, listing, {})
        self._apply_channels(channels, held, {}, dry_run=dry_run)
        if not dry_run and self.store is not None:
            assert self.store is not None
            named = {
                s.channel: channels[s.name]
                for s in self.config.subscriptions
                if isinstance(s.channel, str) and s.name in channels
            }
            await self.store.save_channel_names(named)
            await self.store.set_subscription_problems(PROBLEM_CHANNEL, self.held)

    def _apply_channels(
        self,
        channels: dict[str, int],
        held: dict[str, str],
        unresolved: dict[str, str],
        *,
        dry_run: bool = False,
    ) -> None:
        """Make ``channels`` the subscriptions' destinations; hold the others."""
        del dry_run
        for name, reason in held.items():
            if self.held.get(name) != reason:
                log.error("subscription_held", subscription=name, reason=reason)
        for name in self.held.keys() - held.keys():
            if name in channels:
                log.info("subscription_resumed", subscription=name, channel=channels[name])
        for name in list(self.held):
            if name not in held:
                with contextlib.suppress(KeyError):
                    self.metrics.subscription_problem.remove(name, "channel_missing")
        for name in held:
            self.metrics.subscription_problem.labels(name, "channel_missing").set(1)
        self.metrics.subscriptions_held.set(len(held))
        self.channels, self.held, self.unresolved = channels, held, unresolved
        active = [s for s in self.config.subscriptions if s.name in channels]
        for poller in self.pollers.values():
            poller.set_subscriptions(active, channels)

    def _channels_for(
        self, subs: Sequence[Subscription], listing: list[Channel] | None
    ) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
        """Destinations for ``subs``: from ``listing`` when ChatKitty answered, else what
        is known (a subscription whose channel did not change keeps its state)."""
        if listing is not None:
            return match_channels(subs, listing, {})
        known = {s.name: s.channel for s in self.config.subscriptions}
        cached = {
            s.channel: self.channels[s.name]
            for s in self.config.subscriptions
            if isinstance(s.channel, str) and s.name in self.channels
        }
        channels, held, unresolved = match_channels(subs, None, cached)
        for sub in subs:
            if known.get(sub.name) == sub.channel and sub.name in self.held:
                channels.pop(sub.name, None)
                held[sub.name] = self.held[sub.name]
        return channels, held, unresolved

    @property
    def deliverable(self) -> bool:
        """True once the channels are checked and while ChatKitty answers."""
        return self.channels_checked_at is not None and self.chatkitty_down_since is None

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
        await self._account_subscriptions(outcome, dry_run=dry_run)
        for hook in self.on_poll:
            result = hook(outcome)
            if result is not None:
                await result
        return outcome

    async def _account_subscriptions(self, outcome: PollOutcome, *, dry_run: bool) -> None:
        """Per-subscription failures: said once when they start and once when they end."""
        before = dict(self.failing_subs)
        for name, reason in outcome.rejected.items():
            if self.failing_subs.get(name) != reason:
                log.error(
                    "subscription_failing", subscription=name, source=outcome.source, error=reason
                )
            self.failing_subs[name] = reason
            self.metrics.subscription_problem.labels(name, "query_rejected").set(1)
        poller = self.pollers.get(outcome.source)  # type: ignore[call-overload]
        polled = {s.name for s in poller.subscriptions} if poller is not None else set()
        configured = {s.name for s in self.config.subscriptions}
        for name in list(self.failing_subs):
            recovered = name in polled and outcome.ok and name not in outcome.rejected
            if recovered or name not in configured:
                del self.failing_subs[name]
                with contextlib.suppress(KeyError):
                    self.metrics.subscription_problem.remove(name, "query_rejected")
                if recovered:
                    log.info("subscription_recovered", subscription=name, source=outcome.source)
        if not dry_run and self.store is not None and self.failing_subs != before:
            await self.store.set_subscription_problems(PROBLEM_QUERY, self.failing_subs)

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
            rejected_subscriptions=sorted(outcome.rejected),
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
        # A pass with nothing to do is routine (one every delivery interval): debug only.
        busy = (
            outcome.sent
            or outcome.retried
            or outcome.unknown
            or outcome.failed
            or outcome.reconciled_sent
            or outcome.reconciled_requeued
            or outcome.reconcile_incomplete
            or outcome.claims_lost
            or outcome.store_errors
            or outcome.pending
        )
        (log.info if busy else log.debug)(
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
        ok = not self.held and not self.unresolved
        for source in self.pollers:
            outcome = await self.poll(source, dry_run=dry_run)
            ok = ok and outcome.ok and not outcome.rejected
            if dry_run:
                for message in outcome.messages:
                    print(f"--- channel {message.channel_id} · {message.event} · {message.key}")
                    print(message.body)
                    print()
                for name, count in outcome.baseline_matches.items():
                    print(f"--- would record {count} current matches for {name}, post nothing")
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
        # Coroutine jobs, all of them: AsyncIOScheduler runs a plain function in a thread,
        # where neither the loop's clock nor an asyncio.Event may be touched.
        self.scheduler.add_job(
            self._tick_job,
            IntervalTrigger(seconds=TICK_S),
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._tick()
        self.scheduler.start()
        self.start_workers()
        await stop.wait()
        await self.shutdown()

    def start_workers(self) -> None:
        """The delivery worker and the channel watcher (``run`` starts them)."""
        self._workers = {
            "delivery": self._worker(self._delivery_worker()),
            "channels": self._worker(self._channel_watcher()),
        }
        self.request_delivery()  # rows left by an earlier run go out first

    def _tick(self) -> None:
        self.last_tick = self.clock.monotonic()

    async def _tick_job(self) -> None:
        self._tick()

    async def _delivery_job(self) -> None:
        self.request_delivery()

    def _worker(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def request_delivery(self) -> None:
        """Wake the delivery worker (cheap; many requests during a pass make one more)."""
        self._delivery_wanted.set()

    async def _delivery_worker(self) -> None:
        while not self._stopping:
            await self._delivery_wanted.wait()
            self._delivery_wanted.clear()
            if self._stopping:
                return
            if not self.deliverable:
                log.debug("delivery_deferred", reason="ChatKitty channels not checked yet")
                continue
            await self.deliver_safely()

    async def _channel_watcher(self) -> None:
        """Check the channels until it works (backing off), then every CHANNEL_RECHECK_S."""
        delay = CHANNEL_RETRY_MIN_S
        wait = 0.0 if self.channels_checked_at is None else CHANNEL_RECHECK_S
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck_channels.wait(), wait)
            self._recheck_channels.clear()
            if self._stopping:
                return
            was_deliverable = self.deliverable
            try:
                await self.check_channels()
            except ListingBotError as err:
                log.warning("channel_check_failed", error=str(err), retry_in_s=delay)
                wait, delay = delay, min(CHANNEL_RETRY_MAX_S, delay * 2)
                continue
            except Exception:
                log.exception("channel_check_crashed")
                wait, delay = delay, min(CHANNEL_RETRY_MAX_S, delay * 2)
                continue
            delay, wait = CHANNEL_RETRY_MIN_S, CHANNEL_RECHECK_S
            if not was_deliverable:
                self.request_delivery()

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
            self._delivery_job,
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

    async def poll_then_deliver(self, source: Source) -> None:
        """The scheduled poll: commit, wake delivery, return. It never waits on delivery,
        so a slow or failing ChatKitty cannot delay the next poll."""
        try:
            outcome = await self.poll(source)
        except Exception:  # the scheduler must never see an exception; log it and go on
            log.exception("poll_crashed", source=source)
            return
        if outcome.queued and not self._stopping:
            self.request_delivery()

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
        self._delivery_wanted.set()  # let the delivery worker see the stop
        watcher = self._workers.get("channels")
        if watcher is not None:
            watcher.cancel()  # a channel check has nothing worth a grace period
            self._inflight.discard(watcher)
            await asyncio.gather(watcher, return_exceptions=True)
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
        listing: list[Channel] | None = None
        if self.chatkitty is not None:
            try:
                listing = await self.chatkitty.list_channels()
            except ListingBotError as err:
                # Never a reason to refuse a config: the watcher resolves it when it can.
                log.warning("channel_check_failed", error=str(err), during="reload")
        channels, held, unresolved = self._channels_for(new.subscriptions, listing)

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
        self._apply_channels(channels, held, unresolved)
        if listing is None:
            self._recheck_channels.set()
        elif self.store is not None:
            self.channels_checked_at = self.clock.now()
            await self.store.set_subscription_problems(PROBLEM_CHANNEL, self.held)
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
        self.reload_rejected = None
        self.metrics.config_reloads.labels("applied").inc()
        self.metrics.config_reload_ok.set(1)
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
    def _chatkitty_check(self) -> dict[str, Any]:
        if self.chatkitty_down_since is not None:
            return {
                "ok": False,
                "error": f"unreachable since {_iso(self.chatkitty_down_since)}: "
                f"{self.chatkitty_error}",
            }
        if self.channels_checked_at is None:
            return {"ok": True, "detail": "channel check pending"}
        return {"ok": True, "channels_checked": _iso(self.channels_checked_at)}

    def reload_rejected_now(self, error: str) -> None:
        """A reload was refused: the previous config runs; readiness and metrics say so."""
        self.reload_rejected = f"reload rejected at {_iso(self.clock.now())}: {error}"
        self.metrics.config_reloads.labels("rejected").inc()
        self.metrics.config_reload_ok.set(0)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the process's loops turn: the scheduler runs and ticked within
        LIVENESS_STALE_S, and the delivery worker and channel watcher have not died.

        Says nothing about upstream services: restarting cannot fix those.
        """
        body: dict[str, Any] = {}
        if self.started_at is not None:
            body["uptime_s"] = round((self.clock.now() - self.started_at).total_seconds(), 1)
        if self.scheduler is None or self._stopping:
            body["status"] = "shutting down" if self._stopping else "starting"
            return True, body
        problems: list[str] = []
        if not self.scheduler.running:
            problems.append("the scheduler is not running")
        if self.last_tick is not None:
            age = self.clock.monotonic() - self.last_tick
            body["last_tick_age_s"] = round(age, 1)
            if age > LIVENESS_STALE_S:
                problems.append(f"the scheduler has not ticked for {age:.0f}s")
        for name, task in self._workers.items():
            if task.done():
                problems.append(f"the {name} worker has stopped")
        body["status"] = "ok" if not problems else "not alive"
        if problems:
            body["errors"] = problems
        return not problems, body

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while every source polled successfully within 3x its interval, ChatKitty
        answers and the oldest undelivered message is younger than ``ops.max_outbox_age``.

        Subscriptions that cannot run (held, failing) and a rejected reload do not make the
        service unready (everything else runs); they are reported in the body, as
        ``degraded`` checks.

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
        checks["chatkitty"] = self._chatkitty_check()
        ready = ready and checks["chatkitty"]["ok"]
        if self.held or self.failing_subs or self.unresolved:
            subs: dict[str, Any] = {"ok": True, "degraded": True}
            for key, names in (
                ("held", self.held),
                ("failing", self.failing_subs),
                ("unresolved", self.unresolved),
            ):
                if names:
                    subs[key] = dict(sorted(names.items()))
            checks["subscriptions"] = subs
        if self.reload_rejected is not None:
            checks["config"] = {"ok": True, "degraded": True, "error": self.reload_rejected}
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


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def match_channels(
    subs: Sequence[Subscription], listing: Sequence[Channel] | None, cached: dict[str, int]
) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """Each subscription's channel id, and the subscriptions that have none.

    With ``listing`` (ChatKitty's channels): an id must exist, a name must match a channel's
    name or display name; the others are held with the reason. Without it (ChatKitty not
    asked yet): ids are taken as given, names from ``cached``, the rest are unresolved.
    Returns (channels, held, unresolved).
    """
    channels: dict[str, int] = {}
    held: dict[str, str] = {}
    unresolved: dict[str, str] = {}
    if listing is None:
        for sub in subs:
            if isinstance(sub.channel, int):
                channels[sub.name] = sub.channel
            elif sub.channel in cached:
                channels[sub.name] = cached[sub.channel]
            else:
                unresolved[sub.name] = f"channel {sub.channel!r} not resolved yet (ChatKitty)"
        return channels, held, unresolved
    by_name: dict[str, int] = {}
    ids: set[int] = set()
    for channel in listing:
        ids.add(channel.id)
        if channel.name:
            by_name.setdefault(channel.name, channel.id)
        if channel.display_name:
            by_name.setdefault(channel.display_name, channel.id)
    for sub in subs:
        if isinstance(sub.channel, int):
            if sub.channel in ids:
                channels[sub.name] = sub.channel
            else:
                held[sub.name] = f"ChatKitty has no channel with id {sub.channel}"
        elif sub.channel in by_name:
            channels[sub.name] = by_name[sub.channel]
        else:
            reason = f"ChatKitty has no channel named {sub.channel!r}"
            near = did_you_mean(sub.channel, by_name)
            held[sub.name] = f"{reason} (did you mean {near!r}?)" if near else reason
    return channels, held, unresolved


def chatkitty_client(
    config: ChatKittyConfig,
    *,
    session: aiohttp.ClientSession,
    clock: Clock,
    observer: RequestObserver | None = None,
) -> ChatKittyClient:
    """The ChatKitty client ``config`` describes (``run``, ``once`` and ``--online``)."""
    return ChatKittyClient(
        api_url=config.api_url,
        path_prefix=config.path_prefix,
        token_url=config.token_url,
        client_id=config.client_id,
        client_secret=config.client_secret,
        session=session,
        clock=clock,
        timeout_s=config.timeout_s,
        observer=observer,
    )


def did_you_mean(name: str, names: Iterable[str]) -> str | None:
    """The channel name ``name`` was probably meant to be: same apart from case or a
    leading ``#``, else the closest spelling."""
    candidates = sorted(set(names))
    key = name.strip().lstrip("#").casefold()
    for candidate in candidates:
        if candidate.lstrip("#").casefold() == key:
            return candidate
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.8)
    return close[0] if close else None


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
