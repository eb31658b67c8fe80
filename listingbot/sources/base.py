"""What a listing source is to the rest of listingbot: one small protocol and its types.

A source knows its own part of the configuration, how to build its client and fetcher,
and how to normalize its records. Everything else (planning, reading, matching, change
detection, the outbox) is the same for every source and lives in the poller.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from listingbot.models import Listing
from listingbot.models import Source as SourceName
from listingbot.normalize import FieldProblem
from listingbot.records import Cursor, Observation, PageMark

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from listingbot.clock import Clock
    from listingbot.config import Config, Subscription
    from listingbot.config.filters import Filters
    from listingbot.metrics import Metrics

# A source's normalizer as the poller calls it: the raw record and where problems go.
Normalizer = Callable[[Mapping[str, Any], "list[FieldProblem] | None"], Listing]


@dataclass
class ReadPage:
    """What the read stage made of one answer (or page of a sweep)."""

    observed: list[Observation]
    # An identity for each record that was skipped as malformed.
    bad: set[str] = field(default_factory=set)
    # The page, when every record of it was read, once each: what it held can be
    # recorded, so that a later sweep knows it whole if it is served again unchanged.
    mark: PageMark | None = None
    # Listings the state file knew with the page whole (served again byte for byte):
    # staged as seen, unchanged, without being read (not in ``observed``).
    kept: int = 0
    known: bool = False  # the page was known whole (``kept`` may be 0: all served before)
    # Read without asking the state file anything (its query has nothing recorded): which
    # of its listings an earlier page of the sweep served is left to the staging, where
    # the first counts (``Store.stage_soon(first_counts=True)``).
    first_counts: bool = False


class Read(Protocol):
    """The poller's read stage, as a fetcher calls it on each answer (or page): it asks
    the state file which records it knows already, hence awaited. ``page``: which page
    of a sweep the records are, and its body's digest (a page known whole is not read)."""

    def __call__(
        self, records: Sequence[Any], page: PageMark | None = None
    ) -> Awaitable[ReadPage]: ...


@dataclass(frozen=True)
class Query:
    """One distinct upstream query and the subscriptions that share it."""

    key: str
    source: SourceName
    params: tuple[tuple[str, str], ...]
    subscriptions: tuple[Subscription, ...]


@dataclass
class Fetched:
    """One query's answer, read: its listings and how far the query has now read."""

    listings: list[Observation]
    cursor: Cursor
    skipped: int = 0
    gap: bool = False
    requests: int = 0
    # True when the answer holds every listing the query matches upstream (a complete
    # Kato sweep); then a listing missing from it is one sweep closer to being forgotten.
    complete: bool = False
    # Identities of the records skipped as malformed (see polling.Reader.read).
    unreadable: frozenset[str] = frozenset()
    # Pages of the sweep known whole, not read (see ReadPage.known).
    pages_known: int = 0
    # A long answer (a Kato sweep) comes page by page instead of in ``listings``: the
    # poller reads, detects and stages each page as it arrives and keeps none, so memory
    # holds a page, not the account. The counters above are complete once the pages are
    # exhausted; an upstream failure midway raises from the iteration, and the poller then
    # treats the query as failed (what its earlier pages staged is discarded).
    pages: AsyncGenerator[ReadPage, None] | None = None


class Fetcher(Protocol):
    """Fetches one query's answer from a source (built by the source's ``fetcher``).

    A fetcher may also have ``normalize_lean`` (same signature as ``normalize``): the
    record's facts and the fields a subscription's index reads, read exactly as
    ``normalize`` reads them and nothing else. The poller's reader then reads records
    lean and normalizes whole only what a keyword filter or an event needs (Kato's does;
    Kotohomes' has none, and its records are read whole).
    """

    def normalize(self, raw: Mapping[str, Any], problems: list[FieldProblem] | None) -> Listing:
        """One raw record as a Listing (a source's options, like Kato's link template,
        are the fetcher's)."""
        ...

    async def fetch(self, query: Query, cursor: Cursor | None, read: Read) -> Fetched: ...


@dataclass(frozen=True)
class ChatFilter:
    """A word of ``/listings subscribe`` and what it becomes in the YAML ``filters:``.

    ``kind``: a list (``zip=10001,10002``), a range (``price<=900k``, ``size=1500..6000``;
    ``field`` is the stem of ``<field>_min`` / ``<field>_max``), an upper limit only, a
    single value, or true/false. ``money``: 900k and 1.2m are allowed; ``number``: the
    value is a number.
    """

    kind: Literal["list", "range", "max", "scalar", "bool"]
    field: str
    money: bool = False
    number: bool = False


@dataclass(frozen=True)
class ChatWords:
    """How a source's filters are written in the chat: its words (in the order answers
    list them), other spellings people use, and an example command."""

    filters: Mapping[str, ChatFilter]
    synonyms: Mapping[str, str]
    example: str  # the text after ``/listings subscribe``
    # ``/listings explain``: whether a listing passes one of the filters the source applies
    # upstream (a filters key; a range by its stem), judged from the listing's own fields;
    # None when only the source can tell.
    judge: Callable[[Filters, str, Listing], bool | None] = lambda _f, _k, _l: None


class SourceSettings(Protocol):
    """What the scheduler reads of any source's settings."""

    @property
    def poll_interval(self) -> timedelta: ...

    @property
    def poll_jitter(self) -> timedelta: ...


class Source(Protocol):
    """One listing API, as the app, the CLI and the status command see it."""

    @property
    def name(self) -> SourceName:
        """The name subscriptions and the config use (``sources.<name>``)."""
        ...

    @property
    def country(self) -> str:
        """The ISO country of every listing it serves (``Listing.country``)."""
        ...

    @property
    def chat(self) -> ChatWords:
        """The words of ``/listings subscribe <name> …`` for this source."""
        ...

    def settings(self, config: Config) -> SourceSettings | None:
        """This source's section of ``config``; None when it is not configured."""
        ...

    def secrets(self, config: Config) -> tuple[SecretStr, ...]:
        """The credentials in this source's section (none when it is not configured)."""
        ...

    def fetcher(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock, metrics: Metrics
    ) -> Fetcher:
        """The client and fetcher for this source; ``config`` must configure it."""
        ...

    async def check_credentials(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock
    ) -> str:
        """One request with the configured credentials (``check-config --online``): what
        was accepted, or the client's error."""
        ...

    def refused_credentials(self, error: str) -> str | None:
        """Why polling stops when this source refuses its credentials (until the config
        changes), or None when polling goes on."""
        ...
