"""Kotohomes Listing API: search and single-listing lookup (endpoints and shapes only).

The API key travels in the query string, so it is registered as a secret parameter and
masked in every URL this client prints. There is no pagination: a search returns at most
``limit`` (<= 50) records; walking ``created_min`` forward is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
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
LISTINGS_PATH = "/v1/listings"
ARRAY_FILTERS = frozenset({"mls_numbers", "property_types", "states", "zip_codes"})
# Set by the client itself; a filter with one of these names is a programming error.
RESERVED_PARAMS = frozenset({"key", "sort_by", "limit", "created_min"})
MAX_LIMIT = 50


def format_created_min(when: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, the form the API itself returns."""
    if when.tzinfo is None:
        raise ValueError("created_min must be timezone-aware")
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class KotohomesClient:
    """Talks to ``GET /v1/listings`` and ``GET /v1/listings/{id}``.

    ``array_style="brackets"`` sends ``states[]=NY`` (the seed's form), ``"repeat"`` sends
    ``states=NY`` (the later docs' form). ``min_request_interval_s`` paces requests: the
    API documents no rate limit, but hammering it is no way to keep a key.
    """

    def __init__(
        self,
        *,
        base_url: str,
        key: SecretStr,
        session: aiohttp.ClientSession,
        clock: Clock,
        array_style: Literal["brackets", "repeat"] = "brackets",
        timeout_s: float = 30.0,
        min_request_interval_s: float = 0.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        observer: RequestObserver | None = None,
    ) -> None:
        self.array_style = array_style
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
        sort_by: Literal["created_at", "updated_at"] = "updated_at",
        created_min: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[tuple[str, str]]:
        """The query string pairs of a search (without the key)."""
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
        pairs += [("sort_by", sort_by), ("limit", str(limit))]
        if created_min is not None:
            pairs.append(("created_min", format_created_min(created_min)))
        return pairs

    async def search(
        self,
        params: Sequence[tuple[str, str]],
        *,
        sort_by: Literal["created_at", "updated_at"] = "updated_at",
        created_min: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[dict[str, Any]]:
        """The raw records (``data``) of one search, newest first by ``sort_by``.

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
            structlog.get_logger(__name__).warning(
                "kotohomes_bad_record", dropped=len(data) - len(records), reason="not an object"
            )
        return records

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
