"""What the service knows about its own health between polls, and what it says about it.

Each poll and each delivery pass is said in one canonical line (``poll_finished``,
``delivery_finished``). The policy is "fail loudly once, recover quietly once": a source
that starts failing is logged once (``source_failing``) and once when it comes back
(``source_recovered``); a subscription whose query the source refuses likewise
(``subscription_failing`` / ``subscription_recovered``). Nothing here raises into the
scheduler.

``readiness`` and ``liveness`` are the bodies of ``/readyz`` and ``/healthz``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from listingbot.channels import Channels, iso
from listingbot.clock import Clock
from listingbot.delivery import DeliveryOutcome
from listingbot.metrics import Metrics
from listingbot.polling import PollOutcome
from listingbot.scheduler import Scheduler
from listingbot.store import OutboxHealth

log = structlog.get_logger("listingbot.app")


@dataclass
class Totals:
    """Counters over the process's life, for the demo's summary and ``once``'s exit code."""

    polls: int = 0
    failed_polls: int = 0
    listings: int = 0
    events: int = 0
    queued: int = 0
    sent: int = 0
    failed_messages: int = 0

    def add_poll(self, outcome: PollOutcome) -> None:
        self.polls += 1
        self.failed_polls += 0 if outcome.ok else 1
        self.listings += outcome.listings
        self.events += outcome.events
        self.queued += outcome.queued

    def add_delivery(self, outcome: DeliveryOutcome) -> None:
        self.sent += outcome.sent + outcome.reconciled_sent
        self.failed_messages += outcome.failed


@dataclass
class SourceHealth:
    """What readiness and logs need to know about a source between polls."""

    interval_s: float
    last_success: datetime | None = None
    last_failure: datetime | None = None
    last_error: str | None = None
    failing: bool = False
    stopped: str | None = None  # why polling is suspended (credentials refused)


class Health:
    """Per source (:class:`SourceHealth`), per subscription (``failing_subs``: refused
    queries), and the configuration (``reload_rejected``)."""

    def __init__(self, clock: Clock, metrics: Metrics) -> None:
        self.clock = clock
        self.metrics = metrics
        self.started_at: datetime | None = None
        self.sources: dict[str, SourceHealth] = {}
        # Subscriptions whose source refuses their query: they keep being polled and
        # recover by themselves.
        self.failing_subs: dict[str, str] = {}
        self.reload_rejected: str | None = None

    # ------------------------------------------------------------------ sources
    def track(self, source: str, interval_s: float, *, keep: SourceHealth | None) -> None:
        """Start tracking ``source`` (again, after a reload changed its settings).

        New settings lift a stop (a refused key may have been fixed), but a source that
        is still failing is not announced as failing again.
        """
        health = SourceHealth(interval_s)
        if keep is not None:
            health.last_success = keep.last_success
            health.failing = keep.failing
            health.last_failure = keep.last_failure
            health.last_error = keep.last_error
        self.sources[source] = health

    def forget(self, keep: Collection[str]) -> None:
        """Stop tracking every source not in ``keep`` (removed from the config)."""
        for gone in [s for s in self.sources if s not in keep]:
            del self.sources[gone]
            for gauge in (self.metrics.source_up, self.metrics.last_success):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)

    def poll_finished(self, outcome: PollOutcome, *, stop_reason: str | None = None) -> None:
        """Record a poll in its one canonical line; say a source's failure once and its
        recovery once.

        ``stop_reason``: the poll's credentials were refused and the source is stopped
        until the configuration changes.
        """
        log.info(
            "poll_finished",
            source=outcome.source,
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
            pages_known=outcome.pages_known,
            duration_s=round(outcome.duration_s, 3),
        )
        source = outcome.source
        health = self.sources[source]
        now = self.clock.now()
        if outcome.ok:
            health.last_success = now
            self.metrics.last_success.labels(source).set(now.timestamp())
            if health.failing:
                health.failing = False
                log.info("source_recovered", source=source)
            return
        health.last_failure = now
        health.last_error = outcome.error
        if stop_reason is not None:
            health.stopped = stop_reason
            log.error("source_stopped", source=source, reason=health.stopped)
        if not health.failing:
            health.failing = True
            log.error("source_failing", source=source, error=outcome.error)

    def delivery_finished(self, outcome: DeliveryOutcome) -> None:
        """A delivery pass's one canonical line; a pass with nothing to do is routine (one
        every delivery interval), so it is said at debug level only."""
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

    # ------------------------------------------------------------------ subscriptions
    def subscriptions_polled(
        self, outcome: PollOutcome, *, polled: Collection[str], configured: Collection[str]
    ) -> bool:
        """Per-subscription failures: said once when they start and once when they end.
        True when the set of failing subscriptions changed."""
        before = dict(self.failing_subs)
        for name, reason in outcome.rejected.items():
            if self.failing_subs.get(name) != reason:
                log.error(
                    "subscription_failing", subscription=name, source=outcome.source, error=reason
                )
            self.failing_subs[name] = reason
            self.metrics.subscription_problem.labels(name, "query_rejected").set(1)
        for name in list(self.failing_subs):
            recovered = name in polled and outcome.ok and name not in outcome.rejected
            if recovered or name not in configured:
                del self.failing_subs[name]
                with contextlib.suppress(KeyError):
                    self.metrics.subscription_problem.remove(name, "query_rejected")
                if recovered:
                    log.info("subscription_recovered", subscription=name, source=outcome.source)
        return self.failing_subs != before

    # ------------------------------------------------------------------ configuration
    def reload_applied(self) -> None:
        self.reload_rejected = None
        self.metrics.config_reloads.labels("applied").inc()
        self.metrics.config_reload_ok.set(1)

    def reload_refused(self, error: str) -> None:
        """A reload was refused: the previous config runs; readiness and metrics say so."""
        self.reload_rejected = f"reload rejected at {iso(self.clock.now())}: {error}"
        self.metrics.config_reloads.labels("rejected").inc()
        self.metrics.config_reload_ok.set(0)

    # ------------------------------------------------------------------ probes
    def liveness(self, scheduler: Scheduler) -> tuple[bool, dict[str, Any]]:
        """Alive while the process's loops turn: the scheduler runs and ticked within
        LIVENESS_STALE_S, and the workers have not died.

        Says nothing about upstream services: restarting cannot fix those.
        """
        body: dict[str, Any] = {}
        if self.started_at is not None:
            body["uptime_s"] = round((self.clock.now() - self.started_at).total_seconds(), 1)
        if not scheduler.started or scheduler.stopping:
            body["status"] = "shutting down" if scheduler.stopping else "starting"
            return True, body
        age = scheduler.tick_age_s()
        if age is not None:
            body["last_tick_age_s"] = round(age, 1)
        problems = scheduler.problems()
        body["status"] = "ok" if not problems else "not alive"
        if problems:
            body["errors"] = problems
        return not problems, body

    def readiness(
        self, channels: Channels, outbox: OutboxHealth, max_outbox_age: timedelta
    ) -> tuple[bool, dict[str, Any]]:
        """Ready while every source polled successfully within 3x its interval, ChatKitty
        answers and the oldest undelivered message is younger than ``max_outbox_age``.

        Subscriptions that cannot run (held, failing) and a rejected reload do not make the
        service unready (everything else runs); they are reported in the body, as
        ``degraded`` checks.

        Start-up counts as a success: a source has 3x its interval from start-up for its
        first successful poll, unless a poll has already failed.
        """
        now = self.clock.now()
        checks: dict[str, Any] = {}
        ready = True
        for source, health in self.sources.items():
            check = self._source_check(health, now)
            checks[f"source:{source}"] = check
            ready = ready and check["ok"]
        checks["chatkitty"] = channels.check()
        ready = ready and checks["chatkitty"]["ok"]
        if channels.held or self.failing_subs or channels.unresolved:
            subs: dict[str, Any] = {"ok": True, "degraded": True}
            for key, names in (
                ("held", channels.held),
                ("failing", self.failing_subs),
                ("unresolved", channels.unresolved),
            ):
                if names:
                    subs[key] = dict(sorted(names.items()))
            checks["subscriptions"] = subs
        if self.reload_rejected is not None:
            checks["config"] = {"ok": True, "degraded": True, "error": self.reload_rejected}
        checks["outbox"] = _outbox_check(outbox, now, max_outbox_age)
        return ready and checks["outbox"]["ok"], checks

    def _source_check(self, health: SourceHealth, now: datetime) -> dict[str, Any]:
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
        return check


def _outbox_check(outbox: OutboxHealth, now: datetime, max_outbox_age: timedelta) -> dict[str, Any]:
    age = 0.0 if outbox.oldest_open is None else (now - outbox.oldest_open).total_seconds()
    max_age = max_outbox_age.total_seconds()
    check: dict[str, Any] = {
        "ok": age <= max_age and outbox.failed == 0,
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
        check["error"] = "; ".join(problems)
    if age < 0:
        # Reported, not clamped: a wall clock stepped back makes the outbox look young.
        check["detail"] = (
            f"the oldest undelivered message is dated {-age:.0f}s in the future: "
            "the clock stepped back"
        )
    return check
