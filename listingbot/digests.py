"""Digests: one message that stands for many, when a channel would get a burst.

A poll that yields more than ``digest_over`` messages for one channel (a first run with
``first_run: post``, the first poll after downtime), and the messages that waited out a
subscription's quiet hours, go out as ONE message::

    🗞 23 updates · Homes under $1M
    12 new · 8 price drops · 3 status changes
    • 🏠 20 W 34th St #2012B, New York, NY 10001 · $500,000 · https://…
    • 📉 1 Main St, Albany, NY 12207 · $525,000 → $500,000 (-4.8%) · https://…
    … and 15 more

The digest is one outbox row like any message, exactly once: its key is derived from
the keys of the messages it covers, so the same burst seen twice makes the same key.
Its ``properties.listingbot.items`` lists every covered message (``source``,
``listing_id``, ``event``, ``subscriptions``, ``key``), so clients and tests read it the
way they read single messages. The covered messages count as told: their keys are used.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from listingbot.messages import MESSAGE_MAX_CHARS
from listingbot.text import ELLIPSIS, sanitize

if TYPE_CHECKING:
    from listingbot.config import Subscription

__all__ = [
    "DIGEST_EVENT",
    "DIGEST_OVER_DEFAULT",
    "Digest",
    "DigestItem",
    "build_digest",
    "digest_key",
    "quiet_until",
]

DIGEST_EVENT: Final = "digest"
DIGEST_OVER_DEFAULT: Final = 10
# The most listings a digest names; the rest are counted ("… and 15 more").
TOP_LISTINGS: Final = 8
_BULLET: Final = "• "
_SEP: Final = " · "

Reason = Literal["burst", "quiet_hours"]

_TITLES: Final[Mapping[Reason, str]] = {
    "burst": "🗞 {count} updates",
    "quiet_hours": "🌙 While it was quiet · {count} updates",
}

# How a count of each event reads: (one, many).
_COUNT_WORDS: Final[Mapping[str, tuple[str, str]]] = {
    "new": ("new", "new"),
    "price_drop": ("price drop", "price drops"),
    "price_increase": ("price increase", "price increases"),
    "status_change": ("status change", "status changes"),
    "now_for_rent": ("now for rent", "now for rent"),
    "now_for_sale": ("now for sale", "now for sale"),
    "removed": ("no longer listed", "no longer listed"),
    "back_on_market": ("back on the market", "back on the market"),
}


@dataclass(frozen=True)
class DigestItem:
    """One message a digest stands for."""

    key: str
    source: str
    listing_id: str
    event: str
    subscriptions: tuple[str, ...]
    line: str  # its one-line form (see item_line)


@dataclass(frozen=True)
class Digest:
    key: str
    body: str
    properties: dict[str, Any]


def digest_key(channel_id: int, item_keys: Sequence[str]) -> str:
    """The same for the same messages in the same channel, whatever their order."""
    raw = f"{channel_id}|digest|" + "|".join(sorted(item_keys))
    return "lb4-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def build_digest(
    channel_id: int,
    items: Sequence[DigestItem],
    *,
    reason: Reason,
    labels: Sequence[str],
) -> Digest:
    """The digest standing for ``items`` (in their order) in ``channel_id``."""
    key = digest_key(channel_id, [item.key for item in items])
    shown = sorted({s for s in (sanitize(label, max_len=60) for label in labels) if s})
    title = _TITLES[reason].format(count=len(items))
    head = [_SEP.join([title, ", ".join(shown)]) if shown else title, _counts(items)]
    lines: list[str] = []
    for item in items[:TOP_LISTINGS]:
        candidate = [*lines, _BULLET + item.line]
        if len("\n".join([*head, *candidate, _more(len(items) - len(candidate))])) > (
            MESSAGE_MAX_CHARS
        ):
            break
        lines = candidate
    body = "\n".join(part for part in (*head, *lines, _more(len(items) - len(lines))) if part)
    subscriptions = sorted({s for item in items for s in item.subscriptions})
    sources = sorted({item.source for item in items})
    properties: dict[str, Any] = {
        "listingbot": {
            "key": key,
            "event": DIGEST_EVENT,
            "source": sources[0] if len(sources) == 1 else ",".join(sources),
            "subscriptions": subscriptions,
            "reason": reason,
            "count": len(items),
            "events": dict(Counter(item.event for item in items)),
            "items": [
                {
                    "source": item.source,
                    "listing_id": item.listing_id,
                    "event": item.event,
                    "subscriptions": list(item.subscriptions),
                    "key": item.key,
                }
                for item in items
            ],
        }
    }
    return Digest(key, body, properties)


def _more(count: int) -> str:
    return f"{ELLIPSIS} and {count} more" if count > 0 else ""


def _counts(items: Sequence[DigestItem]) -> str:
    counts = Counter(item.event for item in items)
    parts = []
    for event, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        one, many = _COUNT_WORDS.get(event, (event.replace("_", " "),) * 2)
        parts.append(f"{count} {one if count == 1 else many}")
    return _SEP.join(parts)


def quiet_until(subscriptions: Sequence[Subscription], now: datetime) -> datetime | None:
    """When a message for ``subscriptions`` may go if they are ALL in quiet hours now
    (the first of their windows to end); None when it may go now."""
    if not subscriptions:
        return None
    ends: list[datetime] = []
    for sub in subscriptions:
        quiet = sub.quiet
        end = quiet.ends_at(now, sub.zone) if quiet is not None else None
        if end is None:
            return None
        ends.append(end)
    return min(ends)
