"""What a command does: its outcome, the change to the chat subscriptions, and the answer.

:func:`execute` decides; it writes nothing. The reader records the outcome and the change
in one transaction (``Store.record_command``) and posts the answer afterwards, so a crash
anywhere leaves either nothing done or the effect done with its answer waiting.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from listingbot import sources
from listingbot.commands.explain import Verdict, explain
from listingbot.commands.grammar import (
    CHANGING_VERBS,
    Command,
    CommandError,
    Explain,
    Help,
    ListSubs,
    Manage,
    Subscribe,
    build_subscription,
    describe_filters,
    echo,
)
from listingbot.config import LocalFilters, Subscription
from listingbot.errors import ListingBotError
from listingbot.messages import sanitize
from listingbot.models import Listing
from listingbot.store import (
    COMMAND_DONE,
    COMMAND_REFUSED,
    ChatChange,
    ChatSubscriptionRow,
    HandledCommand,
)

__all__ = [
    "Catalog",
    "Context",
    "Outcome",
    "Settings",
    "chat_subscription",
    "execute",
    "help_text",
]

MAX_LIST_LINES = 40
MAX_ANSWER = 3000  # characters; a list of many subscriptions is cut (and says so)


class Catalog(Protocol):
    """The listings a subscription's query selects right now (one upstream fetch)."""

    async def current(self, subscription: Subscription) -> Sequence[Listing]: ...


class History(Protocol):
    """What the state file knows of a listing (its last snapshot, what the channel got)."""

    async def listing_history(
        self, channel_id: int, listing_id: str
    ) -> tuple[dict[str, Any] | None, str | None]: ...


@dataclass(frozen=True)
class Settings:
    allow: Literal["moderators", "members"]
    max_per_channel: int
    first_run: Literal["baseline", "post"]
    sources: tuple[str, ...] = ()  # the configured sources (empty: every source)


@dataclass(frozen=True)
class Context:
    """Everything a command is judged against, gathered by the reader."""

    channel_id: int
    username: str
    message_id: int
    now: datetime
    may_change: bool  # the sender may change this channel's subscriptions
    configured: tuple[Subscription, ...]  # the YAML's, every channel
    chat: tuple[ChatSubscriptionRow, ...]  # the chat's, every channel

    def yaml_here(self) -> list[Subscription]:
        return [s for s in self.configured if s.channel == self.channel_id]

    def chat_here(self) -> list[ChatSubscriptionRow]:
        return [r for r in self.chat if r.channel_id == self.channel_id]


@dataclass(frozen=True)
class Outcome:
    handled: HandledCommand
    change: ChatChange | None = None


def chat_subscription(row: ChatSubscriptionRow) -> Subscription:
    """A stored chat subscription as the poller takes it (validated as the YAML's are)."""
    return Subscription.model_validate(
        {
            "name": row.name,
            "source": row.source,
            "channel": row.channel_id,
            "filters": row.filters,
            "first_run": row.first_run,
        }
    )


def help_text(settings: Settings) -> str:
    who = "moderators" if settings.allow == "moderators" else "members"
    return (
        "listingbot commands:\n"
        + "".join(f"/listings subscribe {s.chat.example}\n" for s in _sources(settings))
        + "  (add name=NAME to choose the name; 900k, 1.2m, a..b, <= and >= work)\n"
        "/listings list - this channel's subscriptions\n"
        "/listings pause NAME | resume NAME | unsubscribe NAME\n"
        "/listings explain LISTING_ID [NAME] - which filters a listing passes\n"
        f"Changing subscriptions is for {who}; list, explain and help are for everyone "
        f"(at most {settings.max_per_channel} chat subscriptions per channel)."
    )


def _sources(settings: Settings) -> list[sources.Source]:
    return [s for s in sources.ALL if not settings.sources or s.name in settings.sources]


async def execute(
    cmd: Command, ctx: Context, settings: Settings, catalog: Catalog, history: History
) -> Outcome:
    """The outcome of ``cmd`` in ``ctx``: an answer, and for a change what it changes."""
    if cmd.verb in CHANGING_VERBS and not ctx.may_change:
        who = "moderators" if settings.allow == "moderators" else "members"
        return refused(
            ctx,
            cmd.verb,
            f"Only {who} of this channel may {cmd.verb}; list, explain and help are open "
            "to everyone.",
        )
    try:
        if isinstance(cmd, Help):
            return _done(ctx, cmd.verb, help_text(settings))
        if isinstance(cmd, ListSubs):
            return _done(ctx, cmd.verb, _list(ctx))
        if isinstance(cmd, Subscribe):
            return await _subscribe(cmd, ctx, settings, catalog)
        if isinstance(cmd, Manage):
            return _manage(cmd, ctx)
        return await _explain(cmd, ctx, catalog, history)
    except CommandError as err:
        return refused(ctx, cmd.verb, str(err))


def refused(ctx: Context, verb: str, text: str) -> Outcome:
    return Outcome(
        HandledCommand(ctx.message_id, ctx.channel_id, ctx.username, verb, COMMAND_REFUSED, text)
    )


def _done(ctx: Context, verb: str, text: str, change: ChatChange | None = None) -> Outcome:
    handled = HandledCommand(
        ctx.message_id,
        ctx.channel_id,
        ctx.username,
        verb,
        COMMAND_DONE,
        sanitize(text, max_len=MAX_ANSWER, multiline=True),
    )
    return Outcome(handled, change)


# --------------------------------------------------------------------------- list


def _list(ctx: Context) -> str:
    lines: list[str] = []
    for sub in ctx.yaml_here():
        lines.append(
            f"- {sub.name} ({sub.source}, from the config, read-only): "
            f"{describe_filters(sub.source, sub.filters)}"
        )
    for row in ctx.chat_here():
        sub = chat_subscription(row)
        lines.append(
            f"- {row.name} ({row.source}, {row.state}, by {echo(row.created_by, 40)}): "
            f"{describe_filters(sub.source, sub.filters)}"
        )
    if not lines:
        return "This channel has no subscriptions yet. Try /listings help."
    more = len(lines) - MAX_LIST_LINES
    shown = lines[:MAX_LIST_LINES] + ([f"... and {more} more"] if more > 0 else [])
    return f"This channel's subscriptions ({len(lines)}):\n" + "\n".join(shown)


# --------------------------------------------------------------------------- subscribe

_NAME_JUNK = re.compile(r"[^a-z0-9]+")


def _auto_name(cmd: Subscribe, sub_filters: Mapping[str, Any], taken: set[str]) -> str:
    hint = ""
    for key in ("zip_codes", "postcode_prefixes", "states", "territory", "property_types"):
        value = sub_filters.get(key)
        if value:
            first = value[0] if isinstance(value, list | tuple) else value
            hint = _NAME_JUNK.sub("-", str(first).lower()).strip("-")[:24]
            break
    stem = f"{cmd.source}-{hint}" if hint else cmd.source
    if stem not in taken:
        return stem
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


async def _subscribe(cmd: Subscribe, ctx: Context, settings: Settings, catalog: Catalog) -> Outcome:
    here = ctx.chat_here()
    if len(here) >= settings.max_per_channel:
        raise CommandError(
            f"This channel has reached its cap of {settings.max_per_channel} chat "
            "subscriptions; unsubscribe one first (see /listings list)."
        )
    taken = {s.name for s in ctx.configured} | {r.name for r in ctx.chat}
    if cmd.name is not None and cmd.name in taken:
        raise CommandError(
            f"The name `{echo(cmd.name, 64)}` is taken; choose another with name=..."
        )
    if settings.sources and cmd.source not in settings.sources:
        # The config's own rule (subscriptions[].source must be configured under sources).
        raise CommandError(
            f"`{cmd.source}` is not configured here: this listingbot polls "
            f"{', '.join(settings.sources)}."
        )
    # Validate under a placeholder name first: the automatic name is drawn from the filters.
    probe = build_subscription(
        cmd, name=cmd.name or "chat", channel_id=ctx.channel_id, first_run=settings.first_run
    )
    filters = probe.filters.model_dump(mode="json", exclude_defaults=True)
    name = cmd.name or _auto_name(cmd, filters, taken)
    sub = probe.model_copy(update={"name": name})
    try:
        count: int | None = len(await catalog.current(sub))
        why = ""
    except ListingBotError as err:
        count, why = None, str(err)
    row = ChatSubscriptionRow(
        name=name,
        channel_id=ctx.channel_id,
        source=sub.source,
        filters=filters,
        first_run=sub.first_run,
        state="active",
        created_by=ctx.username,
        created_at=ctx.now,
        command_id=ctx.message_id,
    )
    if count is None:
        matching = f"I could not count the current listings now ({echo(why, 120)})."
    else:
        matching = (
            f"{count} current listing{'s' if count != 1 else ''} match{'' if count != 1 else 'es'}"
        )
        matching += (
            "; they are recorded, not posted: you will hear about new ones and changes."
            if sub.first_run == "baseline"
            else "; they will be posted here."
        )
    text = (
        f"Subscribed as `{name}` ({sub.source}): {describe_filters(sub.source, sub.filters)}\n"
        f"{matching}\nPause it with /listings pause {name}."
    )
    return _done(ctx, cmd.verb, text, ChatChange("add", name, row))


# --------------------------------------------------------------------------- pause/resume/remove


def _find(name: str, ctx: Context) -> ChatSubscriptionRow:
    for row in ctx.chat_here():
        if row.name == name:
            return row
    if any(s.name == name for s in ctx.yaml_here()):
        raise CommandError(
            f"`{echo(name, 64)}` comes from the config file and is read-only here; "
            "ask the operator to change it."
        )
    names = [r.name for r in ctx.chat_here()]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    raise CommandError(
        f"This channel has no chat subscription `{echo(name, 64)}`.{hint} See /listings list."
    )


def _manage(cmd: Manage, ctx: Context) -> Outcome:
    row = _find(cmd.name, ctx)
    if cmd.verb == "unsubscribe":
        return _done(ctx, cmd.verb, f"Unsubscribed `{row.name}`.", ChatChange("remove", row.name))
    want = "paused" if cmd.verb == "pause" else "active"
    if row.state == want:
        return _done(ctx, cmd.verb, f"`{row.name}` is already {want}.")
    if cmd.verb == "pause":
        text = f"Paused `{row.name}`: nothing is posted for it until /listings resume {row.name}."
    else:
        text = (
            f"Resumed `{row.name}`: what appeared while it was paused is recorded, not posted; "
            "new listings and changes from now on are."
        )
    return _done(ctx, cmd.verb, text, ChatChange(cmd.verb, row.name))


# --------------------------------------------------------------------------- explain


async def _explain(cmd: Explain, ctx: Context, catalog: Catalog, history: History) -> Outcome:
    subs = [*ctx.yaml_here(), *(chat_subscription(r) for r in ctx.chat_here())]
    if cmd.name is not None:
        chosen = [s for s in subs if s.name == cmd.name]
        if not chosen:
            close = difflib.get_close_matches(cmd.name, [s.name for s in subs], n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise CommandError(f"This channel has no subscription `{echo(cmd.name, 64)}`.{hint}")
        subs = chosen
    if not subs:
        raise CommandError("This channel has no subscriptions to explain against.")
    snapshot, posted = await history.listing_history(ctx.channel_id, cmd.listing_id)
    listing = _listing(snapshot)
    lines = [f"Listing {echo(cmd.listing_id, 80)}:"]
    for sub in subs[:5]:
        found = listing if listing is not None and listing.source == sub.source else None
        if found is None:
            found = await _look_up(sub, cmd.listing_id, catalog)
        if found is None:
            lines.append(
                f"- {sub.name}: not among the listings {sub.source} returns for its search "
                "now (its search filters exclude it, or it is gone)."
            )
            continue
        verdicts = explain(sub, found)
        lines.append(f"- {sub.name}: {_verdict_line(verdicts)}")
    lines.append(
        f"Last posted here: {posted}." if posted else "Nothing was posted here about it yet."
    )
    return _done(ctx, cmd.verb, "\n".join(lines))


async def _look_up(sub: Subscription, listing_id: str, catalog: Catalog) -> Listing | None:
    try:
        listings = await catalog.current(sub.model_copy(update={"filters": _search_only(sub)}))
    except ListingBotError:
        return None
    return next((lst for lst in listings if lst.id == listing_id), None)


def _search_only(sub: Subscription) -> Any:
    """The subscription's filters without the local ones (a listing failing them is still
    returned by the search, so its verdict can say which failed)."""
    model = type(sub.filters)
    sent = {name for name, _ in sub.upstream_params()}
    local = (set(LocalFilters.model_fields) & set(model.model_fields)) - sent
    return sub.filters.model_copy(update={k: model.model_fields[k].default for k in local})


def _listing(snapshot: Mapping[str, Any] | None) -> Listing | None:
    if not snapshot:
        return None
    try:
        return Listing.model_validate(snapshot)
    except ValueError:
        return None


def _verdict_line(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return "no filters: every listing passes."
    failed = [v for v in verdicts if v.passed is False]
    parts = [v.text() for v in verdicts]
    head = "passes every filter" if not failed else f"fails {len(failed)} of {len(verdicts)}"
    return f"{head}: " + "; ".join(parts)


Clock = Callable[[], datetime]
