"""The command reader: finds new ``/listings`` messages, carries each out once, answers it.

One pass (:meth:`CommandReader.run_once`, every ``commands.poll_interval``):

1. the enabled channels' cursors (a channel new to the set starts now);
2. answers recorded but not known to be posted (a crash came between carrying a command
   out and answering it, or the post failed) are looked for in the command's thread and
   channel by the command id they carry, and posted only if absent; one that still
   cannot be posted ``ANSWER_GIVE_UP`` after its command is given up, loudly;
3. the new messages: ONE application-wide ``GET …/messages?query=/listings``, newest
   first, down to what every channel has handled; where ChatKitty does not serve it, each
   channel's own message pages;
4. each new command, oldest first: judged, then its outcome and effect recorded in one
   transaction (``Store.record_command``), then answered in its thread (falling back to
   a channel message).

Ignored: messages without a user (listingbot's own and other integrations' system
messages), messages older than the moment commands were enabled in their channel, and a
user's commands beyond ``per_user_per_minute`` (the first one over is told so).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.commands.executor import Catalog, Context, Outcome, Settings, execute, refused
from listingbot.commands.grammar import (
    CHANGING_VERBS,
    PREFIX,
    CommandError,
    echo,
    is_command,
    parse_command,
)
from listingbot.config import Subscription
from listingbot.errors import ListingBotError, NotFound, UpstreamError, UpstreamUnavailable
from listingbot.store import COMMAND_REFUSED, COMMAND_SKIPPED, HandledCommand, Store

__all__ = ["ANSWER_KEY", "CommandReader", "PassOutcome", "ReaderSettings"]

log = structlog.get_logger("listingbot.commands")

ANSWER_KEY = "command"  # properties.listingbot.command: the command message an answer is for
MAX_PAGES = 20  # per pass: a backlog beyond this is read on the next pass
PAGE_SIZE = 100
RATE_WINDOW = timedelta(minutes=1)
# How far back of its recording an answer may have been posted (the clock of ChatKitty
# and ours may differ a little).
ANSWER_MARGIN = timedelta(minutes=5)
# An answer that still cannot be posted this long after its command was carried out is
# given up (said once, loudly): the command's effect stands, the answer is dropped.
ANSWER_GIVE_UP = timedelta(hours=1)
# What GET …/messages answers where a deployment does not serve it: read each channel.
APP_WIDE_UNSERVED = frozenset({400, 404, 405, 501})


@dataclass(frozen=True)
class ReaderSettings:
    executor: Settings
    per_user_per_minute: int = 6


@dataclass
class PassOutcome:
    """What one pass did (for logs, metrics and tests)."""

    handled: int = 0
    refused: int = 0
    skipped: int = 0
    answered: int = 0
    changed: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Message:
    id: int
    channel_id: int
    username: str | None
    body: str | None
    created: datetime | None


class CommandReader:
    """Reads and carries out chat commands; one per app, run by the scheduler."""

    def __init__(
        self,
        *,
        client: ChatKittyClient,
        store: Store,
        now: Callable[[], datetime],
        settings: ReaderSettings,
        catalog: Catalog,
        configured: Callable[[], Sequence[Subscription]],
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.now = now
        self.settings = settings
        self.catalog = catalog
        self.configured = configured
        self.on_change = on_change
        self.app_wide = True  # until ChatKitty says it does not serve GET …/messages
        self._lock = asyncio.Lock()

    async def run_once(self, channel_ids: Sequence[int]) -> PassOutcome:
        """One pass over the channels where commands are enabled."""
        async with self._lock:
            outcome = PassOutcome()
            cursors = await self.store.command_channels(channel_ids)
            await self._answer_pending(outcome)
            if not cursors:
                return outcome
            try:
                messages = await self._read(cursors)
            except ListingBotError as err:
                outcome.errors.append(str(err))
                log.warning("commands_read_failed", error=str(err))
                return outcome
            moderators: dict[int, set[str] | None] = {}
            stopped: set[int] = set()
            seen: dict[int, int] = {}
            for message in sorted(messages, key=lambda m: m.id):
                cursor = cursors[message.channel_id]
                if message.channel_id in stopped:
                    continue
                seen[message.channel_id] = message.id
                if cursor.last_message_id is not None and message.id <= cursor.last_message_id:
                    continue
                if message.created is None or message.created < cursor.enabled_at:
                    continue
                if message.username is None or not is_command(message.body):
                    continue
                try:
                    await self._handle(message, moderators, outcome)
                except ListingBotError as err:
                    # Left for the next pass (nothing was recorded); later commands of the
                    # channel wait behind it, so they keep their order.
                    stopped.add(message.channel_id)
                    outcome.errors.append(str(err))
                    log.warning("command_deferred", channel=message.channel_id, error=str(err))
            for channel_id, last in seen.items():
                if channel_id not in stopped and last != cursors[channel_id].last_message_id:
                    # Past what was read and is no command: not read again next pass.
                    await self.store.advance_command_cursor(channel_id, last)
            if outcome.changed and self.on_change is not None:
                await self.on_change()
            return outcome

    # ---------------------------------------------------------------- reading
    async def _read(self, cursors: Mapping[int, Any]) -> list[_Message]:
        if self.app_wide:
            try:
                return await self._read_app_wide(cursors)
            except UpstreamError as err:
                # 501 comes after the client's retries (a 5xx); the others at once.
                if err.status not in APP_WIDE_UNSERVED:
                    raise
                self.app_wide = False
                log.info("commands_app_wide_unavailable", status=err.status)
        out: list[_Message] = []
        for channel_id, cursor in cursors.items():
            pages = self.client.channel_message_pages(channel_id, page_size=PAGE_SIZE)
            out += await self._walk(pages, {channel_id: cursor}, channel_id)
        return out

    async def _read_app_wide(self, cursors: Mapping[int, Any]) -> list[_Message]:
        pages = self.client.message_pages(query=PREFIX, page_size=PAGE_SIZE)
        return await self._walk(pages, cursors, None)

    async def _walk(
        self, pages: Any, cursors: Mapping[int, Any], channel_id: int | None
    ) -> list[_Message]:
        """Newest-first pages down to what every channel in ``cursors`` has handled."""
        floor_id = min(
            (c.last_message_id for c in cursors.values() if c.last_message_id is not None),
            default=None,
        )
        if any(c.last_message_id is None for c in cursors.values()):
            floor_id = None
        floor_time = min(c.enabled_at for c in cursors.values())
        out: list[_Message] = []
        count = 0
        async for items in pages:
            count += 1
            reached = False
            for raw in items:
                message = _parse(raw, channel_id)
                if message is None:
                    continue
                if (floor_id is not None and message.id <= floor_id) or (
                    message.created is not None and message.created < floor_time
                ):
                    reached = True
                    continue
                if message.channel_id in cursors:
                    out.append(message)
            if reached or count >= MAX_PAGES:
                break
        return out

    # ---------------------------------------------------------------- one command
    async def _handle(
        self, message: _Message, moderators: dict[int, set[str] | None], outcome: PassOutcome
    ) -> None:
        assert message.username is not None
        ctx = Context(
            channel_id=message.channel_id,
            username=message.username,
            message_id=message.id,
            now=self.now(),
            may_change=True,
            configured=tuple(self.configured()),
            chat=tuple(await self.store.chat_subscriptions()),
        )
        recent = await self.store.recent_commands(
            message.channel_id, message.username, ctx.now - RATE_WINDOW
        )
        limit = self.settings.per_user_per_minute
        result: Outcome
        if recent > limit:
            result = Outcome(
                HandledCommand(
                    message.id, message.channel_id, message.username, "?", COMMAND_SKIPPED, None
                )
            )
        elif recent == limit:
            result = refused(
                ctx,
                "?",
                f"Too many commands: at most {limit} a minute each. "
                "The ones over are ignored; try again in a minute.",
            )
        else:
            try:
                command = parse_command(message.body or "")
            except CommandError as err:
                result = refused(ctx, "?", str(err))
            else:
                if command.verb in CHANGING_VERBS:
                    allowed = await self._may_change(message, moderators)
                    ctx = dataclasses.replace(ctx, may_change=allowed)
                result = await execute(
                    command, ctx, self.settings.executor, self.catalog, self.store
                )
        if not await self.store.record_command(result.handled, result.change):
            return  # handled already (by an earlier pass that crashed before its cursor)
        kind = result.handled.outcome
        if kind == COMMAND_SKIPPED:
            outcome.skipped += 1
        elif kind == COMMAND_REFUSED:
            outcome.refused += 1
        else:
            outcome.handled += 1
        outcome.changed |= result.change is not None
        log.info(
            "command_handled",
            channel=message.channel_id,
            message_id=message.id,
            user=echo(message.username, 64),
            verb=result.handled.verb,
            outcome=kind,
            change=None if result.change is None else result.change.kind,
        )
        if result.handled.answer is not None:
            await self._post_answer(message.id, message.channel_id, result.handled.answer, outcome)

    async def _may_change(self, message: _Message, cache: dict[int, set[str] | None]) -> bool:
        if self.settings.executor.allow == "members":
            return True
        if message.channel_id not in cache:
            users = await self.client.channel_moderators(message.channel_id)
            cache[message.channel_id] = {u.name for u in users}
        names = cache[message.channel_id] or set()
        return message.username in names

    # ---------------------------------------------------------------- answers
    async def _post_answer(
        self, message_id: int, channel_id: int, answer: str, outcome: PassOutcome
    ) -> bool:
        """Post the answer in the command's thread (else its channel); False on failure."""
        properties = {"listingbot": {ANSWER_KEY: message_id}}
        try:
            try:
                sent = await self.client.reply_in_thread(
                    message_id, answer, properties, channel_id=channel_id
                )
            except NotFound:
                log.info("command_answer_in_channel", message_id=message_id)
                sent = await self.client.send_message(channel_id, answer, properties)
        except ListingBotError as err:
            # Recorded: the next pass looks for it and posts it if it is not there.
            ambiguous = isinstance(err, UpstreamUnavailable) and err.ambiguous
            log.warning("command_answer_failed", message_id=message_id, error=str(err),
                        ambiguous=ambiguous)  # fmt: skip
            outcome.errors.append(str(err))
            return False
        await self.store.mark_answered(message_id, sent.id)
        outcome.answered += 1
        return True

    async def _answer_pending(self, outcome: PassOutcome) -> None:
        for pending in await self.store.pending_answers():
            try:
                found = await self._find_answer(pending.message_id, pending.channel_id,
                                                pending.handled_at - ANSWER_MARGIN)  # fmt: skip
            except ListingBotError as err:
                outcome.errors.append(str(err))
                continue
            if found is not None:
                log.info("command_answer_found", message_id=pending.message_id)
                await self.store.mark_answered(pending.message_id, found)
                continue
            posted = await self._post_answer(
                pending.message_id, pending.channel_id, pending.answer, outcome
            )
            if not posted and self.now() - pending.handled_at >= ANSWER_GIVE_UP:
                log.error(
                    "command_answer_given_up",
                    message_id=pending.message_id,
                    channel=pending.channel_id,
                    handled_at=pending.handled_at.isoformat(),
                )
                await self.store.mark_answered(pending.message_id, None)

    async def _find_answer(self, message_id: int, channel_id: int, since: datetime) -> int | None:
        """The id of an answer already posted for command ``message_id``, if any."""
        candidates: list[dict[str, Any]] = []
        try:
            replies, _ = await self.client.thread_messages_back_to(
                message_id, since, max_messages=500
            )
            candidates += replies
        except NotFound:
            pass  # the command is gone (deleted) or threads are not served: the channel
        recent, _ = await self.client.messages_back_to(channel_id, since, max_messages=500)
        candidates += recent
        for raw in candidates:
            props = raw.get("properties")
            mark = props.get("listingbot") if isinstance(props, dict) else None
            if isinstance(mark, dict) and mark.get(ANSWER_KEY) == message_id:
                ident = raw.get("id")
                return ident if isinstance(ident, int) else 0
        return None


def _parse(raw: Mapping[str, Any], channel_id: int | None) -> _Message | None:
    ident = raw.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool):
        return None
    channel = raw.get("channelId", raw.get("channel_id", channel_id))
    if not isinstance(channel, int) or isinstance(channel, bool):
        return None
    kind = raw.get("type")
    user = raw.get("user")
    username: str | None = None
    if kind == "TEXT" and isinstance(user, Mapping):
        name = user.get("name", user.get("username"))
        username = name if isinstance(name, str) and name else None
    created = raw.get("createdTime", raw.get("created_time"))
    when: datetime | None = None
    if isinstance(created, str):
        try:
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            when = None
    body = raw.get("body")
    return _Message(ident, channel, username, body if isinstance(body, str) else None, when)
