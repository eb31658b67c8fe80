"""The composition root: starts the parts a ``Config`` describes (built in ``parts.py``),
runs the polls, delivery and the schedule, shuts down, and applies a reloaded config
(what changes is worked out in ``reload.py``). Nothing below this module looks anything
up by itself, and nothing here prints.

Lifecycle of ``run``::

    start()  open the state file, create the clients, register subscriptions; channels
             are taken from the config (ids) and from the names ChatKitty last resolved
    loop     one scheduler job per source (interval + jitter, never overlapping, misfires
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

Hooks for what is built on top: ``on_poll`` / ``on_delivery`` callbacks see every
outcome; :meth:`App.jobs` is the one list of scheduled work; :meth:`App.start_workers`
the one list of long-lived workers.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from listingbot import sources
from listingbot.channels import Channels, Destinations, match_channels
from listingbot.clients.chatkitty import Channel
from listingbot.clock import Clock, SystemClock
from listingbot.commands.reader import PassOutcome
from listingbot.config import Config
from listingbot.delivery import DeliveryOutcome
from listingbot.errors import ConfigError, ListingBotError
from listingbot.health import Health, Totals
from listingbot.metrics import Metrics
from listingbot.models import Source
from listingbot.parts import Parts, build_parts, configured_sources, new_poller, source_settings
from listingbot.polling import Poller, PollOutcome
from listingbot.reload import ReloadPlan
from listingbot.scheduler import Every, Scheduler
from listingbot.store import PROBLEM_CHANNEL, PROBLEM_QUERY, Store
from listingbot.workers import ChannelWatcher, DeliveryWorker

log = structlog.get_logger("listingbot.app")

# `listingbot once`: extra delivery passes for transient failures, and the longest wait.
ONCE_DELIVERY_RETRIES = 3
ONCE_MAX_WAIT_S = 15.0


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
        self.health = Health(self.clock, self.metrics)
        self.channels = Channels(self.metrics)
        self.scheduler = Scheduler(self.clock)
        self.pollers: dict[Source, Poller] = {}
        self._parts: Parts | None = None

        def stopping() -> bool:
            return self.scheduler.stopping

        self.delivery_worker = DeliveryWorker(self.deliver, self.channels, stopping)
        self.channel_watcher = ChannelWatcher(
            self.check_channels, self.channels, stopping, on_deliverable=self.request_delivery
        )
        self.on_poll: list[Callable[[PollOutcome], Awaitable[None] | None]] = []
        self.on_delivery: list[Callable[[DeliveryOutcome], Awaitable[None] | None]] = []

    @property
    def parts(self) -> Parts:
        """The session, clients and state file; only between ``start`` and ``close``."""
        if self._parts is None:
            raise RuntimeError("the app is not started (or already closed)")
        return self._parts

    @property
    def started(self) -> bool:
        return self._parts is not None

    @property
    def store(self) -> Store:
        return self.parts.store

    # ------------------------------------------------------------------ building
    async def start(self, *, dry_run: bool = False, wait_for_chatkitty: bool = True) -> None:
        """Open the state file and build the clients.

        ``wait_for_chatkitty`` (``once``): check the channels now; an unreachable ChatKitty
        fails the start. Without it (``run``), the channel watcher checks them in the
        background and start-up never needs ChatKitty.
        """
        cfg = self.config
        self.health.started_at = self.clock.now()
        # Service work holds the state file's lock for the process's lifetime (one process
        # per state file); a dry run changes nothing and needs none.
        self._parts = await build_parts(
            cfg,
            clock=self.clock,
            metrics=self.metrics,
            rng=self.rng,
            exclusive=not dry_run,
            wait_lock_s=self.wait_lock_s,
            pollers=lambda: self.pollers,
            on_chat_change=self._chat_changed,
        )
        store = self._parts.store
        for source in configured_sources(cfg):
            self.pollers[source] = self._poller(source)
            self.health.track(source, self._interval_s(source), keep=None)
        needs_lookup = not dry_run or any(isinstance(s.channel, str) for s in cfg.subscriptions)
        if wait_for_chatkitty and needs_lookup:
            await self.check_channels(dry_run=dry_run)
        else:
            cached = {} if dry_run else await store.load_channel_names()
            self._apply_channels(match_channels(cfg.subscriptions, None, cached))

    def _interval_s(self, source: Source) -> float:
        return source_settings(self.config, source).poll_interval.total_seconds()

    def _poller(self, source: Source) -> Poller:
        return new_poller(source, self.config, self.parts, clock=self.clock, metrics=self.metrics)

    # ------------------------------------------------------------------ channels
    async def check_channels(self, *, dry_run: bool = False) -> None:
        """Ask ChatKitty for its channels and apply them to the subscriptions.

        Raises the client's error when ChatKitty cannot be asked (and records since when).
        """
        parts = self.parts
        asked_at = self.clock.now()
        try:
            listing = await parts.chatkitty.list_channels()
        except ListingBotError as err:
            self.channels.unreachable(str(err), asked_at)
            raise
        self.channels.reachable(self.clock.now())
        channels, held, _unresolved = match_channels(self.config.subscriptions, listing, {})
        self._apply_channels((channels, held, {}))
        if not dry_run:
            await parts.store.save_channel_names(self.channels.named(self.config.subscriptions))
            await parts.store.set_subscription_problems(PROBLEM_CHANNEL, self.channels.held)

    def _apply_channels(self, destinations: Destinations) -> None:
        """Make ``destinations`` the subscriptions' channels; hold the others."""
        self.channels.apply(destinations)
        self._plan()

    def _plan(self) -> None:
        """Give each poller its subscriptions: the config's that have a channel and the
        chat's active ones (whose channel is always an id), in one plan, so a query both
        ask for is fetched once."""
        ids = dict(self.channels.ids)
        active = [s for s in self.config.subscriptions if s.name in ids]
        commands = self._parts.commands if self._parts is not None else None
        chat = commands.subscriptions() if commands is not None else []
        ids.update({s.name: int(s.channel) for s in chat})
        for poller in self.pollers.values():
            poller.set_subscriptions([*active, *chat], ids, self.config.messages)
        paused = len(commands.paused()) if commands is not None else 0
        for origin, state, count in (
            ("yaml", "active", len(self.config.subscriptions)),
            ("chat", "active", len(chat)),
            ("chat", "paused", paused),
        ):
            self.metrics.subscriptions.labels(origin, state).set(count)

    async def _chat_changed(self) -> None:
        """A command changed the chat subscriptions: plan the next polls with them."""
        self._plan()

    # ------------------------------------------------------------------ work units
    async def poll(self, source: Source, *, dry_run: bool = False) -> PollOutcome:
        """One poll of one source. Never raises on upstream trouble: it reports it."""
        poller = self.pollers[source]
        health = self.health.sources[source]
        if health.stopped and not dry_run:
            # Said loudly once when it stopped (see _account_poll); quietly from then on.
            log.debug("source_still_stopped", source=source)
            return PollOutcome(source, ok=False, error=health.stopped, auth_failed=True)
        try:
            outcome = await poller.poll(dry_run=dry_run)
        except ListingBotError as err:
            outcome = PollOutcome(source, ok=False, error=str(err))
        self._account_poll(outcome)
        poller_now = self.pollers.get(source)
        changed = self.health.subscriptions_polled(
            outcome,
            polled={s.name for s in poller_now.subscriptions} if poller_now else set(),
            configured=self._subscription_names(),
        )
        if changed and not dry_run:
            await self.parts.store.set_subscription_problems(
                PROBLEM_QUERY, self.health.failing_subs
            )
        for hook in self.on_poll:
            result = hook(outcome)
            if result is not None:
                await result
        return outcome

    def _subscription_names(self) -> set[str]:
        """Every subscription that is meant to run: the config's and the chat's."""
        names = {s.name for s in self.config.subscriptions}
        if self._parts is not None:
            names.update(s.name for s in self._parts.commands.subscriptions())
        return names

    def _account_poll(self, outcome: PollOutcome) -> None:
        self.totals.add_poll(outcome)
        stop_reason = None
        if not outcome.ok and outcome.auth_failed:
            source = sources.get(outcome.source)
            stop_reason = source.refused_credentials(outcome.error or "")
        self.health.poll_finished(outcome, stop_reason=stop_reason)

    async def run_commands(self) -> PassOutcome:
        """One pass of the chat command reader (the ``commands`` job, and ``once``)."""
        return await self.parts.commands.run_once()

    async def deliver(self) -> DeliveryOutcome:
        outcome = await self.parts.deliverer.run_pass()
        self.totals.add_delivery(outcome)
        self.health.delivery_finished(outcome)
        for hook in self.on_delivery:
            result = hook(outcome)
            if result is not None:
                await result
        return outcome

    async def once(self, *, dry_run: bool = False) -> bool:
        """One poll of every source and one delivery pass; True when all went well.

        A dry run changes nothing; what it would post is in the ``on_poll`` outcomes
        (``messages``, ``baseline_matches``), which the CLI prints.
        """
        failed_before = self.totals.failed_messages
        ok = not self.channels.held and not self.channels.unresolved
        if self.parts.commands.enabled and not dry_run:
            await self.run_commands()
        for source in self.pollers:
            outcome = await self.poll(source, dry_run=dry_run)
            ok = ok and outcome.ok and not outcome.rejected
        if not dry_run:
            delivered = await self.deliver()
            # A transient send failure gets a few retries within this run (bounded, on the
            # backoff schedule) before `once` reports it: exit 1 means "failed after retries".
            for _attempt in range(ONCE_DELIVERY_RETRIES):
                if delivered.pending == 0:
                    break
                due = await self.parts.store.next_due()
                wait = 0.0 if due is None else (due - self.clock.now()).total_seconds()
                await self.clock.sleep(min(ONCE_MAX_WAIT_S, max(0.0, wait)))
                delivered = await self.deliver()
            failed_now = self.totals.failed_messages - failed_before
            ok = ok and failed_now == 0 and delivered.pending == 0
        return ok

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        """Poll and deliver on schedule until ``stop`` is set, then shut down gracefully."""
        self.scheduler.start(self.jobs())
        self.start_workers()
        await stop.wait()
        await self.shutdown()

    def jobs(self) -> list[Every]:
        """The scheduled work: one poll job per source (first run at once), the
        delivery interval job (a wake-up for the delivery worker) and, where chat commands
        are enabled, the command reader (first run at once)."""
        jobs = []
        for source in self.pollers:
            settings = source_settings(self.config, source)
            jobs.append(
                Every(
                    f"poll-{source}",
                    functools.partial(self.poll_then_deliver, source),
                    interval_s=settings.poll_interval.total_seconds(),
                    jitter_s=settings.poll_jitter.total_seconds(),
                    now=True,
                )
            )
        jobs.append(
            Every(
                "deliver",
                self._delivery_job,
                interval_s=self.config.delivery.interval.total_seconds(),
            )
        )
        if self.config.commands.enabled_channels:
            jobs.append(
                Every(
                    "commands",
                    self._commands_job,
                    interval_s=self.config.commands.poll_interval.total_seconds(),
                    now=True,
                )
            )
        return jobs

    async def _commands_job(self) -> None:
        try:
            await self.run_commands()
        except Exception:  # the scheduler must never see an exception; log it and go on
            log.exception("commands_crashed")

    def start_workers(self) -> None:
        """The delivery worker and the channel watcher (``run`` starts them)."""
        self.scheduler.worker("delivery", self.delivery_worker.run())
        self.scheduler.worker("channels", self.channel_watcher.run())
        self.request_delivery()  # rows left by an earlier run go out first

    async def _delivery_job(self) -> None:
        self.request_delivery()

    def request_delivery(self) -> None:
        """Wake the delivery worker (cheap; many requests during a pass make one more)."""
        self.delivery_worker.wake()

    async def poll_then_deliver(self, source: Source) -> None:
        """The scheduled poll: commit, wake delivery, return. It never waits on delivery,
        so a slow or failing ChatKitty cannot delay the next poll."""
        try:
            outcome = await self.poll(source)
        except Exception:  # the scheduler must never see an exception; log it and go on
            log.exception("poll_crashed", source=source)
            return
        if outcome.queued and not self.scheduler.stopping:
            self.request_delivery()

    async def shutdown(self) -> None:
        """Stop scheduling, let in-flight work finish within the grace period, close.

        Safe to call twice. Work still running when the grace period ends is cancelled:
        a poll commits in one transaction or not at all, and a send cut off mid-request
        leaves its row ``sending``, which the next start reconciles against the channel.
        """
        if not self.scheduler.begin_shutdown():
            return
        self.delivery_worker.wake()  # let the delivery worker see the stop
        await self.scheduler.cancel_worker("channels")  # a check is worth no grace period
        if self._parts is not None:
            self._parts.deliverer.stop()
        await self.scheduler.shutdown(self.config.delivery.grace_period_s)
        await self.close()

    async def close(self) -> None:
        parts, self._parts = self._parts, None
        if parts is not None:
            await parts.session.close()
            await parts.store.close()

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
        if self.scheduler.stopping:
            raise ConfigError("shutting down: the new configuration was not applied")
        old = self.config
        plan = ReloadPlan.between(old, new)
        if plan.restart_needed:
            raise ConfigError("\n".join(plan.restart_needed))
        listing: list[Channel] | None = None
        if self._parts is not None:
            try:
                listing = await self._parts.chatkitty.list_channels()
            except ListingBotError as err:
                # Never a reason to refuse a config: the watcher resolves it when it can.
                log.warning("channel_check_failed", error=str(err), during="reload")
        destinations = self.channels.for_reload(new.subscriptions, old.subscriptions, listing)
        self.config = new
        if plan.state_changed:
            self.parts.housekeeping.retention = new.state.retention
            for poller in self.pollers.values():
                poller.retention = new.state.retention
                poller.gone_checks = new.state.gone_checks_per_poll
                poller.gone_after_sweeps = new.state.gone_after_sweeps
        if plan.changed_sources:
            pollers: dict[Source, Poller] = {}
            for source in configured_sources(new):
                if source in plan.changed_sources or source not in self.pollers:
                    pollers[source] = self._poller(source)
                    keep = self.health.sources.get(source)
                    self.health.track(source, self._interval_s(source), keep=keep)
                else:
                    pollers[source] = self.pollers[source]
            self.pollers = pollers
            self.health.forget(keep=pollers.keys())
        self._apply_channels(destinations)
        if listing is None:
            self.channel_watcher.recheck()
        elif self._parts is not None:
            self.channels.checked_at = self.clock.now()
            await self._parts.store.set_subscription_problems(PROBLEM_CHANNEL, self.channels.held)
        if self._parts is not None:
            self._parts.deliverer.configure(new.delivery)
            self._parts.commands.configure(new)
            await self._parts.commands.load()
            self._plan()

        self.scheduler.reschedule(
            self.jobs(), keep=functools.partial(plan.keeps_schedule, pollers=self.pollers)
        )
        self.health.reload_applied()
        log.info("config_reloaded", **plan.summary(), sources=sorted(self.pollers))

    def reload_rejected_now(self, error: str) -> None:
        """A reload was refused: the previous config runs; readiness and metrics say so."""
        self.health.reload_refused(error)

    # ------------------------------------------------------------------ probes
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the process's loops turn (see :meth:`Health.liveness`)."""
        return self.health.liveness(self.scheduler)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while sources are fresh, ChatKitty answers and the outbox drains (see
        :meth:`Health.readiness`). Not ready before the state file is open and from the
        moment a shutdown begins."""
        if self.scheduler.stopping or self._parts is None:
            state = "shutting down" if self.scheduler.stopping else "not started"
            return False, {"lifecycle": {"ok": False, "error": state}}
        outbox = await self._parts.store.outbox_health()
        return self.health.readiness(self.channels, outbox, self.config.ops.max_outbox_age)
