"""Drain the outbox into ChatKitty: in order per channel, exactly once.

ChatKitty has no idempotency key, so exactly-once rests on two rules:

1. A row is marked ``sending`` (committed) before its request goes out, and ``sent``
   after the answer. A crash in between leaves it ``sending``.
2. Before a ``sending`` row is ever sent again, the channel's recent messages are
   searched for its delivery key (carried in ``properties.listingbot.key``). Found: it is
   marked sent. Not found: it goes back to ``pending``.

Any send that fails in a way that may have reached ChatKitty (timeout, dropped
connection, 5xx: the server may have stored the message before failing) is treated the
same way as a crash: the row stays ``sending`` until reconciled. Only a definite refusal
(429, 401/403) is retried without looking, and a permanent one (400, channel gone) marks
the row failed with its reason without holding up the rows behind it.

Within a channel, messages go out in event order: a row that must wait (backoff or
reconciliation) holds back the rows after it in the same channel, not other channels.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import structlog

from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clock import Clock
from listingbot.config import DeliveryConfig
from listingbot.errors import (
    ListingBotError,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from listingbot.metrics import Metrics
from listingbot.store import OutboxRow, Store

log = structlog.get_logger("listingbot.delivery")


@dataclass
class DeliveryOutcome:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    reconciled_sent: int = 0
    reconciled_requeued: int = 0
    channels: int = 0
    duration_s: float = 0.0
    pending: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.retried == 0 and self.unknown == 0


class Deliverer:
    def __init__(
        self,
        store: Store,
        chatkitty: ChatKittyClient,
        clock: Clock,
        metrics: Metrics,
        config: DeliveryConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.chatkitty = chatkitty
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lock = asyncio.Lock()
        self._stopping = False

    def stop(self) -> None:
        """Finish the sends in flight, start no new ones."""
        self._stopping = True

    async def run_pass(self) -> DeliveryOutcome:
        """Reconcile rows of unknown outcome, then send what is due. One pass at a time."""
        async with self._lock:
            started = time.perf_counter()
            outcome = DeliveryOutcome()
            if self._stopping:
                return outcome  # waited on the lock through a shutdown: start nothing new
            await self._reconcile(outcome)
            due = await self.store.due_messages()
            outcome.channels = len(due)
            limit = asyncio.Semaphore(self.config.concurrency)

            async def channel_worker(rows: list[OutboxRow]) -> None:
                async with limit:
                    await self._send_channel(rows, outcome)

            await asyncio.gather(*(channel_worker(rows) for rows in due.values()))
            outcome.pending, oldest = await self.store.open_counts()
            self.metrics.outbox_depth.set(outcome.pending)
            age = 0.0 if oldest is None else (self.clock.now() - oldest).total_seconds()
            self.metrics.outbox_oldest_age.set(max(0.0, age))
            outcome.duration_s = time.perf_counter() - started
            return outcome

    async def _send_channel(self, rows: list[OutboxRow], outcome: DeliveryOutcome) -> None:
        for row in rows:
            if self._stopping:
                return
            if not await self._send_one(row, outcome):
                return  # keep this channel's order: nothing after a row that must wait

    async def _send_one(self, row: OutboxRow, outcome: DeliveryOutcome) -> bool:
        """Send one row; True when the channel may go on to its next row."""
        await self.store.mark_sending(row.seq)
        attempts = row.attempts + 1
        try:
            sent = await self.chatkitty.send_message(row.channel_id, row.body, row.properties)
        except UpstreamUnavailable as err:
            delay = self._backoff(attempts, err.retry_after_s)
            if err.status == 429:
                # A rate-limit answer is a definite "not processed": retry without looking.
                await self._retry_or_fail(row, attempts, delay, str(err), outcome)
            else:
                await self.store.mark_unknown(row.seq, delay, str(err))
                outcome.unknown += 1
                self.metrics.messages_retried.inc()
                log.warning(
                    "message_outcome_unknown",
                    key=row.key,
                    channel=row.channel_id,
                    error=str(err),
                    reconcile_in_s=round(delay, 2),
                )
            return False
        except UpstreamAuthError as err:
            log.error("message_auth_failed", key=row.key, channel=row.channel_id, error=str(err))
            delay = self._backoff(attempts, None)
            await self._retry_or_fail(row, attempts, delay, str(err), outcome)
            return False
        except UpstreamRejected as err:
            reason = f"{err}" + (f" (hint: {err.hint})" if err.hint else "")
            await self.store.mark_failed(row.seq, reason)
            outcome.failed += 1
            self.metrics.messages_failed.inc()
            log.error("message_failed", key=row.key, channel=row.channel_id, reason=reason)
            return True
        except ListingBotError as err:
            delay = self._backoff(attempts, None)
            await self.store.mark_unknown(row.seq, delay, str(err))
            outcome.unknown += 1
            return False
        await self.store.mark_sent(row.seq, sent.id)
        outcome.sent += 1
        self.metrics.messages_sent.inc()
        log.debug("message_sent", key=row.key, channel=row.channel_id, message_id=sent.id)
        return True

    async def _retry_or_fail(
        self, row: OutboxRow, attempts: int, delay: float, error: str, outcome: DeliveryOutcome
    ) -> None:
        if attempts >= self.config.max_attempts:
            reason = f"gave up after {attempts} attempts: {error}"
            await self.store.mark_failed(row.seq, reason)
            outcome.failed += 1
            self.metrics.messages_failed.inc()
            log.error("message_failed", key=row.key, channel=row.channel_id, reason=reason)
            return
        await self.store.mark_retry(row.seq, delay, error)
        outcome.retried += 1
        self.metrics.messages_retried.inc()
        log.warning(
            "message_retry", key=row.key, channel=row.channel_id, error=error, retry_in_s=delay
        )

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        cfg = self.config
        growth = float(2 ** max(0, attempts - 1))
        ceiling = min(float(cfg.backoff_max_s), float(cfg.backoff_base_s) * growth)
        delay = ceiling * (0.5 + self.rng.random() / 2)
        return max(delay, retry_after_s or 0.0)

    async def _reconcile(self, outcome: DeliveryOutcome) -> None:
        rows = await self.store.sending_rows()
        now = self.clock.now()
        by_channel: dict[int, list[OutboxRow]] = {}
        for row in rows:
            if row.next_attempt_at <= now:
                by_channel.setdefault(row.channel_id, []).append(row)
        for channel_id, pending in by_channel.items():
            try:
                recent = await self.chatkitty.recent_messages(
                    channel_id, limit=self.config.reconcile_lookback
                )
            except ListingBotError as err:
                log.warning("reconcile_failed", channel=channel_id, error=str(err))
                continue
            found: dict[str, int] = {}
            for message in recent:
                props = message.get("properties")
                meta = props.get("listingbot") if isinstance(props, dict) else None
                key = meta.get("key") if isinstance(meta, dict) else None
                if isinstance(key, str):
                    found.setdefault(key, int(message.get("id") or 0))
            for row in pending:
                if row.key in found:
                    await self.store.mark_sent(row.seq, found[row.key] or None)
                    outcome.reconciled_sent += 1
                    self.metrics.messages_reconciled.labels("already_sent").inc()
                    self.metrics.messages_sent.inc()
                elif row.attempts >= self.config.max_attempts:
                    reason = (
                        f"gave up after {row.attempts} attempts: "
                        f"{row.last_error or 'outcome unknown'}"
                    )
                    await self.store.mark_failed(row.seq, reason)
                    outcome.failed += 1
                    self.metrics.messages_failed.inc()
                    log.error("message_failed", key=row.key, channel=channel_id, reason=reason)
                else:
                    await self.store.mark_retry(row.seq, 0.0, row.last_error or "outcome unknown")
                    outcome.reconciled_requeued += 1
                    self.metrics.messages_reconciled.labels("requeued").inc()
            log.info(
                "reconciled",
                channel=channel_id,
                rows=len(pending),
                already_sent=sum(1 for r in pending if r.key in found),
            )
