"""The few types that cross stages: what a poll read, what it knows, what it will send.

A listing travels the poll as one :class:`Observation` (the raw record, the
:class:`Facts` the poll needs of it, and the normalized ``Listing`` once some stage needs
it); the query's progress upstream is a :class:`Cursor`. Types private to one stage stay
in that stage's module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from listingbot.models import Listing, Source


def fingerprint(listing: Listing) -> str:
    """A digest of everything about a listing that any filter or message could use."""
    return hashlib.blake2b(listing.model_dump_json().encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Facts:
    """What a poll needs to know about a listing when nothing about it has changed."""

    id: str
    source: Source
    fingerprint: str
    asking_amount: float | None
    status: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, listing: Listing) -> Facts:
        return cls(
            listing.id,
            listing.source,
            fingerprint(listing),
            listing.asking_amount,
            listing.status,
            listing.created_at,
            listing.updated_at,
        )


@dataclass(slots=True)
class Observation:
    """One record of an upstream answer: its facts, and its normalized listing once needed."""

    raw: Mapping[str, Any]
    facts: Facts
    listing: Listing | None = None


@dataclass(frozen=True)
class Cursor:
    """How far one query has read upstream (Kotohomes' high-water marks; Kato has none)."""

    query_key: str
    source: str
    created_hw: str | None = None
    updated_hw: str | None = None
