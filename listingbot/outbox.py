"""The message envelope, written and read in this one place.

Every message listingbot posts carries, in its ChatKitty ``properties``, an envelope::

    {"listingbot": {"key": ..., "event": ..., "events": [...], "source": ...,
                    "listing_id": ..., "subscriptions": [...]},
     "listing": {...the normalized listing...}}

``compose`` writes it (one event group -> the messages to queue), ``delivery_key``
makes its key, and ``key_of`` reads the key back from a posted message: delivery finds a
send of unknown outcome in the channel by it instead of sending it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from listingbot.messages import render_for
from listingbot.models import Change, EventType, FigureName
from listingbot.records import OutgoingMessage

if TYPE_CHECKING:
    from listingbot.config import Subscription
    from listingbot.detection import Grouped

# The envelope's own key in a message's properties.
ENVELOPE = "listingbot"


def delivery_key(  # noqa: PLR0917 - the key's parts, as the key format lists them
    channel_id: int,
    source: str,
    listing_id: str,
    event: EventType,
    seq: int = 0,
    figure: FigureName | None = None,
    *,
    since: str | None = None,
) -> str:
    """Unique per delivery, and the same for the same change seen twice.

    ``new`` is once per channel and listing, ever (the key format of the first version,
    so rows queued before the change sequence existed still deduplicate). A change is
    the ``seq``-th change of its kind told to the channel: never a value, which can
    return to an earlier one, nor ``updated_at``, which can be missing. Sale price
    changes keep the format of the versions that knew only one figure.
    """
    if event is EventType.NEW:
        raw = f"{channel_id}|{source}|{listing_id}|{event.value}|"
        return "lb1-" + hashlib.sha256(raw.encode()).hexdigest()[:32]
    if event in (EventType.REMOVED, EventType.BACK_ON_MARKET):
        # Once per confirmed removal: a listing can go and come back more than once.
        raw = f"{channel_id}|{source}|{listing_id}|{event.value}|{since or ''}"
        return "lb2-" + hashlib.sha256(raw.encode()).hexdigest()[:32]
    name = f"{event.value}:rent" if figure == "rent" else event.value
    raw = f"{channel_id}|{source}|{listing_id}|{name}|{seq}"
    return "lb2-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def message_key(channel_id: int, source: str, listing_id: str, changes: Sequence[Change]) -> str:
    """The key of a message of ``changes``: a lone change keeps its own key; several
    are keyed by all of theirs, so the same changes seen again give the same key."""
    if len(changes) == 1:
        (one,) = changes
        return delivery_key(
            channel_id, source, listing_id, one.type, one.seq, one.figure, since=one.since
        )
    parts = sorted(f"{c.type.value}:{c.figure or ''}:{c.seq}:{c.since or ''}" for c in changes)
    raw = f"{channel_id}|{source}|{listing_id}|{','.join(parts)}"
    return "lb3-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def compose(
    group: Grouped,
    described: dict[int, dict[str, Any]] | None = None,
    *,
    subscriptions: Sequence[Subscription] = (),
    now: datetime | None = None,
) -> list[OutgoingMessage]:
    """The messages that tell ``group``'s channel of its changes: today exactly one.

    ``event`` is the leading change, ``events`` every change it tells of, leading first.

    ``described`` memoizes the listing's JSON by object identity across the groups of one
    poll (the same listing often goes to many channels: describe it once).
    ``subscriptions`` are the group's (their labels, template and time zone shape the
    text, see :func:`listingbot.messages.render_for`); ``now`` picks the next open house.
    """
    listing = group.listing
    text = render_for(
        listing,
        group.type,
        group.subscriptions,
        subscriptions,
        changes=group.changes,
        now=now,
    )
    memo = {} if described is None else described
    shown = memo.get(id(listing))
    if shown is None:
        shown = memo[id(listing)] = listing.model_dump(mode="json", exclude_none=True)
    return [
        OutgoingMessage(
            key=group.key,
            channel_id=group.channel_id,
            source=listing.source,
            listing_id=listing.id,
            event=group.type.value,
            subscriptions=group.subscriptions,
            body=text.body,
            line=text.line,
            properties={
                ENVELOPE: {
                    "key": group.key,
                    "event": group.type.value,
                    "events": [event.value for event in group.events],
                    "source": listing.source,
                    "listing_id": listing.id,
                    "subscriptions": list(group.subscriptions),
                },
                "listing": shown,
            },
        )
    ]


def key_of(properties: object) -> str | None:
    """The delivery key a posted message carries, or None (not one of listingbot's)."""
    envelope = properties.get(ENVELOPE) if isinstance(properties, dict) else None
    key = envelope.get("key") if isinstance(envelope, dict) else None
    return key if isinstance(key, str) else None
