"""The message envelope, written and read in this one place.

Every message listingbot posts carries, in its ChatKitty ``properties``, an envelope::

    {"listingbot": {"key": ..., "event": ..., "events": [...], "source": ...,
                    "listing_id": ..., "subscriptions": [...]},
     "listing": {...the normalized listing...}}

``compose`` writes it (one event group -> the messages to queue), ``delivery_key``
makes its key, and ``key_of`` reads the key back from a posted message: delivery finds a
send of unknown outcome in the channel by it instead of sending it again.

Two kinds of row follow from a sent text, each with a key of its own derived from the
text's (:func:`followup_key`): the photo posted with a text that starts a listing's
thread (:func:`photo_message`, grouped with it by ``groupTag``), and the merge patch of
the thread root's properties after a reply (:func:`root_patch`), whose key the root
carries afterwards in ``properties.listingbot.patch`` (:func:`patch_key_of`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from listingbot.messages import SharedFields, draft_for
from listingbot.models import Change, EventType, FigureName, Listing
from listingbot.records import KIND_PATCH, KIND_PHOTO, OutgoingMessage, ThreadRoot

if TYPE_CHECKING:
    from listingbot.config import Subscription
    from listingbot.detection import Grouped

# The envelope's own key in a message's properties.
ENVELOPE = "listingbot"
# The envelope's event of a photo (its ``listingbot.of`` is the key of its text).
PHOTO_EVENT = "photo"
_FOLLOWUP_PREFIX = {KIND_PHOTO: "lb5-", KIND_PATCH: "lb6-"}


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
    threads: bool = True,
    photos: bool = False,
    shared: SharedFields | None = None,
    defer: bool = False,
) -> list[OutgoingMessage]:
    """The messages that tell ``group``'s channel of its changes: today exactly one.

    ``event`` is the leading change, ``events`` every change it tells of, leading first.

    ``described`` memoizes the listing's JSON by object identity across the groups of one
    poll (the same listing often goes to many channels: describe it once).
    ``subscriptions`` are the group's (their labels, template and time zone shape the
    text, see :func:`listingbot.messages.render_for`); ``now`` picks the next open house.
    ``threads``: the message replies in the listing's thread when it has one (delivery
    decides where, see :mod:`listingbot.delivery`); ``photos``: the listing's primary
    photo goes with it when it starts the listing's thread. ``shared`` memoizes the
    listing's own display fields across the groups of one poll, like ``described``.
    ``defer``: the body is left unwritten (``OutgoingMessage.draft`` writes it), for a
    caller that may tell of the message in a digest instead.
    """
    listing = group.listing
    draft = draft_for(
        listing,
        group.type,
        group.subscriptions,
        subscriptions,
        changes=group.changes,
        now=now,
        shared=shared,
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
            body="" if defer else draft.body(),
            draft=draft.body if defer else None,
            line=draft.line,
            threaded=threads,
            photo=listing.photo_url if photos else None,
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


def followup_key(key: str, kind: str) -> str:
    """The key of the ``kind`` row that follows from the message keyed ``key``: the same
    for the same message, so a follow-up is queued once however often it is recorded."""
    raw = f"{key}|{kind}"
    return _FOLLOWUP_PREFIX[kind] + hashlib.sha256(raw.encode()).hexdigest()[:32]


def group_tag(key: str) -> str:
    """The ``groupTag`` a text and its photo share."""
    return f"listing-{key}"


def photo_message(text: OutgoingMessage) -> OutgoingMessage | None:
    """The FILE row posted right after ``text`` (``body``: the photo's URL), or None when
    the text has no photo."""
    if not text.photo:
        return None
    key = followup_key(text.key, KIND_PHOTO)
    return OutgoingMessage(
        key=key,
        channel_id=text.channel_id,
        source=text.source,
        listing_id=text.listing_id,
        # Not its text's event: housekeeping keeps a sent `new` row while its listing is
        # known (it deduplicates "new"); a photo deduplicates nothing once posted.
        event=PHOTO_EVENT,
        subscriptions=text.subscriptions,
        body=text.photo,
        properties={
            ENVELOPE: {
                "key": key,
                "event": PHOTO_EVENT,
                "source": text.source,
                "listing_id": text.listing_id,
                "subscriptions": list(text.subscriptions),
                "of": text.key,
            }
        },
        kind=KIND_PHOTO,
    )


def root_patch(reply: OutgoingMessage, root: ThreadRoot, reply_id: int) -> OutgoingMessage:
    """The row that merge-patches ``root``'s properties after ``reply`` (posted as message
    ``reply_id`` in its thread): the listing as it is now, and the reply it came from.

    The listing as it is now goes under ``current`` (a digest root: under
    ``current_listings["source:id"]``), field by field: a field the listing no longer has
    is set to null, which a merge patch removes. ``listing`` stays what the root itself
    said, and ``listingbot.key`` the root's own delivery key.
    """
    key = followup_key(reply.key, KIND_PATCH)
    envelope = reply.properties.get(ENVELOPE)
    envelope = envelope if isinstance(envelope, dict) else {}
    patch: dict[str, Any] = {
        ENVELOPE: {
            "patch": key,
            "latest": {
                "key": reply.key,
                "message_id": reply_id,
                "event": envelope.get("event", reply.event),
                "events": envelope.get("events"),
            },
        }
    }
    listing = reply.properties.get("listing")
    if isinstance(listing, dict):
        current = _every_field(listing)
        if root.digest:
            patch["current_listings"] = {f"{reply.source}:{reply.listing_id}": current}
        else:
            patch["current"] = current
    return OutgoingMessage(
        key=key,
        channel_id=reply.channel_id,
        source=reply.source,
        listing_id=reply.listing_id,
        event=reply.event,
        subscriptions=reply.subscriptions,
        body="",
        properties=patch,
        kind=KIND_PATCH,
        thread_id=root.message_id,
    )


def patch_key_of(properties: object) -> str | None:
    """The key of the last patch applied to a root (None: never patched)."""
    envelope = properties.get(ENVELOPE) if isinstance(properties, dict) else None
    key = envelope.get("patch") if isinstance(envelope, dict) else None
    return key if isinstance(key, str) else None


def _every_field(listing: dict[str, Any]) -> dict[str, Any]:
    """The listing's JSON with every field present, null where it has no value (a merge
    patch then removes what the listing no longer has)."""
    try:
        return Listing.model_validate(listing).model_dump(mode="json")
    except ValidationError:
        return listing
