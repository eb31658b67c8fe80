"""Prometheus metrics: one registry per running app, so tests can run several side by side.

Besides listingbot's own series, each registry carries the standard ``process_*`` series of
the running process (prometheus-client's ProcessCollector).

Labels are bounded by construction: API and source names, HTTP status codes, event types
and outcomes. Never a listing id, URL, channel name or anything that carries a secret.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from listingbot import __version__


class Metrics:
    """Everything listingbot counts. Also the clients' ``RequestObserver``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_*: resident and virtual memory, CPU seconds, open and max fds, start time
        # (read from /proc at each scrape; absent on platforms without it).
        ProcessCollector(registry=r)
        self.build = Info("listingbot_build", "The running listingbot version.", registry=r)
        self.build.info({"version": __version__})
        self.polls = Counter(
            "listingbot_polls",
            "Polls by source and outcome (ok, failed).",
            ["source", "outcome"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "listingbot_poll_duration_seconds",
            "Wall time of one poll of one source.",
            ["source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.upstream_requests = Counter(
            "listingbot_upstream_requests",
            "HTTP requests to upstream APIs by API and status code (error = no response).",
            ["api", "status"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "listingbot_upstream_retries",
            "Retried upstream requests by reason.",
            ["api", "reason"],
            registry=r,
        )
        self.token_fetches = Counter(
            "listingbot_token_fetches", "OAuth token requests by API.", ["api"], registry=r
        )
        self.rate_wait_seconds = Counter(
            "listingbot_rate_limit_wait_seconds",
            "Seconds spent waiting on rate limits (own limiter and 429 Retry-After), by API.",
            ["api"],
            registry=r,
        )
        self.listings_seen = Counter(
            "listingbot_listings_seen",
            "Listings received (read, or staged unchanged with a page known whole), by source.",
            ["source"],
            registry=r,
        )
        self.records_skipped = Counter(
            "listingbot_records_skipped",
            "Upstream records skipped as malformed, by source.",
            ["source"],
            registry=r,
        )
        self.pages_known = Counter(
            "listingbot_sweep_pages_known",
            "Pages of a sweep served again byte for byte while the state file held each "
            "of their listings as they were: staged as seen without being read, by source.",
            ["source"],
            registry=r,
        )
        self.fields_dropped = Counter(
            "listingbot_record_fields_dropped",
            "Fields of upstream records that could not be read and were left out (the rest "
            "of the record is kept), by source and top-level field.",
            ["source", "field"],
            registry=r,
        )
        self.possible_gaps = Counter(
            "listingbot_possible_gaps",
            "Polls whose full result page may have hidden changes (Kotohomes has no paging).",
            ["source"],
            registry=r,
        )
        self.events = Counter(
            "listingbot_events", "Detected events by type (before grouping).", ["type"], registry=r
        )
        self.events_deduplicated = Counter(
            "listingbot_events_deduplicated",
            "Detected events not queued because a message with their key already existed"
            " (the same change reached the channel before, through another subscription).",
            ["source"],
            registry=r,
        )
        self.digests = Counter(
            "listingbot_digests",
            "Digests queued, by source and reason (burst, quiet_hours).",
            ["source", "reason"],
            registry=r,
        )
        self.messages_digested = Counter(
            "listingbot_messages_digested",
            "Messages told by a digest instead of on their own, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.messages_sent = Counter(
            "listingbot_messages_sent", "Messages delivered to ChatKitty.", registry=r
        )
        self.messages_retried = Counter(
            "listingbot_messages_retried", "Message sends that will be retried.", registry=r
        )
        self.messages_failed = Counter(
            "listingbot_messages_failed", "Messages given up on (permanent error).", registry=r
        )
        self.messages_reconciled = Counter(
            "listingbot_messages_reconciled",
            "Sends of unknown outcome resolved by looking in the channel, by result.",
            ["result"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "listingbot_outbox_depth",
            "Messages not yet delivered (pending or sending).",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "listingbot_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered message (0 when none; negative when the clock "
            "stepped back).",
            registry=r,
        )
        self.outbox_failed = Gauge(
            "listingbot_outbox_failed",
            "Messages given up on, waiting for an operator (listingbot outbox retry/drop).",
            registry=r,
        )
        self.source_up = Gauge(
            "listingbot_source_up",
            "1 while the last poll of a source succeeded.",
            ["source"],
            registry=r,
        )
        self.last_success = Gauge(
            "listingbot_source_last_success_timestamp_seconds",
            "Unix time of the last successful poll, by source.",
            ["source"],
            registry=r,
        )

        self.subscription_problem = Gauge(
            "listingbot_subscription_problem",
            "1 for each subscription that cannot run, by reason (channel_missing: its "
            "ChatKitty channel does not exist; query_rejected: its source refuses its query).",
            ["subscription", "reason"],
            registry=r,
        )
        self.subscriptions_held = Gauge(
            "listingbot_subscriptions_held",
            "Subscriptions held because their ChatKitty channel does not exist.",
            registry=r,
        )
        self.chatkitty_up = Gauge(
            "listingbot_chatkitty_up",
            "1 while ChatKitty answered the last channel check.",
            registry=r,
        )
        self.config_reloads = Counter(
            "listingbot_config_reloads",
            "Configuration reloads (SIGHUP) by outcome (applied, rejected).",
            ["outcome"],
            registry=r,
        )
        self.config_reload_ok = Gauge(
            "listingbot_config_last_reload_ok",
            "0 while the last reload was rejected (the previous configuration runs), else 1.",
            registry=r,
        )
        self.subscriptions = Gauge(
            "listingbot_subscriptions",
            "Subscriptions by origin (yaml: the config file; chat: made with /listings "
            "subscribe) and state (active, paused).",
            ["origin", "state"],
            registry=r,
        )
        self.commands = Counter(
            "listingbot_commands",
            "Chat commands handled, by outcome (done, refused, skipped: over the per-user "
            "rate, not answered).",
            ["outcome"],
            registry=r,
        )
        self.config_reload_ok.set(1)
        for outcome in ("applied", "rejected"):
            self.config_reloads.labels(outcome)
        for outcome in ("done", "refused", "skipped"):
            self.commands.labels(outcome)

    def declare_sources(self, sources: Iterable[str]) -> None:
        """Create the per-source series at zero, so a first failure is an increase from 0
        (``increase()``/``rate()`` see it) rather than a series that appears from nowhere."""
        for source in sources:
            for outcome in ("ok", "failed"):
                self.polls.labels(source, outcome)
            for counter in (
                self.listings_seen,
                self.records_skipped,
                self.possible_gaps,
                self.pages_known,
            ):
                counter.labels(source)

    # RequestObserver ------------------------------------------------------------------
    def request_done(self, api: str, status: int | None, duration_s: float) -> None:
        del duration_s
        self.upstream_requests.labels(api, "error" if status is None else str(status)).inc()

    def rate_limit_wait(self, api: str, seconds: float) -> None:
        if seconds > 0:
            self.rate_wait_seconds.labels(api).inc(seconds)

    def token_fetched(self, api: str) -> None:
        self.token_fetches.labels(api).inc()

    def retry(self, api: str, reason: str) -> None:
        self.upstream_retries.labels(api, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
