"""The few types that cross stages: what a poll read, what it knows, what it will send.

- :class:`WireRecord`: an upstream record that knows the digest of its own bytes;
- :class:`Observation`: one upstream record as a poll read it - the raw record, the
  :class:`Facts` the poll needs of it, and its normalized ``Listing``, built on first use;
- :class:`MatchState` / :class:`ChannelState`: what a subscription / a channel knows of
  a listing (the store keeps them between polls, detection reads and moves them);
- :class:`Cursor`: how far one upstream query has read;
- :class:`OutgoingMessage`: one message to post, as composed (``listingbot.outbox``);
  :class:`OutboxRow` is that message in the outbox, with its delivery state;
- :class:`ThreadRoot`: the message a listing's later events reply under, per channel.

Types private to one stage stay in that stage's module.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from listingbot.models import Listing, Source


def fingerprint(listing: Listing) -> str:
    """A digest of everything about a listing that any filter or message could use: of
    its ``model_dump_json()``, as bytes straight from the model's serializer (no str made
    and encoded again)."""
    return hashlib.blake2b(_LISTING_JSON(listing), digest_size=12).hexdigest()


_LISTING_JSON = Listing.__pydantic_serializer__.to_json


class WireRecord(Mapping[str, Any]):
    """A decoded upstream record that knows the digest of its bytes as they arrived
    (``clients.kato.KatoRecord``). Equal digests mean byte-for-byte equal records, so
    the poller's reader (``polling.Reader``) takes it as the record's digest instead of
    serializing the decoded values to digest them."""

    __slots__ = ()

    @property
    @abstractmethod
    def digest(self) -> bytes: ...


class Facts(NamedTuple):
    """What a poll needs to know about a listing when nothing about it has changed.

    A named tuple, immutable like the frozen dataclass it was, at a third of its cost to
    build: a first sweep builds one a record, and a steady one one a record it loads."""

    id: str
    source: Source
    fingerprint: str
    asking_amount: float | None
    status: str | None
    created_at: datetime | None
    updated_at: datetime | None
    # The digest of the raw record these facts were read from (``polling.Reader``), when
    # it has one: the state file keeps it, so a record served again byte for byte is
    # known without normalizing it or holding it in memory.
    digest: bytes | None = None

    @classmethod
    def of(cls, listing: Listing, digest: bytes | None = None) -> Facts:
        """The facts of ``listing``, read from a raw record of digest ``digest``.

        With a digest, the fingerprint is that digest: normalizing is pure, so the same
        record always gives the same listing, and a listing cannot change unless its
        record does. A record that changed only where no filter or message looks is then
        matched and detected again, which finds nothing new (events come from the match
        state, not from the fingerprint) and costs a few records a sweep; serializing
        every listing of every sweep to fingerprint it cost a tenth of a first sweep.
        Without a digest (a record that cannot be serialized), the listing's own."""
        return cls(
            listing.id,
            listing.source,
            digest.hex() if digest is not None else fingerprint(listing),
            listing.asking_amount,
            listing.status,
            listing.created_at,
            listing.updated_at,
            digest,
        )


@dataclass(slots=True)
class Observation:
    """One record of an upstream answer: its facts, and its normalized listing once needed.

    A record the poll's reader remembers (byte for byte what an earlier poll normalized)
    arrives with its facts only; ``listing`` normalizes it on first use, with the same
    normalizer that read it (normalization is pure: the same bytes, the same listing).
    """

    raw: Mapping[str, Any]
    facts: Facts
    normalized: Listing | None
    normalize: Callable[[Mapping[str, Any], None], Listing]
    # The fingerprint the query recorded for this listing the last time it saw it (None:
    # it never did), read with the record's other state in one store call.
    previous: str | None = None
    # The record read lean, when it was (a source's ``normalize_lean``): its facts and the
    # fields a subscription's index reads, nothing a message or a keyword reads.
    lean: Listing | None = None

    @property
    def listing(self) -> Listing:
        """The normalized listing (normalized now if the record was remembered or read lean)."""
        if self.normalized is None:
            self.normalized = self.normalize(self.raw, None)
        return self.normalized

    def whole(self) -> Listing:
        """``listing``, as a callable (what ``MatchIndex.matches`` confirms keywords on)."""
        return self.listing

    @property
    def matchable(self) -> Listing:
        """What ``MatchIndex.matches`` reads the indexed fields of: the lean listing when
        the record was read lean (never shown, never detected on), else the listing."""
        return self.lean if self.lean is not None else self.listing


@dataclass(frozen=True)
class Cursor:
    """How far one query has read upstream (Kotohomes' high-water marks; Kato has none)."""

    query_key: str
    source: str
    created_hw: str | None = None
    updated_hw: str | None = None


@dataclass(frozen=True)
class PageMark:
    """Which page of a sweep an answer was, and the digest of its body as it arrived.

    ``key`` names the page within its query's sweep (the part of the sweep and the
    page's number); equal digests mean byte-for-byte the same answer, so the same
    records in the same order.

    ``repeated``: the body is byte for byte one this process read for this page before
    (``KatoClient.pages``), so its records are decoded only if they are read: a page the
    state file knows whole is not (not part of the mark's identity).
    """

    key: str
    digest: bytes
    repeated: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class MatchState:
    """What a subscription knows of a listing: its last known asking figure and status."""

    subscription: str
    source: str
    listing_id: str
    last_price: float | None
    last_status: str | None
    figures: str | None = None  # the sale price, rent and deal type known (detection's JSON)


@dataclass(frozen=True)
class ChannelState:
    """What a channel was last told about a listing, and how many changes it was told of.

    Delivery keys of change events come from ``price_seq`` / ``status_seq``: a change to
    a value the channel was not told last moves the sequence on, so a value that returns
    to an earlier one is a new change with a new key. A change to the value the channel
    was told last (another subscription in the channel sees the same change a poll later)
    keeps the sequence, and so the key of the message already queued.
    """

    channel_id: int
    source: str
    listing_id: str
    price_seq: int = 0
    last_price: float | None = None
    status_seq: int = 0
    last_status: str | None = None
    price_told: bool = True  # the change at price_seq was told to the channel
    status_told: bool = True
    # Other kinds of change (sale, rent, deal): (kind, sequence, value told last, told).
    marks: tuple[tuple[str, int, str | None, bool], ...] = ()


@dataclass(frozen=True)
class Removal:
    """A listing confirmed gone, for one subscription that matched it."""

    subscription: str
    source: str
    listing_id: str
    removed_at: str
    told: bool
    listing: Mapping[str, Any] | None = None  # as last posted (``properties.listing``)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to post in one channel, as ``outbox.compose`` writes it.

    ``key`` is its delivery key (``outbox.delivery_key``): the outbox holds at most one
    row per key, and the posted message carries it in its properties
    (``outbox.key_of``), so a send of unknown outcome is found again, not repeated.
    """

    key: str
    channel_id: int
    source: str
    listing_id: str
    event: str
    subscriptions: tuple[str, ...]
    body: str
    properties: dict[str, Any]
    # For digests and quiet hours (README "Messages"): the one-line form a digest shows;
    # the state it is queued in: "pending", "held" until ``hold_until`` (quiet hours), or
    # "digested" (told by the digest ``digest``, never sent on its own).
    line: str = ""
    state: str = "pending"
    hold_until: datetime | None = None
    digest: str | None = None
    # Threads and photos (README "Messages"). ``kind``: what the row is - a listing's
    # text or a digest (KIND_MESSAGE), the photo posted with a text (KIND_PHOTO, ``body``
    # is the photo's URL), or a merge patch of a thread root's properties (KIND_PATCH,
    # ``properties`` is the patch). ``thread_id``: the message whose thread it goes into
    # (a patch: the message it patches); None: the channel. A text's thread is fixed when
    # its row is claimed. ``threaded``: a text replies in its listing's thread when the
    # listing has one (False: ``messages.threads`` is off for it). ``photo``: the URL of
    # the primary photo to post with the text if the text starts the listing's thread.
    kind: str = "message"
    thread_id: int | None = None
    threaded: bool = True
    photo: str | None = None
    # A text composed with its body deferred (``outbox.compose(defer=True)``): ``body`` is
    # "" until this writes it. A message a burst digest tells of is dropped unwritten
    # (it is never posted); every other is written (``written``) before it is queued.
    draft: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def written(self) -> OutgoingMessage:
        """This message with its body written, if it was deferred."""
        return self if self.draft is None else replace(self, body=self.draft(), draft=None)


KIND_MESSAGE = "message"
KIND_PHOTO = "photo"
KIND_PATCH = "patch"


@dataclass(frozen=True)
class ThreadRoot:
    """The message a listing's later events in a channel reply under: the first message
    told about it there, or the digest that told it (``digest``)."""

    channel_id: int
    source: str
    listing_id: str
    root_key: str  # the delivery key of the root message
    message_id: int  # its ChatKitty message id
    digest: bool = False


@dataclass(frozen=True)
class OutboxRow:
    """A message in the outbox, and where its delivery stands (see ``store``'s states)."""

    seq: int
    message: OutgoingMessage
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    claimed_at: datetime | None
    message_id: int | None
    last_error: str | None
    sent_at: datetime | None = None
    requeued_at: datetime | None = None
    may_be_sent: bool = False  # the last send's outcome is unknown

    @property
    def age_from(self) -> datetime:
        """Where the give-up age counts from: queued, or last put back by an operator."""
        return self.requeued_at or self.created_at
