"""Kato (UK commercial availability): its settings, client, fetcher and normalizer.

Kato has no "updated since": every poll sweeps all of a query's pages and the poller
diffs locally (:class:`KatoFetcher`).

Kato's API is PHP/Laravel and is read the way the maintained importer reads it: ``[]`` is
an empty object, booleans arrive as ``0``/``1``/``"1"``, money as ``"£45.00 psf"``,
``status`` as a string or an object, rent metrics beyond sq ft / sq m.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from listingbot.clients.kato import KatoClient, KatoRecord, KatoSummary
from listingbot.config import KATO_URL_FIELDS
from listingbot.config.filters import KatoFilters
from listingbot.models import Listing, Price, PriceUnit
from listingbot.normalize import (
    FIGURE,
    TITLE_MAX_CHARS,
    FieldProblem,
    FieldReader,
    MalformedRecord,
    capitalized,
    html_to_text,
    read_id,
    read_record_id,
    short,
    summary,
    trusted_listing,
    trusted_price,
    words,
)
from listingbot.records import Cursor
from listingbot.sources.base import ChatFilter, ChatWords, Fetched, Query, Read, ReadPage
from listingbot.text import cap, clean, slug

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr

    from listingbot.clock import Clock
    from listingbot.config import Config, KatoConfig
    from listingbot.config.filters import Filters
    from listingbot.metrics import Metrics

SQM_TO_SQFT = 10.7639
ACRE_TO_SQFT = 43_560.0
HECTARE_TO_SQFT = 107_639.1


def _judge(filters: Filters, key: str, listing: Listing) -> bool | None:
    """Whether ``listing`` passes the upstream filter ``key`` (see ``ChatWords.judge``)."""
    assert isinstance(filters, KatoFilters)
    if key == "status":
        return listing.status in filters.status
    return None  # published_to_website / api_controlled: the listing does not say


# `/listings subscribe kato …`: the chat's words for the filters (config/filters.py).
CHAT_WORDS = ChatWords(
    filters={
        "postcode": ChatFilter("list", "postcode_prefixes"),
        "type": ChatFilter("list", "property_types"),
        "status": ChatFilter("list", "status"),
        "size": ChatFilter("range", "size", money=True),
        "rent": ChatFilter("max", "rent_max", money=True),
        "to_let": ChatFilter("bool", "to_let"),
        "for_sale": ChatFilter("bool", "for_sale"),
        "published_to_website": ChatFilter("bool", "published_to_website"),
        "api_controlled": ChatFilter("bool", "api_controlled"),
        "keywords": ChatFilter("list", "keywords_any"),
        "exclude": ChatFilter("list", "keywords_none"),
    },
    synonyms={
        "postcodes": "postcode",
        "postcode_prefix": "postcode",
        "property_type": "type",
        "property_types": "type",
        "statuses": "status",
        "sqft": "size",
        "keyword": "keywords",
        "keywords_any": "keywords",
        "keywords_none": "exclude",
    },
    example="kato postcode=EC2,EC3 size=1500..6000 rent<=75 type=office",
    judge=_judge,
)


class Kato:
    """The Kato Client API as a source (``sources.kato``)."""

    name: Literal["kato"] = "kato"
    country = "GB"
    chat = CHAT_WORDS

    def settings(self, config: Config) -> KatoConfig | None:
        return config.sources.kato

    def secrets(self, config: Config) -> tuple[SecretStr, ...]:
        c = config.sources.kato
        return () if c is None else (c.client_id, c.client_secret)

    def fetcher(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock, metrics: Metrics
    ) -> KatoFetcher:
        c = config.sources.kato
        assert c is not None, "kato is not configured"
        return KatoFetcher(_client(c, session, clock, metrics), listing_url=c.listing_url)

    async def check_credentials(
        self, config: Config, *, session: aiohttp.ClientSession, clock: Clock
    ) -> str:
        c = config.sources.kato
        assert c is not None, "kato is not configured"
        await _client(c, session, clock, None).check_credentials()
        return "client credentials accepted"

    def refused_credentials(self, error: str) -> str | None:
        del error  # polling goes on: the next poll asks for a new token
        return None


def _client(
    c: KatoConfig, session: aiohttp.ClientSession, clock: Clock, metrics: Metrics | None
) -> KatoClient:
    return KatoClient(
        base_url=c.api_url,
        api_version=c.api_version,
        client_id=c.client_id,
        client_secret=c.client_secret,
        session=session,
        clock=clock,
        requests_per_minute=c.requests_per_minute,
        page_size=c.page_size,
        scope=c.scope,
        token_path=c.token_path,
        timeout_s=c.timeout_s,
        observer=metrics,
    )


class KatoFetcher:
    """Kato has no "updated since": every poll sweeps all pages and diffs locally.

    A sweep reads every listing of the query, so nothing upstream needs a mark: the
    query's cursor only records that it was polled (housekeeping forgets the cursors of
    queries no longer polled). ``listing_url`` is the operator's link template for Kato
    records (they carry none).
    """

    def __init__(self, client: KatoClient, *, listing_url: str | None = None) -> None:
        self.client = client
        self.listing_url = listing_url

    def normalize(self, raw: Mapping[str, Any], problems: list[FieldProblem] | None) -> Listing:
        return normalize_kato(raw, listing_url=self.listing_url, problems=problems)

    def normalize_lean(
        self, raw: Mapping[str, Any], problems: list[FieldProblem] | None
    ) -> Listing:
        """The record's facts and what the filters index reads, nothing for messages
        (see ``normalize_kato_lean``)."""
        return normalize_kato_lean(raw, problems=problems)

    async def fetch(self, query: Query, cursor: Cursor | None, read: Read) -> Fetched:
        """The sweep, page by page (``Fetched.pages``): its first page is requested when
        the poller asks for it."""
        del cursor
        fetched = Fetched([], Cursor(query.key, query.source), complete=True)
        fetched.pages = self._pages(query, read, fetched)
        return fetched

    async def _pages(
        self, query: Query, read: Read, fetched: Fetched
    ) -> AsyncGenerator[ReadPage, None]:
        unreadable: set[str] = set()
        async with aclosing(self.client.pages(query.params)) as pages:
            async for page in pages:
                fetched.requests += 1
                out = await read(page.records, page.mark)
                fetched.pages_known += out.known
                unreadable |= out.bad
                fetched.skipped = len(unreadable)
                fetched.unreadable = frozenset(unreadable)
                # A record served twice on one page counts once (the last, as a whole
                # sweep read it); across pages the poller sees to it. (Such a page has
                # no mark: the read stage records only pages of distinct records.)
                out.observed = list({o.facts.id: o for o in out.observed}.values())
                yield out


# --- normalizing ---------------------------------------------------------------------------


def normalize_kato(
    raw: Mapping[str, Any],
    *,
    listing_url: str | None = None,
    problems: list[FieldProblem] | None = None,
) -> Listing:
    """One Kato availability record as a Listing; fields that cannot be read are dropped
    and appended to ``problems``. Raises MalformedRecord without a usable id.

    The record has no public link. ``listing_url`` is the operator's template over
    ``{id}``, ``{reference_number}`` and ``{external_ref}``
    (``"https://agency.example/property/{reference_number}"``); without one, or when the
    record lacks a value it names, the brochure (else the particulars) file is the link.
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise MalformedRecord(None, "record is not an object")
    record_id = read_record_id(raw)
    r = FieldReader(record_id, problems)

    address = r.mapping(raw.get("address"), "address") or {}
    name = r.text(address.get("name"), "address.name")
    line1 = r.text(address.get("line1"), "address.line1")
    line2 = r.text(address.get("line2"), "address.line2")
    town = r.text(address.get("town"), "address.town")
    county = r.text(address.get("county"), "address.county")
    postcode = r.text(address.get("postcode"), "address.postcode")
    postcode = postcode.upper() if postcode else None
    position = r.mapping(raw.get("position"), "position") or {}

    property_types = _kato_property_types(r, raw.get("property_types"))
    no_size: tuple[float | None, float | None] = (None, None)
    size_from, size_to = r.read_or(no_size, _kato_size, raw.get("size"))
    status = _kato_status(r, raw.get("status"))

    parts: list[str] = []
    for part in (name, line1, line2, town, county, postcode):
        if part and part not in parts:
            parts.append(part)

    return trusted_listing(
        record_id,
        {
            "source": "kato",
            "id": record_id,
            "url": _kato_url(r, raw, record_id, listing_url),
            "title": _kato_title(record_id, name or line1, town, property_types),
            "summary": summary(r.read_or(None, _kato_summary, raw.get("marketing"))),
            "address": ", ".join(parts) or None,
            "city": town,
            "region": county,
            "postcode": postcode,
            "country": Kato.country,
            "latitude": r.number(position.get("lat"), "position.lat", minimum=-90, maximum=90),
            "longitude": r.number(position.get("lng"), "position.lng", minimum=-180, maximum=180),
            "for_sale": bool(r.boolean(raw.get("for_sale"), "for_sale")),
            "to_let": bool(r.boolean(raw.get("to_let"), "to_let")),
            "price": _kato_price(r, raw.get("price")),
            "rent": r.read_or(None, _kato_rent, raw.get("rent")),
            "size_sqft": size_from,
            "size_max_sqft": size_to,
            "property_type": property_types[0] if property_types else None,
            "property_types": property_types,
            "status": status,
            "photo_url": _kato_photo(r, raw.get("images")),
            "agent": _kato_agent(r, raw.get("assignees")),
            "created_at": r.when(raw.get("created_at"), "created_at"),
            "updated_at": r.when(raw.get("updated_at"), "updated_at"),
        },
    )


def normalize_kato_lean(
    raw: Mapping[str, Any], *, problems: list[FieldProblem] | None = None
) -> Listing:
    """The part of ``normalize_kato`` that a listing no subscription matches needs: its
    facts (price or rent, status, dates) and every field a subscription's index reads
    (postcode, property types, size, rent, to let / for sale), each read exactly as
    ``normalize_kato`` reads it, with the same problems reported.

    Nothing a message or a keyword filter reads is read (link, title, summary, address
    line, position, photo, agent): the title is empty and the others are None. Such a
    listing goes to ``MatchIndex.matches`` and ``Facts`` only; a listing a subscription
    accepts is normalized whole before anything else sees it (``Observation.listing``).
    On a first sweep most listings match nothing, and these fields were most of the
    cost of reading them.
    """
    s = raw.summary if type(raw) is KatoRecord else None
    if s is None:
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise MalformedRecord(None, "record is not an object")
        s = KatoSummary.of(raw)
    record_id = read_id(s.id)
    r = FieldReader(record_id, problems)
    address = r.mapping(s.address, "address") or {}
    postcode = r.text(address.get("postcode"), "address.postcode")
    property_types = _kato_property_types(r, s.property_types)
    no_size: tuple[float | None, float | None] = (None, None)
    size_from, size_to = r.read_or(no_size, _kato_size, s.size)
    return trusted_listing(
        record_id,
        {
            "source": "kato",
            "id": record_id,
            "title": "",
            "postcode": postcode.upper() if postcode else None,
            "country": Kato.country,
            "for_sale": bool(r.boolean(s.for_sale, "for_sale")),
            "to_let": bool(r.boolean(s.to_let, "to_let")),
            "price": _kato_price(r, s.price),
            "rent": r.read_or(None, _kato_rent, s.rent),
            "size_sqft": size_from,
            "size_max_sqft": size_to,
            "property_type": property_types[0] if property_types else None,
            "property_types": property_types,
            "status": _kato_status(r, s.status),
            "created_at": r.when(s.created_at, "created_at"),
            "updated_at": r.when(s.updated_at, "updated_at"),
        },
    )


def _kato_title(
    record_id: str, place: str | None, town: str | None, property_types: Sequence[str]
) -> str:
    """``"1 King St, Leeds"``; without an address, the type: ``"Office in Leeds"``."""
    if place:
        title = f"{place}, {town}" if town and town != place else place
    else:
        kind = capitalized(words(property_types[0])) if property_types else "Availability"
        title = f"{kind} in {town}" if town else f"{kind} {record_id}"
    return cap(clean(title), TITLE_MAX_CHARS)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _kato_url(
    r: FieldReader, raw: Mapping[str, Any], record_id: str, template: str | None
) -> str | None:
    for field in ("url", "website_url"):
        url = r.url(raw.get(field), field)
        if url:
            return url
    if template:
        url = _fill(r, template, raw, record_id)
        if url:
            return url
    files = r.items(raw.get("files"), "files")
    for wanted in ("brochure", "particulars"):
        for index, item in enumerate(files):
            if (type(item) is dict or isinstance(item, Mapping)) and str(
                item.get("type", "")
            ).lower() == wanted:
                value = item.get("url")
                # A text is read without naming it: a name is only used in a report.
                url = r.url(value, "" if type(value) is str else f"files[{index}].url")
                if url:
                    return url
    return None


def _fill(r: FieldReader, template: str, raw: Mapping[str, Any], record_id: str) -> str | None:
    """The template with the record's values (URL-quoted), or None when one is missing."""
    values: dict[str, str] = {"id": record_id}
    for name in KATO_URL_FIELDS[1:]:
        value = r.code(raw.get(name), name)
        if value:
            values[name] = value
    missing = [n for n in _PLACEHOLDER.findall(template) if n not in values]
    if missing:
        return None
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), template)


def _kato_status(r: FieldReader, value: Any) -> str | None:
    """A slug, from a string or from an object under any of the keys Laravel apps use."""
    if isinstance(value, Mapping):
        for key in ("key", "slug", "value", "code", "name", "label", "title"):
            text = r.text(value.get(key), f"status.{key}")
            if text:
                return slug(text) or None
        return None
    text = r.text(value, "status")
    return (slug(text) or None) if text else None


def _kato_property_types(r: FieldReader, value: Any) -> tuple[str, ...]:
    found: list[str] = []
    for index, item in enumerate(r.items(value, "property_types")):
        given = item
        if type(item) is dict or isinstance(item, Mapping):
            given = item.get("key") or item.get("slug") or item.get("name")
        text = r.text(given, "" if type(given) is str else f"property_types[{index}]")
        key = slug(text) if text else ""
        if key and key not in found:
            found.append(key)
    return tuple(found)


def _kato_price(r: FieldReader, value: Any) -> Price | None:
    block = r.mapping(value, "price")
    if block is None:
        return None
    on_application = bool(
        r.boolean(block.get("price_on_application"), "price.price_on_application")
    )
    amount, implied = r.amount(block.get("value"), "price.value")
    amount = amount or None  # 0 is how an empty price block says "no price"
    if amount is None and not on_application:
        return None
    qualifier = r.text(block.get("qualifier"), "price.qualifier")
    return trusted_price(
        amount=None if on_application else amount,
        currency=r.currency(block.get("currency"), "price.currency") or implied or "GBP",
        unit=PriceUnit.TOTAL,
        on_application=on_application,
        qualifier=words(qualifier) if qualifier else None,
    )


def _kato_rent(r: FieldReader, value: Any) -> Price | None:
    block = r.mapping(value, "rent")
    if block is None:
        return None
    on_application = bool(r.boolean(block.get("rent_on_application"), "rent.rent_on_application"))
    low, implied_low = r.amount(block.get("from"), "rent.from")
    high, implied_high = r.amount(block.get("to"), "rent.to")
    low, high = low or None, high or None
    if low is None:
        low, high = high, None
    if low is not None and high is not None and high < low:
        r.fail("rent", f"range runs backwards ({low:g} to {high:g})")
    if low is None and not on_application:
        return None
    metric = r.text(block.get("metric"), "rent.metric") or _metric_hint(block.get("from"))
    if metric is None:
        unit: PriceUnit | None = PriceUnit.PER_YEAR
    else:
        unit = _RENT_UNITS.get(metric, _UNKNOWN)
        if unit is _UNKNOWN:
            unit = _rent_unit(metric)
            if len(_RENT_UNITS) < _UNITS_KEPT:
                _RENT_UNITS[metric] = unit
    if unit is None:
        r.fail("rent.metric", f"unknown rent metric {short(metric)}")
    currency = r.currency(block.get("currency"), "rent.currency")
    return trusted_price(
        amount=None if on_application else low,
        amount_max=None if on_application or high == low else high,
        currency=currency or implied_low or implied_high or "GBP",
        unit=unit,
        on_application=on_application,
    )


def _metric_hint(value: Any) -> str | None:
    """The unit a formatted figure names itself (``"£45.00 psf"`` -> ``"psf"``)."""
    if not isinstance(value, str):
        return None
    words = FIGURE.sub(" ", value).replace("£", " ").replace("$", " ").replace("€", " ")
    words = re.sub(r"(?i)\b(?:GBP|USD|EUR)\b", " ", words).strip(" -")
    return words or None


# What the metrics an account uses read as (a few spellings, in every record): the rent's
# unit by its metric text, and the size's unit key by its metric text (None: unknown).
_UNITS_KEPT = 1_000
_UNKNOWN: Any = object()
_RENT_UNITS: dict[str, PriceUnit | None] = {}
_SIZE_UNITS: dict[str, str | None] = {}
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _rent_unit(metric: str | None) -> PriceUnit | None:
    """Kato's rent metric as a unit; no metric means a yearly rent (UK commercial habit)."""
    if metric is None:
        return PriceUnit.PER_YEAR
    key = _NOT_ALNUM.sub("", metric.lower())
    if any(token in key for token in ("sqft", "psf", "ft2", "squarefo", "squarefe")):
        return PriceUnit.PER_SQFT
    if any(token in key for token in ("sqm", "m2", "psm", "squaremet")):
        return PriceUnit.PER_SQM
    if "desk" in key or "workstation" in key:
        return PriceUnit.PER_DESK
    if "month" in key or key in ("pcm", "pm"):
        return PriceUnit.PER_MONTH
    if any(token in key for token in ("annum", "year", "annual")) or key in ("pa", "pax"):
        return PriceUnit.PER_YEAR
    return None


_SIZE_FACTORS = {
    "sqft": 1.0,
    "sqm": SQM_TO_SQFT,
    "acres": ACRE_TO_SQFT,
    "hectares": HECTARE_TO_SQFT,
}
_SIZE_ALIASES = {
    "sqft": "sqft", "ft2": "sqft", "sqfeet": "sqft", "squarefeet": "sqft", "squarefoot": "sqft",
    "sqm": "sqm", "m2": "sqm", "squaremetres": "sqm", "squaremeters": "sqm",
    "acre": "acres", "acres": "acres", "ac": "acres",
    "hectare": "hectares", "hectares": "hectares", "ha": "hectares",
}  # fmt: skip


def _kato_size(r: FieldReader, value: Any) -> tuple[float | None, float | None]:
    block = r.mapping(value, "size")
    if block is None:
        return None, None
    low, _ = r.amount(block.get("from"), "size.from", maximum=1e9)
    high, _ = r.amount(block.get("to"), "size.to", maximum=1e9)
    low, high = low or None, high or None
    if low is None:
        low, high = high, None
    if low is None:
        return None, None
    if high is not None and high < low:
        r.fail("size", f"range runs backwards ({low:g} to {high:g})")
    metric = r.text(block.get("metric"), "size.metric")
    if metric is None:
        unit: str | None = "sqft"
    else:
        unit = _SIZE_UNITS.get(metric, _UNKNOWN)
        if unit is _UNKNOWN:
            unit = _SIZE_ALIASES.get(_NOT_ALNUM.sub("", metric.lower()))
            if len(_SIZE_UNITS) < _UNITS_KEPT:
                _SIZE_UNITS[metric] = unit
    if unit is None:
        # An unknown unit would make any figure a wrong fact; the listing itself is fine.
        return None, None
    factor = _SIZE_FACTORS[unit]
    return round(low * factor, 1), (round(high * factor, 1) if high is not None else None)


def _kato_summary(r: FieldReader, value: Any) -> str | None:
    marketing = r.mapping(value, "marketing")
    if marketing is None:
        return None
    texts = r.items(marketing.get("text"), "marketing.text")
    chosen: Any = None
    for index, item in enumerate(texts):
        block = item if type(item) is dict else r.mapping(item, f"marketing.text[{index}]")
        if block is None or block.get("content") is None:
            continue
        if chosen is None or block.get("key") == "summary":
            chosen = block.get("content")
        if block.get("key") == "summary":
            break
    if chosen is not None:
        if not isinstance(chosen, str):
            r.fail("marketing.text.content", f"expected text, got {type(chosen).__name__}")
        return r.text(html_to_text(chosen), "marketing.text.content", multiline=True)
    points = [
        r.text(point, f"marketing.key_points[{index}]")
        for index, point in enumerate(r.items(marketing.get("key_points"), "marketing.key_points"))
    ]
    return "\n".join(point for point in points if point) or None


def _kato_photo(r: FieldReader, value: Any) -> str | None:
    for index, image in enumerate(r.items(value, "images")):
        url = image.get("url") if type(image) is dict or isinstance(image, Mapping) else image
        text = r.url(url, "" if type(url) is str else f"images[{index}].url")
        if text:
            return text
    return None


def _kato_agent(r: FieldReader, value: Any) -> str | None:
    for index, person in enumerate(r.items(value, "assignees")):
        block = person if type(person) is dict else r.mapping(person, f"assignees[{index}]")
        if block is None:
            continue
        names = []
        for key in ("forename", "surname"):
            part = block.get(key)
            where = "" if part is None or type(part) is str else f"assignees[{index}].{key}"
            names.append(r.text(part, where))
        name = " ".join(part for part in names if part)
        office: Any = block.get("office")
        if type(office) is dict or isinstance(office, Mapping):
            office = office.get("name")
        where = "" if office is None or type(office) is str else f"assignees[{index}].office"
        office_name = r.text(office, where)
        if name:
            return f"{name}, {office_name}" if office_name else name
    return None
