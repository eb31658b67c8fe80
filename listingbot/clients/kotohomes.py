"""Kotohomes Listing API: search and single-listing lookup, and how to read its answers.

The API key travels in the query string, so it is registered as a secret parameter and
masked in every URL this client prints. There is no pagination: a search returns at most
``limit`` (<= 50) records.

Two versions of the API's documentation disagree on order (see
``../shared/apis/kotohomes.md``): the seed sorts ``sort_by=created_at`` descending, today's
API sorts a field named without a direction ascending; both answer a search without
``sort_by`` newest update first. So the order of every answer is read off its own
timestamps (``answer_order``), never assumed:

- ``recent_updates`` asks without ``sort_by``: the newest by update;
- ``new_listings`` asks ``sort_by=created_at`` from ``created_min`` (whole seconds,
  inclusive). An ascending answer is walked forward while full pages come back; a
  descending one cannot be walked, so a full page that is all newer than the last mark
  is reported as a possible gap. Neither is ever taken for what it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import SecretStr

from listingbot.clients.auth import ApiKeyAuth
from listingbot.clients.base import DEFAULT_RETRY, ApiClient, RequestObserver, RetryPolicy
from listingbot.clock import Clock
from listingbot.errors import NotFound, UpstreamAuthError, UpstreamUnavailable
from listingbot.ratelimit import SlidingWindowLimiter

API = "kotohomes"
PROBE_LISTING_ID = "listingbot-credentials-check"  # the credentials check's unknown id
LISTINGS_PATH = "/v1/listings"
ARRAY_FILTERS = frozenset({"mls_numbers", "property_types", "states", "zip_codes"})
# Set by the client itself; a filter with one of these names is a programming error.
RESERVED_PARAMS = frozenset({"key", "sort_by", "limit", "created_min"})
MAX_LIMIT = 50
# What new_listings may send as sort_by: the field alone (both versions accept it), or an
# explicit direction, which only today's API understands (a config switch).
CreatedSort = Literal["created_at", "created_at desc", "created_at asc"]
CREATED_SORTS: tuple[CreatedSort, ...] = ("created_at", "created_at desc", "created_at asc")
# Pages one poll walks forward at most; the next poll carries on from where it stopped.
MAX_WALK_PAGES = 20
Order = Literal["ascending", "descending", "unordered", "unknown"]

log = structlog.get_logger(__name__)


def format_created_min(when: datetime) -> str:
    """ISO-8601 UTC in whole seconds with ``Z`` (the documented form), rounded down so
    that the inclusive bound never skips the listing the last mark came from."""
    if when.tzinfo is None:
        raise ValueError("created_min must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_time(record: dict[str, Any], name: str) -> datetime | None:
    """A record's ``created_at``/``updated_at`` as an aware datetime, None if unreadable."""
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def answer_order(times: Sequence[datetime | None]) -> Order:
    """The order an answer is in, judged by its own timestamps (unreadable ones ignored):
    ``unknown`` when fewer than two distinct times leave nothing to judge by."""
    known = [t for t in times if t is not None]
    if len(set(known)) < 2:
        return "unknown"
    pairs = list(pairwise(known))
    if all(a <= b for a, b in pairs):
        return "ascending"
    if all(a >= b for a, b in pairs):
        return "descending"
    return "unordered"


@dataclass
class Window:
    """What one reading of a query returned (records deduplicated by id)."""

    records: list[dict[str, Any]]
    requests: int
    # True when changes may lie outside what was read (reported, never passed over).
    gap: bool = False
    # False when the walk stopped early (MAX_WALK_PAGES): the newest were not reached.
    complete: bool = True
    order: Order = "unknown"


class KotohomesClient:
    """Talks to ``GET /v1/listings`` and ``GET /v1/listings/{id}``.

    ``array_style="repeat"`` (the default) sends ``states=NY``, today's form;
    ``"brackets"`` sends ``states[]=NY``, the seed's (deprecated, still accepted).
    ``created_sort`` is what ``new_listings`` sends as ``sort_by``. ``min_request_interval_s``
    paces requests: the API documents no rate limit, but hammering it is no way to keep a
    key.
    """

    def __init__(
        self,
        *,
        base_url: str,
        key: SecretStr,
        session: aiohttp.ClientSession,
        clock: Clock,
        array_style: Literal["brackets", "repeat"] = "repeat",
        created_sort: CreatedSort = "created_at",
        timeout_s: float = 30.0,
        min_request_interval_s: float = 0.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        observer: RequestObserver | None = None,
    ) -> None:
        self.array_style = array_style
        if created_sort not in CREATED_SORTS:
            raise ValueError(f"created_sort must be one of {CREATED_SORTS}")
        self.created_sort: CreatedSort = created_sort
        limiter = (
            SlidingWindowLimiter(1, min_request_interval_s, clock)
            if min_request_interval_s > 0
            else None
        )
        self._http = ApiClient(
            api=API,
            base_url=base_url,
            session=session,
            clock=clock,
            auth=ApiKeyAuth("key", key),
            retry=retry,
            timeout_s=timeout_s,
            limiter=limiter,
            observer=observer,
            secret_params={"key"},
        )

    def __repr__(self) -> str:
        return f"KotohomesClient(base_url={self._http.base_url!r})"

    def query(
        self,
        params: Sequence[tuple[str, str]],
        *,
        sort_by: str | None = None,
        created_min: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[tuple[str, str]]:
        """The query string pairs of a search (without the key); no ``sort_by`` unless
        one is asked for (both versions then answer newest update first)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        pairs: list[tuple[str, str]] = []
        for raw_name, value in params:
            name = raw_name.removesuffix("[]")
            if name in RESERVED_PARAMS:
                raise ValueError(f"{name!r} is set by the client, not by filters")
            if name in ARRAY_FILTERS and self.array_style == "brackets":
                name += "[]"
            pairs.append((name, value))
        if sort_by is not None:
            pairs.append(("sort_by", sort_by))
        pairs.append(("limit", str(limit)))
        if created_min is not None:
            pairs.append(("created_min", format_created_min(created_min)))
        return pairs

    async def search(
        self,
        params: Sequence[tuple[str, str]],
        *,
        sort_by: str | None = None,
        created_min: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[dict[str, Any]]:
        """The raw records (``data``) of one search, in the order the server chose.

        ``params`` are canonical filter pairs without ``[]``; the array filters get the
        configured style. Records that are not JSON objects are dropped and logged; a
        response without a ``data`` list raises (an empty answer must not be believed
        when the server did not actually give one).
        """
        query = self.query(params, sort_by=sort_by, created_min=created_min, limit=limit)
        payload = await self._get(LISTINGS_PATH, query)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise UpstreamUnavailable(API, "search answered without a `data` list")
        records = [record for record in data if isinstance(record, dict)]
        if len(records) != len(data):
            log.warning(
                "kotohomes_bad_record", dropped=len(data) - len(records), reason="not an object"
            )
        return records

    async def recent_updates(self, params: Sequence[tuple[str, str]], *, limit: int) -> Window:
        """The newest ``limit`` listings by update: one search without ``sort_by``.

        Both versions document ``updated_at desc`` for it; an answer that is a full page
        in ascending order would be the oldest, not the newest, so it is flagged as a gap
        (and logged) rather than believed.
        """
        records = _unique(await self.search(params, limit=limit))
        order = answer_order([record_time(r, "updated_at") for r in records])
        gap = False
        if order in ("ascending", "unordered") and len(records) >= limit:
            log.warning("kotohomes_unexpected_order", request="updates", order=order)
            gap = True
        return Window(records, 1, gap=gap, order=order)

    async def new_listings(
        self, params: Sequence[tuple[str, str]], *, since: datetime | None, limit: int
    ) -> Window:
        """Listings created at or after ``since`` (the last mark), however the server
        orders ``sort_by=created_at``.

        ``created_min`` is whole seconds and inclusive, so the listings of the mark's own
        second come back again: records are deduplicated by id, and the caller's own
        state says which of them it has seen. Ascending: ask again from the newest
        ``created_at`` of each full page. Descending: one page; a full one whose oldest
        listing is newer than ``since`` may hide listings in between (a gap). Unordered:
        one page, a full one is a gap.
        """
        records: list[dict[str, Any]] = []
        seen: set[Any] = set()
        created_min = since
        requests = 0
        gap = False
        complete = True
        order: Order = "unknown"
        while True:
            page = await self.search(
                params, sort_by=self.created_sort, created_min=created_min, limit=limit
            )
            requests += 1
            times = [record_time(r, "created_at") for r in page]
            order = answer_order(times)
            for record in page:
                if record.get("id") not in seen:
                    seen.add(record.get("id"))
                    records.append(record)
            if len(page) < limit:
                break  # everything from created_min on is in hand
            known = [t for t in times if t is not None]
            if order == "descending":
                gap = since is not None and bool(known) and min(known) > since
                break
            if order == "unordered" or not known:
                log.warning("kotohomes_unexpected_order", request="new_listings", order=order)
                gap = True
                break
            # Ascending, or one timestamp throughout: carry on from the newest second.
            newest = max(known).replace(microsecond=0)
            if created_min is not None and newest <= created_min.replace(microsecond=0):
                gap = True  # a whole page in one second: the walk cannot move forward
                break
            if requests >= MAX_WALK_PAGES:
                complete = False
                break
            created_min = newest
        return Window(records, requests, gap=gap, complete=complete, order=order)

    async def check_credentials(self) -> None:
        """Ask for a listing no one has: a 404 means the key was accepted; raises
        :class:`listingbot.errors.UpstreamAuthError` when it is refused."""
        await self.get(PROBE_LISTING_ID)

    async def get(self, listing_id: str) -> dict[str, Any] | None:
        """One listing's raw record, or None when the API no longer knows it (404)."""
        try:
            payload = await self._get(f"{LISTINGS_PATH}/{quote(listing_id, safe='')}", [])
        except NotFound:
            return None
        # The later docs do not show the shape: accept `{"data": {...}}` and a bare record.
        if isinstance(payload, dict):
            inner = payload.get("data")
            if isinstance(inner, dict):
                return inner
            if "id" in payload:
                return payload
        raise UpstreamUnavailable(API, "listing lookup answered without a listing object")

    async def _get(self, path: str, query: Sequence[tuple[str, str]]) -> Any:
        try:
            return await self._http.request("GET", path, params=query)
        except UpstreamAuthError as err:
            raise UpstreamAuthError(
                API,
                f"Kotohomes rejected the API key (HTTP {err.status}): the key is missing, "
                "invalid or its account is inactive. Retrying cannot help; fix "
                "sources.kotohomes.key.",
                status=err.status,
            ) from err


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    out: list[dict[str, Any]] = []
    for record in records:
        key = record.get("id")
        if key is None or key not in seen:
            seen.add(key)
            out.append(record)
    return out
