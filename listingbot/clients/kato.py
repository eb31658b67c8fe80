"""Kato Client API: a full sweep of ``/{api_version}/availability`` (endpoints and shapes only).

Kato allows 60 requests per minute per client, token requests included, so one limiter
instance carries all of this client's traffic. There is no "updated since" filter: every
poll sweeps every page, page by page (``KatoClient.pages``), and a sweep that fails midway
raises rather than return a part.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final, overload

import aiohttp
import msgspec
import structlog
from pydantic import SecretStr

from listingbot.clients.auth import client_credentials_api
from listingbot.clients.base import (
    DEFAULT_RETRY,
    RequestObserver,
    RetryPolicy,
    Undecoded,
    decode_json,
    wire_int,
)
from listingbot.clock import Clock
from listingbot.errors import UpstreamUnavailable
from listingbot.ratelimit import SlidingWindowLimiter
from listingbot.records import PageMark, WireRecord

API = "kato"
DEFAULT_TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a credential
TOKEN_LIFETIME_S = 14 * 86400  # documented; used when the token answer has no expires_in
# The seed's changelog: "Availability: Pagination limit changed to 50" - a maximum.
MAX_PAGE_SIZE = 50
# Requests granted at the edges of our window can land inside one server window after
# network jitter; a second of slack keeps the server's count at the limit, not above it.
WINDOW_SLACK_S = 1.0
# The pages a client remembers having read (the request, a digest and two numbers: about
# 330 bytes each, 3.3 MB at most): every page of a 500,000-record account. Past that it
# forgets them all and decodes every page once more.
REMEMBERED_PAGES = 10_000
# What the client remembers of a page it read: its body's digest, whether it was the
# sweep's last page, and the server's count.
Remembered = tuple[bytes, bool, int | None]
# A page asked for ahead: its request, its key in what the client remembers, and what the
# client remembered of it when asking.
_Ahead = tuple["asyncio.Task[Any]", tuple[str, ...], Remembered | None]


class KatoSummary(msgspec.Struct, gc=False):
    """The fields of an availability record that a first look reads: those the lean read
    (``sources.kato.normalize_kato_lean``) and the record's id. Decoded from the record's
    bytes, skipping the rest (address lines, marketing text, images, assignees). Reading
    any other field decodes the record whole (``KatoRecord``), so a field missing here
    costs time, never a value. Not tracked by the garbage collector (a fifth of its
    decoding time): its values are freshly decoded JSON, which cannot refer back to it.

    A field the record lacks reads None, as ``Mapping.get`` reads it: the lean read takes
    the fields as attributes (a dozen ``get`` calls were an eighth of it), and only
    ``KatoRecord.get`` with a default tells an absent field from a null one."""

    id: Any = None
    address: Any = None
    property_types: Any = None
    size: Any = None
    for_sale: Any = None
    to_let: Any = None
    price: Any = None
    rent: Any = None
    status: Any = None
    created_at: Any = None
    updated_at: Any = None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> KatoSummary:
        """The summary fields of a record decoded some other way (a dict)."""
        get = record.get
        return cls(*(get(name) for name in _SUMMARY_NAMES))


_SUMMARY_NAMES: Final = KatoSummary.__struct_fields__
_SUMMARY_FIELDS: Final = frozenset(_SUMMARY_NAMES)


class _Page(msgspec.Struct):
    """An availability answer with its records' bytes as they arrived (``decode_page``)."""

    data: list[msgspec.Raw]
    meta: Any = msgspec.UNSET
    pagination: Any = msgspec.UNSET


_PAGE_DECODER: Final = msgspec.json.Decoder(_Page)
_SUMMARY_DECODER: Final = msgspec.json.Decoder(KatoSummary)


class KatoRecord(WireRecord):
    """One availability record, read from its bytes as far as it is read.

    Its digest is of its bytes in the answer, so it needs no serializing. Its summary
    fields (``KatoSummary``) are decoded with it; the rest of it only when a field outside
    them is read (``normalize_kato``, for a record a subscription accepts). On a first
    sweep most records match nothing: decoding their text, images and assignees into
    Python objects, then freeing them, was most of the cost of decoding a page. Either
    way a field has the value ``json.loads`` gives it (``decode_page``).
    """

    __slots__ = ("_digest", "_raw", "_summary", "_whole")

    def __init__(self, raw: msgspec.Raw, summary: KatoSummary) -> None:
        self._raw: msgspec.Raw | None = raw
        self._summary = summary
        self._whole: dict[str, Any] | None = None
        self._digest = hashlib.blake2b(raw, digest_size=16).digest()

    @property
    def digest(self) -> bytes:
        return self._digest

    @property
    def decoded_whole(self) -> bool:
        return self._whole is not None

    @property
    def summary(self) -> KatoSummary | None:
        """The summary fields, while the record is not decoded whole (then None: read it
        as a Mapping)."""
        return self._summary if self._whole is None else None

    def get(self, key: str, default: Any = None) -> Any:
        if self._whole is None and key in _SUMMARY_FIELDS:
            value = getattr(self._summary, key)
            if value is not None or default is None:
                return value
            # Null or absent: the summary cannot tell, the record decoded whole can.
        return self._decoded().get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, msgspec.UNSET)
        if value is msgspec.UNSET:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, msgspec.UNSET) is not msgspec.UNSET

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"KatoRecord({self._decoded()!r})"

    def _decoded(self) -> dict[str, Any]:
        if self._whole is None:
            assert self._raw is not None
            # Valid UTF-8 JSON that msgspec parsed (``decode_page``): json.loads reads it.
            whole = decode_json(bytes(self._raw))
            assert isinstance(whole, dict)
            # The page's bytes are not held past the record's whole decoding.
            self._whole, self._raw = whole, None
        return self._whole


def decode_page(body: bytes) -> Any:
    """An availability answer as Python values, each record a ``KatoRecord``: its
    ``data``, and ``meta`` and ``pagination`` when it has them (the client reads nothing
    else of a page).

    The values are those ``decode_json`` gives: any answer msgspec does not read as a
    page (no ``data`` list, JSON it refuses: ``NaN``, a lone surrogate escape, a
    byte-order mark) is decoded whole by ``decode_json``, and so is any record whose
    summary it does not read (a number past a float's range); an item of ``data`` that
    is not an object is given as ``decode_json`` reads it. msgspec checks the UTF-8 only
    of what it decodes, so a body that is not valid UTF-8 is left to ``decode_json``
    (which refuses it). Raises ValueError when the body is not JSON.
    """
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return decode_json(body)
    try:
        page = _PAGE_DECODER.decode(body)
    except msgspec.DecodeError:
        return decode_json(body)
    records: list[Any] = []
    for raw in page.data:
        if memoryview(raw)[0] == 0x7B:  # an object: "{"
            try:
                records.append(KatoRecord(raw, _SUMMARY_DECODER.decode(raw)))
                continue
            except msgspec.DecodeError:
                pass
        records.append(decode_json(bytes(raw)))
    payload: dict[str, Any] = {"data": records}
    if page.meta is not msgspec.UNSET:
        payload["meta"] = page.meta
    if page.pagination is not msgspec.UNSET:
        payload["pagination"] = page.pagination
    return payload


@dataclass(frozen=True)
class KatoPage:
    """One page of a sweep: its records (objects only), its number, the server's count."""

    records: Sequence[Mapping[str, Any]]
    number: int
    total: int | None
    status: str | None = None  # the status this part of the sweep asked for, if any
    # Which page of the sweep this was and its body's digest (None: an item of its data
    # was not an object, so its records are not the whole page).
    mark: PageMark | None = None


@dataclass(frozen=True)
class KatoSweep:
    """Every record of one complete sweep; ``total`` is the server's count when it gave one."""

    records: list[Mapping[str, Any]]
    pages: int
    total: int | None


class RepeatedRecords(Sequence[Mapping[str, Any]]):
    """The records of a page whose body is byte for byte one the client read before
    (every item an object, the pagination valid): decoded when first read, not before.
    A sweep served again unchanged is mostly pages the state file knows whole, which the
    poller does not read: decoding them was a sixth of a steady sweep."""

    __slots__ = ("_body", "_items")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._items: list[Mapping[str, Any]] | None = None

    @property
    def decoded(self) -> bool:
        return self._items is not None

    def _records(self) -> list[Mapping[str, Any]]:
        if self._items is None:
            # The same bytes decoded before, to a page whose every item was an object.
            self._items = list(decode_page(self._body)["data"])
            self._body = b""
        return self._items

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | list[Mapping[str, Any]]:
        return self._records()[index]

    def __len__(self) -> int:
        return len(self._records())

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self._records())


def _pagination(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # v2 nests the block under `meta`; the seed (and v1) put it at the top level.
    meta = payload.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("pagination"), Mapping):
        block: Mapping[str, Any] = meta["pagination"]
        return block
    top = payload.get("pagination")
    return top if isinstance(top, Mapping) else None


class KatoClient:
    """Lists availability with a bearer token (form-body client credentials)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_version: str,
        client_id: SecretStr,
        client_secret: SecretStr,
        session: aiohttp.ClientSession,
        clock: Clock,
        requests_per_minute: int = 60,
        page_size: int = 50,
        scope: str = "*",
        token_path: str = DEFAULT_TOKEN_PATH,
        timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        observer: RequestObserver | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
        self.api_version = api_version.strip("/")
        self.page_size = page_size
        base = base_url.rstrip("/")
        self.limiter = SlidingWindowLimiter(requests_per_minute, 60.0 + WINDOW_SLACK_S, clock)
        self._http, self._auth = client_credentials_api(
            api=API,
            base_url=base,
            token_url=base + "/" + token_path.lstrip("/"),
            client_id=client_id,
            client_secret=client_secret,
            style="form_body",
            scope=scope,
            session=session,
            clock=clock,
            token_lifetime_s=TOKEN_LIFETIME_S,
            limiter=self.limiter,
            observer=observer,
            timeout_s=timeout_s,
            retry=retry,
        )
        # The pages this client read whole, by request: the body's digest, whether it
        # was the sweep's last page, and the server's count (see ``_pages``).
        self._read_before: dict[tuple[str, ...], Remembered] = {}

    def __repr__(self) -> str:
        return f"KatoClient(base_url={self._http.base_url!r}, api_version={self.api_version!r})"

    async def check_credentials(self) -> None:
        """Fetch a token: raises :class:`listingbot.errors.UpstreamAuthError` when the
        client credentials are refused (``check-config --online``)."""
        await self._auth.ensure_token()

    async def sweep(self, params: Sequence[tuple[str, str]] = ()) -> KatoSweep:
        """Every page of availability matching ``params``, or an error: never a part.

        Laravel keeps only the last of repeated ``status=`` names, so several statuses
        are one sweep per status, merged by id: the union, as the filter means.
        """
        records: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        pages = 0
        totals: dict[str, int | None] = {}
        async with aclosing(self.pages(params)) as sweep:
            async for page in sweep:
                pages += 1
                totals[page.status or ""] = page.total
                for record in page.records:
                    key = record.get("id")
                    if key is None:
                        records.append(record)  # no id to merge by: the poller judges it
                    elif str(key) not in seen:
                        seen.add(str(key))
                        records.append(record)
        if len(totals) > 1:
            return KatoSweep(records, pages, sum(t or 0 for t in totals.values()))
        return KatoSweep(records, pages, next(iter(totals.values()), None))

    async def pages(self, params: Sequence[tuple[str, str]] = ()) -> AsyncGenerator[KatoPage, None]:
        """The pages of a sweep as they arrive (one status after another when ``params``
        names several), so memory holds a page, not the account. A failure midway raises
        from the iteration after the pages before it: until the iterator is exhausted,
        what it gave is a part of the sweep, never the whole."""
        statuses = list(dict.fromkeys(v for n, v in params if n == "status"))
        if len(statuses) <= 1:
            async with aclosing(self._pages(params, statuses[0] if statuses else None)) as one:
                async for page in one:
                    yield page
            return
        others = [(n, v) for n, v in params if n != "status"]
        for status in statuses:
            async with aclosing(self._pages([*others, ("status", status)], status)) as part:
                async for page in part:
                    yield page

    async def _pages(
        self, params: Sequence[tuple[str, str]], status: str | None
    ) -> AsyncGenerator[KatoPage, None]:
        """Pages are requested by number (the ``links`` in the answer drop filter params)
        until ``current_page >= total_pages``. An empty first page is an empty result.

        Once a page has arrived whole and the sweep has pages after it, the next one is
        requested before this one is handed on, so the server's time for it and the wire
        pass while the poller reads this one (one page ahead: memory holds two pages).
        Its failure is raised when it is asked for, after the pages before it; a sweep
        closed early cancels it.
        """
        path = f"/{self.api_version}/availability"
        filters = [(name, value) for name, value in params if name not in ("limit", "page")]
        remembered = self._read_before

        def request(page: int) -> _Ahead:
            query = [*filters, ("limit", str(self.page_size)), ("page", str(page))]
            key = (path, *(f"{name}={value}" for name, value in query))
            before = remembered.get(key)
            task = asyncio.ensure_future(
                self._http.request(
                    "GET",
                    path,
                    params=query,
                    digest=True,
                    unchanged=before[0] if before is not None else None,
                    decode=decode_page,
                )
            )
            return task, key, before

        page = 1
        ahead: _Ahead | None = request(page)
        try:
            while ahead is not None:
                task, key, before = ahead
                payload, digest = await task
                ahead = None
                if isinstance(payload, Undecoded):
                    # Byte for byte the body ``before`` was read from: the same records,
                    # the same pagination (it is in the body), decoded only if read.
                    assert before is not None
                    _, last, total = before
                    mark = PageMark(f"{status or ''}:{page}", digest, repeated=True)
                    kato_page = KatoPage(RepeatedRecords(payload.body), page, total, status, mark)
                else:
                    last, kato_page = self._page(payload, page, status, digest)
                    self._remember(key, kato_page, last)
                if not last:
                    ahead = request(page + 1)
                yield kato_page
                page += 1
        finally:
            if ahead is not None:
                ahead[0].cancel()
                await asyncio.gather(ahead[0], return_exceptions=True)

    def _remember(self, key: tuple[str, ...], page: KatoPage, last: bool) -> None:
        """Remember a page read whole (every item an object), to know it served again."""
        if page.mark is None:
            self._read_before.pop(key, None)
            return
        if len(self._read_before) >= REMEMBERED_PAGES:
            self._read_before.clear()
        self._read_before[key] = (page.mark.digest, last, page.total)

    def _page(
        self, payload: Any, page: int, status: str | None, digest: bytes | None = None
    ) -> tuple[bool, KatoPage]:
        """One answer of a sweep as a page, and whether it is the sweep's last; raises
        UpstreamUnavailable for an answer that is not a page of this sweep. ``digest``:
        of the answer's body (``KatoPage.mark``)."""
        if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
            raise UpstreamUnavailable(API, f"availability page {page} has no `data` list")
        data: list[Any] = payload["data"]
        records = [item for item in data if type(item) is KatoRecord or isinstance(item, dict)]
        if len(records) < len(data):
            structlog.get_logger(__name__).warning(
                "kato_bad_record",
                page=page,
                dropped=len(data) - len(records),
                reason="not an object",
            )
        mark = None
        if digest is not None and len(records) == len(data):
            mark = PageMark(f"{status or ''}:{page}", digest)
        block = _pagination(payload)
        if block is None:
            if page == 1 and not data:
                return True, KatoPage(records, page, 0, status)
            raise UpstreamUnavailable(API, f"availability page {page} has no pagination block")
        current = wire_int(block.get("current_page"))
        total_pages = wire_int(block.get("total_pages"))
        total = wire_int(block.get("total"))
        if current is None or total_pages is None:
            raise UpstreamUnavailable(
                API, f"availability page {page}: pagination lacks current_page/total_pages"
            )
        if page == 1 and not data and (total_pages <= 1 or total == 0):
            return True, KatoPage(records, page, total, status)
        if current != page:
            # Continuing would loop forever or silently skip pages.
            raise UpstreamUnavailable(
                API, f"asked for availability page {page}, got page {current}"
            )
        return current >= total_pages, KatoPage(records, page, total, status, mark)
