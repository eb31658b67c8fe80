"""Drain the outbox into ChatKitty: in order per channel, exactly once.

ChatKitty has no idempotency key, so exactly-once rests on these rules:

1. One process per state file (the store's :class:`~listingbot.store.StateLock`), and a
   row is claimed by a compare-and-set (``pending`` -> ``sending``, committed) before its
   request goes out; a claim that loses is not sent. ``sent`` is written after the answer.
   A crash in between leaves the row ``sending``.
2. Any send that may have reached ChatKitty without us hearing the answer (timeout,
   dropped connection, 5xx: the server may have stored it) is treated like a crash: the
   row stays ``sending``, its outcome unknown.
3. A row of unknown outcome is settled by searching its channel for its delivery key
   (``properties.listingbot.key``), never by sending it again blindly, and only once the
   search can be conclusive: not before the request timeout plus
   ``delivery.late_store_margin_s`` has passed since the claim (a server may store a message
   after the client gave up), and only by paging back through the channel until messages
   are older than the claim minus :data:`CLOCK_SKEW_MARGIN_S`. Found: sent. Reached that
   point without finding it: pending again. Could not reach it (a paging error, the
   ``reconcile_lookback`` cap): still unknown, searched again later. A permanent answer
   (channel deleted, access denied) fails the row with its reason.
4. A definite "not processed" (429, 503, a refused or unobtainable token, a connection
   that never got through) is retried on the backoff schedule
   without using anything up. A row gives up by age (``delivery.give_up_after``), never
   by counting refusals; a permanent rejection (400, channel gone) fails it at once.
   Failed rows stay until an operator retries or drops them (``listingbot outbox``).

Within a channel, messages go out in event order: a row that must wait (backoff or
reconciliation) holds back the rows after it in the same channel, not other channels.
A pass is structured: it does not return while any channel worker runs, and a store
error stops only the channel it happened in (the row stays as the store last had it).

Threads (README "Messages"). The first text told about a listing in a channel becomes
its thread root (``thread_roots``); a later text about it is claimed with that root as
its thread and posted as a reply there. A root that is gone (404) is forgotten, the row
is retargeted to the channel (committed before the request) and posted there, becoming
the new root. A digest becomes the root of every listing it tells that has none. Marking
a row sent records, in the same transaction, the roots it became and the rows that follow
from it: after a reply, a merge patch of its root's properties; after a text that starts
a thread, its photo. Each has its own key, and goes out right after the row it follows.
A row of unknown outcome is searched for where its request went: the channel, the root's
thread (gone: the root is forgotten and the row goes to the channel), or, for a patch,
the root's properties (``listingbot.patch`` is the last patch applied). A patch of a root
that is gone, and a photo that cannot be posted (no size from a HEAD request, a refused
FILE message), are dropped with the reason: the text they follow has gone already.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from listingbot.clients.chatkitty import ChatKittyClient, SentMessage
from listingbot.clock import Clock
from listingbot.config import DeliveryConfig
from listingbot.digests import DIGEST_EVENT
from listingbot.errors import (
    ListingBotError,
    NotFound,
    StoreError,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from listingbot.metrics import Metrics
from listingbot.outbox import (
    ENVELOPE,
    group_tag,
    key_of,
    patch_key_of,
    photo_message,
    root_patch,
)
from listingbot.photos import PhotoProbe
from listingbot.records import (
    KIND_MESSAGE,
    KIND_PATCH,
    KIND_PHOTO,
    OutboxRow,
    OutgoingMessage,
    ThreadRoot,
)
from listingbot.store import Store

log = structlog.get_logger("listingbot.delivery")

# Reconciliation searches back to the claim time minus this: the message's createdTime is
# ChatKitty's clock, the claim time ours.
CLOCK_SKEW_MARGIN_S = 300.0
# Rows read per channel per round; a pass goes on round after round while rows are due
# and ChatKitty accepts them.
BATCH_ROWS = 50


@dataclass
class DeliveryOutcome:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    reconciled_sent: int = 0
    reconciled_requeued: int = 0
    reconcile_incomplete: int = 0  # searches that could not reach the claim time
    patched: int = 0  # thread roots' properties patched (also counted in ``sent``)
    dropped: int = 0  # photos left out or refused, patches of roots that are gone
    claims_lost: int = 0
    store_errors: int = 0
    channels: int = 0
    rounds: int = 0
    duration_s: float = 0.0
    pending: int = 0
    oldest_age_s: float | None = None  # negative: the clock stepped back
    seen_channels: set[int] = field(default_factory=set, repr=False)

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0 and self.retried == 0 and self.unknown == 0 and not self.store_errors
        )


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
        photos: PhotoProbe | None = None,
    ) -> None:
        self.store = store
        self.photos = photos  # None: photo rows are dropped (nothing to size them with)
        self.chatkitty = chatkitty
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._lock = asyncio.Lock()
        self._stopping = False

    def configure(self, config: DeliveryConfig) -> None:
        """Deliver by ``config`` from now on (a reload's settings): the one way they change."""
        self.config = config

    def stop(self) -> None:
        """Finish the sends in flight, start no new ones."""
        self._stopping = True

    # ------------------------------------------------------------------ waits
    @property
    def reconcile_wait_s(self) -> float:
        """How long after a claim a missing key may be taken as "not sent"."""
        return self.chatkitty.timeout_s + float(self.config.late_store_margin_s)

    @property
    def max_wait_s(self) -> float:
        """The longest wait delivery ever schedules. A due time further ahead can only
        come from the clock stepping back, and counts as due now."""
        return max(float(self.config.backoff_max_s), self.reconcile_wait_s) + 1.0

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        """Jittered exponential backoff; a server's ``Retry-After`` wins when longer, up
        to ``backoff_max_s`` (a server asking for an hour is asked again sooner)."""
        cfg = self.config
        growth = float(2 ** max(0, min(attempts, 40) - 1))
        ceiling = min(float(cfg.backoff_max_s), float(cfg.backoff_base_s) * growth)
        delay = ceiling * (0.5 + self.rng.random() / 2)
        asked = min(float(cfg.backoff_max_s), max(0.0, retry_after_s or 0.0))
        return max(delay, asked)

    def _too_early(self, row: OutboxRow, now: datetime) -> float:
        """Seconds until a missing key of ``row`` may count as "not sent" (0: now)."""
        if row.claimed_at is None:
            return 0.0
        left = (row.claimed_at - now).total_seconds() + self.reconcile_wait_s
        if left > self.max_wait_s:
            return 0.0  # claimed "in the future": the clock stepped back
        return max(0.0, left)

    def _age_s(self, row: OutboxRow, now: datetime) -> float:
        return (now - row.age_from).total_seconds()

    # ------------------------------------------------------------------ a pass
    async def run_pass(self) -> DeliveryOutcome:
        """Reconcile rows of unknown outcome, then send what is due, round after round
        while rows are due and ChatKitty accepts them. One pass at a time."""
        async with self._lock:
            started = time.perf_counter()
            outcome = DeliveryOutcome()
            if self._stopping:
                return outcome  # waited on the lock through a shutdown: start nothing new
            await self._reconcile(outcome)
            limit = asyncio.Semaphore(self.config.concurrency)
            while not self._stopping:
                try:
                    due = await self.store.due_messages(BATCH_ROWS, max_wait_s=self.max_wait_s)
                except StoreError as err:
                    outcome.store_errors += 1
                    log.error("delivery_store_failed", during="reading due rows", error=str(err))
                    break
                if not due:
                    break
                outcome.rounds += 1
                outcome.seen_channels.update(due)
                if not await self._send_round(due.values(), limit, outcome):
                    break
            outcome.channels = len(outcome.seen_channels)
            await self._account(outcome)
            outcome.duration_s = time.perf_counter() - started
            return outcome

    async def _send_round(
        self,
        batches: Iterable[list[OutboxRow]],
        limit: asyncio.Semaphore,
        outcome: DeliveryOutcome,
    ) -> bool:
        """Every channel's batch, channels in parallel; returns once every worker has
        finished. True when some channel sent a whole full batch (there may be more)."""
        more = False

        async def channel_worker(rows: list[OutboxRow]) -> None:
            nonlocal more
            async with limit:
                if await self._send_channel(rows, outcome) and len(rows) >= BATCH_ROWS:
                    more = True

        async with asyncio.TaskGroup() as workers:
            for rows in batches:
                workers.create_task(channel_worker(rows))
        return more

    async def _send_channel(self, rows: list[OutboxRow], outcome: DeliveryOutcome) -> bool:
        """Send a channel's rows in order; True when all of them went through. A row that
        queued a follow-up (its photo, its root's patch) has it sent right after it."""
        todo = collections.deque(rows)
        ahead = _Ahead()
        while todo:
            row = todo.popleft()
            claim, ahead.claim = ahead.claim, None
            if self._stopping:
                if claim is not None and claim[0]:
                    await self._unclaim(row, outcome)
                return False
            try:
                followups: list[str] = []
                ahead.row = todo[0] if todo and todo[0].message.kind != KIND_PHOTO else None
                if await self._send_one(row, outcome, followups, claim, ahead) is not _Next.GO:
                    return False  # keep this channel's order: nothing after a row that waits
                if followups:
                    fresh = await self.store.rows_by_keys(followups)
                    todo.extendleft(reversed([r for r in fresh if r.state == "pending"]))
            except StoreError as err:
                # The state file refused a write: this channel stops here. The row is as
                # the store last had it (a claimed row stays `sending` and is reconciled).
                _store_failed(row, err, outcome)
                return False
        return True

    async def _unclaim(self, row: OutboxRow, outcome: DeliveryOutcome) -> None:
        """A row claimed ahead whose request never went out: pending again (if the
        store refuses, it stays ``sending`` and is reconciled, never sent blindly)."""
        try:
            await self.store.unclaim(row.seq)
        except StoreError as err:
            _store_failed(row, err, outcome)

    async def _claim(self, row: OutboxRow) -> tuple[bool, ThreadRoot | None]:
        """Claim a row (a listing's text with its thread root: where it goes)."""
        thread_of = _thread_of(row.message)
        if thread_of is None:
            return await self.store.claim(row.seq), None
        return await self.store.claim_in_thread(row.seq, *thread_of)

    async def _send_one(
        self,
        row: OutboxRow,
        outcome: DeliveryOutcome,
        followups: list[str],
        claim: tuple[bool, ThreadRoot | None] | None = None,
        ahead: _Ahead | None = None,
    ) -> _Next:
        """Send one row; GO when the channel may go on to its next row. The keys of the
        rows queued to follow it are added to ``followups``. ``claim``: the row's claim,
        made already (with the sent mark of the row before it). ``ahead``: the row after
        it, claimed with this one's sent mark when nothing is queued to follow it."""
        msg = row.message
        file = None
        if msg.kind == KIND_PHOTO:
            if self.photos is not None:
                file = await self.photos.probe(msg.body, msg.listing_id)
            if file is None:
                await self._drop(row, "photo left out: its size could not be found", outcome)
                return _Next.GO
        claimed, root = claim if claim is not None else await self._claim(row)
        thread_id = root.message_id if root is not None else None
        if not claimed:
            outcome.claims_lost += 1
            log.warning("message_claim_lost", key=msg.key, channel=msg.channel_id)
            return _Next.WAIT  # someone else has it now: look again next pass
        if msg.kind != KIND_MESSAGE:
            thread_id = msg.thread_id
        attempts = row.attempts + 1
        try:
            if msg.kind == KIND_PATCH:
                sent = await self._patch(row)
            elif file is not None:
                sent = await self.chatkitty.send_file(
                    msg.channel_id,
                    file,
                    msg.properties,
                    group_tag=_of_text(msg),
                    thread_of=thread_id,
                )
            else:
                sent, thread_id = await self._post_text(row, thread_id)
        except _NothingToDo as gone:
            await self._drop(row, gone.reason, outcome)
            return _Next.GO
        except _ClaimLost:
            outcome.claims_lost += 1
            return _Next.WAIT
        except UpstreamUnavailable as err:
            if not err.ambiguous or err.status == 503:
                # Definitely not processed: 429, 503 (ChatKitty did not take the request),
                # or a connection that never got through.
                delay = self._backoff(attempts, err.retry_after_s)
                await self._requeue(row, delay, str(err), outcome)
            else:
                # Look soon (found: done), but "not found" counts only after
                # reconcile_wait_s since the claim (see _too_early).
                delay = self._backoff(attempts, err.retry_after_s)
                await self.store.mark_unknown(row.seq, delay, str(err))
                outcome.unknown += 1
                self.metrics.messages_retried.inc()
                log.warning(
                    "message_outcome_unknown",
                    key=row.message.key,
                    channel=row.message.channel_id,
                    error=str(err),
                    reconcile_in_s=round(delay, 2),
                )
            return _Next.WAIT
        except UpstreamAuthError as err:
            # Refused before anything was stored: credentials, or access to the channel.
            log.error(
                "message_auth_failed",
                key=row.message.key,
                channel=row.message.channel_id,
                error=str(err),
            )
            await self._requeue(row, self._backoff(attempts, None), str(err), outcome)
            return _Next.WAIT
        except UpstreamRejected as err:
            reason = f"{err}" + (f" (hint: {err.hint})" if err.hint else "")
            if msg.kind == KIND_PHOTO:
                # The text is posted already; the photo is only its illustration.
                await self._drop(row, f"photo refused: {reason}", outcome)
            else:
                await self._fail(row, reason, outcome)
            return _Next.GO
        except ListingBotError as err:
            delay = self._backoff(attempts, None)
            await self.store.mark_unknown(row.seq, delay, str(err))
            outcome.unknown += 1
            return _Next.WAIT
        _, queued = await self._record_sent(row, sent.id, thread_id, root, ahead)
        followups.extend(queued)
        outcome.sent += 1
        if msg.kind == KIND_PATCH:
            outcome.patched += 1
        else:
            self.metrics.messages_sent.inc()
        log.debug(
            "message_sent",
            key=msg.key,
            kind=msg.kind,
            channel=msg.channel_id,
            message_id=sent.id,
            thread_id=thread_id,
        )
        return _Next.GO

    async def _post_text(
        self, row: OutboxRow, thread_id: int | None
    ) -> tuple[SentMessage, int | None]:
        """Post a text where it was claimed for: its listing's thread, or the channel (a
        root that is gone is forgotten, and the text goes to the channel instead).
        Returns the answer and where the text went."""
        msg = row.message
        if thread_id is not None:
            try:
                sent = await self.chatkitty.reply_in_thread(
                    thread_id, msg.body, msg.properties, channel_id=msg.channel_id
                )
            except NotFound:
                # 404 before anything was stored: the root is gone (deleted), or the
                # channel is (then the channel post below fails the row).
                forgotten = await self.store.forget_thread_root(msg.channel_id, thread_id)
                log.info(
                    "thread_root_gone",
                    channel=msg.channel_id,
                    message_id=thread_id,
                    listings=forgotten,
                    key=msg.key,
                )
                if not await self.store.retarget(row.seq, None):
                    raise _ClaimLost from None  # an operator took it back meanwhile
            else:
                return sent, thread_id
        tag = group_tag(msg.key) if msg.photo else None
        sent = await self.chatkitty.send_message(
            msg.channel_id, msg.body, msg.properties, group_tag=tag
        )
        return sent, None

    async def _patch(self, row: OutboxRow) -> SentMessage:
        """Merge-patch the root's properties (its id is the row's ``thread_id``)."""
        msg = row.message
        if msg.thread_id is None:
            raise _NothingToDo("a patch without the message it patches")
        try:
            await self.chatkitty.patch_message_properties(msg.thread_id, msg.properties)
        except NotFound:
            await self.store.forget_thread_root(msg.channel_id, msg.thread_id)
            raise _NothingToDo(f"the message it patches ({msg.thread_id}) is gone") from None
        return SentMessage(id=msg.thread_id, channel_id=msg.channel_id, created_time=None)

    async def _record_sent(
        self,
        row: OutboxRow,
        message_id: int,
        thread_id: int | None,
        root: ThreadRoot | None = None,
        ahead: _Ahead | None = None,
    ) -> tuple[bool, list[str]]:
        """Mark ``row`` sent as message ``message_id`` (posted in the thread of
        ``thread_id``, None: in the channel), with the thread roots it became and the
        rows that follow from it. Returns (marked, the keys of the follow-ups queued).
        ``root``: the thread root the row was claimed with, if it is known (a reply
        sent in that thread patches it; otherwise the root is looked up). ``ahead``:
        when nothing is queued to follow, its row is claimed in the same transaction."""
        msg = row.message
        roots: list[ThreadRoot] = []
        followups: list[OutgoingMessage] = []
        if msg.kind == KIND_MESSAGE and thread_id is None:
            roots = _roots_of(msg, message_id)
            photo = photo_message(msg) if msg.event != DIGEST_EVENT else None
            if photo is not None:
                followups.append(photo)
        elif msg.kind == KIND_MESSAGE:
            if root is None or root.message_id != thread_id:
                root = await self.store.thread_root(msg.channel_id, msg.source, msg.listing_id)
            if root is not None and root.message_id == thread_id:
                followups.append(root_patch(msg, root, message_id))
        if ahead is not None and ahead.row is not None and not followups:
            marked, claimed, next_root = await self.store.mark_sent_then_claim(
                row.seq, message_id, roots, ahead.row.seq, _thread_of(ahead.row.message)
            )
            if marked:
                ahead.claim = (claimed, next_root)
            return marked, []
        marked = await self.store.mark_sent(row.seq, message_id, roots=roots, followups=followups)
        return marked, [f.key for f in followups] if marked else []

    async def _drop(self, row: OutboxRow, reason: str, outcome: DeliveryOutcome) -> None:
        await self.store.mark_dropped(row.seq, reason)
        outcome.dropped += 1
        log.info(
            "message_dropped",
            key=row.message.key,
            kind=row.message.kind,
            channel=row.message.channel_id,
            reason=reason,
        )

    async def _requeue(
        self, row: OutboxRow, delay: float, error: str, outcome: DeliveryOutcome
    ) -> None:
        """Definitely not posted: pending again after ``delay``, unless it is too old."""
        age = self._age_s(row, self.clock.now())
        limit = self.config.give_up_after.total_seconds()
        if age > limit:
            reason = f"gave up after {_span(age)} undelivered (delivery.give_up_after): {error}"
            await self._fail(row, reason, outcome)
            return
        await self.store.mark_retry(row.seq, delay, error)
        outcome.retried += 1
        self.metrics.messages_retried.inc()
        log.warning(
            "message_retry",
            key=row.message.key,
            channel=row.message.channel_id,
            error=error,
            retry_in_s=round(delay, 2),
        )

    async def _fail(self, row: OutboxRow, reason: str, outcome: DeliveryOutcome) -> None:
        await self.store.mark_failed(row.seq, reason)
        outcome.failed += 1
        self.metrics.messages_failed.inc()
        log.error(
            "message_failed",
            key=row.message.key,
            channel=row.message.channel_id,
            reason=reason,
            action="listingbot outbox retry KEY, or outbox drop KEY",
        )

    # ------------------------------------------------------------------ reconciliation
    async def _reconcile(self, outcome: DeliveryOutcome) -> None:
        try:
            rows = await self.store.sending_rows()
        except StoreError as err:
            outcome.store_errors += 1
            log.error("delivery_store_failed", during="reconciliation", error=str(err))
            return
        now = self.clock.now()
        horizon = now + timedelta(seconds=self.max_wait_s)
        by_channel: dict[int, list[OutboxRow]] = {}
        for row in rows:
            if row.next_attempt_at <= now or row.next_attempt_at > horizon:
                by_channel.setdefault(row.message.channel_id, []).append(row)
        for channel_id, waiting in by_channel.items():
            try:
                await self._reconcile_channel(channel_id, waiting, now, outcome)
            except StoreError as err:
                outcome.store_errors += 1
                log.error(
                    "delivery_store_failed",
                    during="reconciliation",
                    channel=channel_id,
                    error=str(err),
                )

    async def _reconcile_channel(
        self, channel_id: int, rows: list[OutboxRow], now: datetime, outcome: DeliveryOutcome
    ) -> None:
        """Settle a channel's rows of unknown outcome, each where its request went: the
        channel, a thread, or (a patch) the message it patches."""
        places: dict[int | None, list[OutboxRow]] = {}
        for row in rows:
            if row.message.kind == KIND_PATCH:
                await self._reconcile_patch(row, now, outcome)
            else:
                places.setdefault(row.message.thread_id, []).append(row)
        for thread_id, waiting in places.items():
            if thread_id is None:
                await self._reconcile_place(channel_id, None, waiting, now, outcome)
                continue
            try:
                await self._reconcile_place(channel_id, thread_id, waiting, now, outcome)
            except NotFound:
                # The root is gone, and its thread with it: nothing there can be seen,
                # so the rows go to the channel (where they become the new root).
                await self.store.forget_thread_root(channel_id, thread_id)
                log.info("thread_root_gone", channel=channel_id, message_id=thread_id)
                for row in waiting:
                    await self._requeue_reconciled(row, now, outcome)

    async def _reconcile_patch(
        self, row: OutboxRow, now: datetime, outcome: DeliveryOutcome
    ) -> None:
        """A patch of unknown outcome: applied if the root carries its key."""
        msg = row.message
        if msg.thread_id is None:
            await self._drop(row, "a patch without the message it patches", outcome)
            return
        try:
            root = await self.chatkitty.get_message(msg.thread_id)
        except NotFound:
            await self.store.forget_thread_root(msg.channel_id, msg.thread_id)
            await self._drop(row, f"the message it patches ({msg.thread_id}) is gone", outcome)
            return
        except ListingBotError as err:
            outcome.reconcile_incomplete += 1
            log.warning("reconcile_failed", channel=msg.channel_id, key=msg.key, error=str(err))
            await self._search_again_later([row], now, str(err), outcome)
            return
        if patch_key_of(root.get("properties")) == msg.key:
            if await self.store.mark_sent(row.seq, msg.thread_id):
                outcome.reconciled_sent += 1
                self.metrics.messages_reconciled.labels("already_sent").inc()
            return
        early = self._too_early(row, now)
        if early > 0:
            await self.store.mark_unknown(row.seq, early, row.last_error or "outcome unknown")
            return
        await self._requeue_reconciled(row, now, outcome)

    async def _reconcile_place(
        self,
        channel_id: int,
        thread_id: int | None,
        rows: list[OutboxRow],
        now: datetime,
        outcome: DeliveryOutcome,
    ) -> None:
        claims = [r.claimed_at or r.created_at for r in rows]
        since = min(claims) - timedelta(seconds=CLOCK_SKEW_MARGIN_S)
        lookback = self.config.reconcile_lookback
        try:
            if thread_id is None:
                recent, complete = await self.chatkitty.messages_back_to(
                    channel_id, since, max_messages=lookback
                )
            else:
                recent, complete = await self.chatkitty.thread_messages_back_to(
                    thread_id, since, max_messages=lookback
                )
        except NotFound as err:
            if thread_id is not None:
                raise
            await self._unsearchable(channel_id, rows, str(err), outcome)
            return
        except (UpstreamRejected, UpstreamAuthError) as err:
            if isinstance(err, UpstreamAuthError) and err.status != 403:
                # 401: our credentials, not this channel. Nothing can be concluded.
                log.warning("reconcile_failed", channel=channel_id, error=str(err))
                return
            await self._unsearchable(channel_id, rows, str(err), outcome)
            return
        except ListingBotError as err:
            outcome.reconcile_incomplete += 1
            log.warning("reconcile_failed", channel=channel_id, error=str(err))
            await self._search_again_later(rows, now, str(err), outcome)
            return
        found: dict[str, int] = {}
        for message in recent:
            key = key_of(message.get("properties"))
            if key is not None:
                found.setdefault(key, int(message.get("id") or 0))
        requeued = waiting = 0
        for row in rows:
            if row.message.key in found:
                marked, _ = await self._record_sent(row, found[row.message.key], thread_id)
                if marked:
                    outcome.reconciled_sent += 1
                    self.metrics.messages_reconciled.labels("already_sent").inc()
                    self.metrics.messages_sent.inc()
                continue
            if not complete:
                continue  # not found in what could be read: still unknown
            early = self._too_early(row, now)
            if early > 0:
                # The server may still store it: look again once that can no longer be.
                waiting += 1
                await self.store.mark_unknown(row.seq, early, row.last_error or "outcome unknown")
                continue
            requeued += 1
            await self._requeue_reconciled(row, now, outcome)
        if not complete:
            outcome.reconcile_incomplete += 1
            log.warning(
                "reconcile_incomplete",
                channel=channel_id,
                scanned=len(recent),
                limit=self.config.reconcile_lookback,
                back_to=since.isoformat(),
                reason="could not page back to the claim time; the outcome stays unknown",
            )
            await self._search_again_later(
                [r for r in rows if r.message.key not in found], now, "outcome unknown", outcome
            )
        log.info(
            "reconciled",
            channel=channel_id,
            rows=len(rows),
            already_sent=sum(1 for r in rows if r.message.key in found),
            requeued=requeued,
            too_early=waiting,
            scanned=len(recent),
            complete=complete,
        )

    async def _unsearchable(
        self, channel_id: int, rows: list[OutboxRow], error: str, outcome: DeliveryOutcome
    ) -> None:
        """The channel is gone or closed to us: whether these were posted can never be
        known, and nothing can be posted there. Fail each with the reason."""
        for row in rows:
            await self._fail(
                row,
                f"outcome unknown and channel {channel_id} cannot be searched: {error}",
                outcome,
            )

    async def _requeue_reconciled(
        self, row: OutboxRow, now: datetime, outcome: DeliveryOutcome
    ) -> None:
        error = row.last_error or "outcome unknown"
        age = self._age_s(row, now)
        if age > self.config.give_up_after.total_seconds():
            reason = f"gave up after {_span(age)} undelivered (delivery.give_up_after): {error}"
            await self._fail(row, reason, outcome)
            return
        if await self.store.mark_retry(row.seq, 0.0, error):
            outcome.reconciled_requeued += 1
            self.metrics.messages_reconciled.labels("requeued").inc()

    async def _search_again_later(
        self, rows: list[OutboxRow], now: datetime, error: str, outcome: DeliveryOutcome
    ) -> None:
        """The search concluded nothing: look again after a backoff (a long walk is not
        repeated every pass), or fail the rows that are past give_up_after."""
        limit = self.config.give_up_after.total_seconds()
        for row in rows:
            age = self._age_s(row, now)
            if age > limit:
                await self._fail(
                    row,
                    f"gave up after {_span(age)} (delivery.give_up_after); whether it was "
                    f"posted could not be checked: {error}",
                    outcome,
                )
            else:
                delay = self._backoff(row.attempts, None)
                await self.store.mark_unknown(row.seq, delay, row.last_error or error)

    # ------------------------------------------------------------------ accounting
    async def _account(self, outcome: DeliveryOutcome) -> None:
        try:
            health = await self.store.outbox_health()
        except StoreError as err:
            outcome.store_errors += 1
            log.error("delivery_store_failed", during="counting the outbox", error=str(err))
            return
        outcome.pending = health.open
        self.metrics.outbox_depth.set(health.open)
        self.metrics.outbox_failed.set(health.failed)
        if health.oldest_open is None:
            self.metrics.outbox_oldest_age.set(0.0)
            return
        age = (self.clock.now() - health.oldest_open).total_seconds()
        outcome.oldest_age_s = age
        # Reported as it is: a negative age means the clock stepped back.
        self.metrics.outbox_oldest_age.set(age)
        if age < 0:
            log.warning(
                "clock_stepped_back",
                oldest_undelivered_in_future_s=round(-age, 1),
                detail="the oldest undelivered message is dated in the future",
            )


class _Next(enum.Enum):
    """What a channel worker does after a row."""

    GO = "go"  # on to the channel's next row
    WAIT = "wait"  # stop here: the row waits (backoff, reconciliation, a lost claim)


@dataclass
class _Ahead:
    """A channel worker's next row (``row``: None, it is not claimed ahead, e.g. a photo,
    which is sized first) and its claim once made (``claim``: won, its thread root)."""

    row: OutboxRow | None = None
    claim: tuple[bool, ThreadRoot | None] | None = None


class _ClaimLost(Exception):
    """The row stopped being ours between two steps of its send."""


class _NothingToDo(Exception):
    """A row has nothing left to do (the message it patches is gone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _store_failed(row: OutboxRow, err: StoreError, outcome: DeliveryOutcome) -> None:
    """Count and log a write the state file refused for ``row``."""
    outcome.store_errors += 1
    log.error(
        "delivery_store_failed",
        key=row.message.key,
        channel=row.message.channel_id,
        error=str(err),
    )


def _thread_of(msg: OutgoingMessage) -> tuple[int, str, str] | None:
    """Whose thread a row may go into (channel, source, listing): a listing's text, when
    threads are on for it. None: the row is claimed for the channel (or, a photo or a
    patch, for the thread it already names)."""
    if msg.kind == KIND_MESSAGE and msg.threaded and msg.event != DIGEST_EVENT:
        return msg.channel_id, msg.source, msg.listing_id
    return None


def _of_text(msg: OutgoingMessage) -> str | None:
    """The ``groupTag`` of a photo: its text's."""
    envelope = msg.properties.get(ENVELOPE)
    text_key = envelope.get("of") if isinstance(envelope, dict) else None
    return group_tag(text_key) if isinstance(text_key, str) else None


def _roots_of(msg: OutgoingMessage, message_id: int) -> list[ThreadRoot]:
    """The thread roots a text posted in the channel becomes: its listing's, or a
    digest's, every listing it tells."""
    if msg.event != DIGEST_EVENT:
        return [ThreadRoot(msg.channel_id, msg.source, msg.listing_id, msg.key, message_id)]
    envelope = msg.properties.get(ENVELOPE)
    items = envelope.get("items") if isinstance(envelope, dict) else None
    roots: dict[tuple[str, str], ThreadRoot] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        source, listing_id = item.get("source"), item.get("listing_id")
        if isinstance(source, str) and isinstance(listing_id, str):
            roots.setdefault(
                (source, listing_id),
                ThreadRoot(msg.channel_id, source, listing_id, msg.key, message_id, digest=True),
            )
    return list(roots.values())


def _span(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
