"""Where each subscription posts: its channel resolved against ChatKitty, or held with the
reason, and whether ChatKitty answers at all.

Subscriptions name a channel by id or by name. Until ChatKitty has been asked, ids are
taken as given and names from what it last resolved (kept in the state file); the rest
are *unresolved*. Once asked, a channel that does not exist *holds* the subscriptions
that post there, with a reason that suggests the name probably meant. Each change is
said once: held when it starts, resumed when it ends.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog

from listingbot.clients.chatkitty import Channel
from listingbot.config import Subscription
from listingbot.metrics import Metrics

log = structlog.get_logger("listingbot.app")

Destinations = tuple[dict[str, int], dict[str, str], dict[str, str]]


class Channels:
    """The subscriptions' destinations (``ids``), the ones that have none (``held``,
    ``unresolved``) and ChatKitty's reachability, as the last check found them."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.ids: dict[str, int] = {}
        self.held: dict[str, str] = {}
        self.unresolved: dict[str, str] = {}
        self.checked_at: datetime | None = None
        self.down_since: datetime | None = None
        self.error: str | None = None

    @property
    def deliverable(self) -> bool:
        """True once the channels are checked and while ChatKitty answers."""
        return self.checked_at is not None and self.down_since is None

    def unreachable(self, error: str, at: datetime) -> None:
        """ChatKitty could not be asked (said once, when it starts)."""
        if self.down_since is None:
            self.down_since = at
            log.error("chatkitty_unreachable", error=error)
        self.error = error
        self.metrics.chatkitty_up.set(0)

    def reachable(self, at: datetime) -> None:
        """ChatKitty answered a channel listing (said once, when it comes back)."""
        if self.down_since is not None:
            log.info("chatkitty_reachable", down_since=self.down_since.isoformat())
        self.down_since = None
        self.error = None
        self.checked_at = at
        self.metrics.chatkitty_up.set(1)

    def apply(self, destinations: Destinations) -> None:
        """Make ``destinations`` the subscriptions' channels; hold the others."""
        channels, held, unresolved = destinations
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
        self.ids, self.held, self.unresolved = channels, held, unresolved

    def named(self, subs: Iterable[Subscription]) -> dict[str, int]:
        """The channel names of ``subs`` with the ids they resolved to (for the state file)."""
        return {
            s.channel: self.ids[s.name]
            for s in subs
            if isinstance(s.channel, str) and s.name in self.ids
        }

    def for_reload(
        self,
        new: Sequence[Subscription],
        old: Sequence[Subscription],
        listing: list[Channel] | None,
    ) -> Destinations:
        """Destinations for the ``new`` subscriptions: from ``listing`` when ChatKitty
        answered, else what is known (a subscription whose channel did not change keeps
        its state, held included)."""
        if listing is not None:
            return match_channels(new, listing, {})
        known = {s.name: s.channel for s in old}
        channels, held, unresolved = match_channels(new, None, self.named(old))
        for sub in new:
            if known.get(sub.name) == sub.channel and sub.name in self.held:
                channels.pop(sub.name, None)
                held[sub.name] = self.held[sub.name]
        return channels, held, unresolved

    def check(self) -> dict[str, Any]:
        """ChatKitty's readiness check."""
        if self.down_since is not None:
            return {
                "ok": False,
                "error": f"unreachable since {iso(self.down_since)}: {self.error}",
            }
        if self.checked_at is None:
            return {"ok": True, "detail": "channel check pending"}
        return {"ok": True, "channels_checked": iso(self.checked_at)}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def match_channels(
    subs: Sequence[Subscription], listing: Sequence[Channel] | None, cached: dict[str, int]
) -> Destinations:
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
