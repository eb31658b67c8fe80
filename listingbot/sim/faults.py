"""Faults the simulators inject on demand: throttling, server errors, resets, timeouts,
early token expiry, ambiguous sends, late stores and hostile records.

One ``Faults`` object is shared by the three simulators and can be switched at run time.
Request-level faults are decided by a seeded RNG (reproducible for a sequential client).
Record-level corruption is decided by a hash of the record's id, not by the RNG: the same
records are corrupted in every response, so a test can count and name them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from listingbot.sim._http import JsonDict, copy_record, current_note, drop_connection, json_response

RATE_KEYS: tuple[str, ...] = (
    "rate_429",
    "rate_500",
    "rate_503",
    "rate_reset",
    "rate_timeout",
    "rate_slow",
    "rate_token_expiry",
    "rate_commit_then_fail",
    "rate_malformed",
    "rate_store_late",
)
FAULT_NAMES: tuple[str, ...] = tuple(key.removeprefix("rate_") for key in RATE_KEYS)
SIMS: frozenset[str] = frozenset({"kotohomes", "kato", "chatkitty"})

DEFAULT_TIMEOUT_HOLD_S = 5.0
DEFAULT_SLOW_S = 0.05
DEFAULT_STORE_LATE_S = 5.0
DEFAULT_RETRY_AFTER_S = 1

# Corruptions a client must reject (skip the record: nothing identifies it), ones whose
# bad fields it must leave out while keeping the listing, and ones it must survive and
# sanitize (post the listing with safe text).
REJECTABLE_VARIANTS: frozenset[str] = frozenset({"missing_id"})
FIELD_DROPPING_VARIANTS: frozenset[str] = frozenset(
    {"wrong_types", "negative_price", "absurd_price", "invalid_dates"}
)
SURVIVABLE_VARIANTS: frozenset[str] = frozenset(
    {"null_fields", "huge_description", "bad_surrogates", "mentions", "control_chars"}
)
VARIANTS: tuple[str, ...] = (
    "missing_id",
    "null_fields",
    "wrong_types",
    "negative_price",
    "absurd_price",
    "invalid_dates",
    "huge_description",
    "bad_surrogates",
    "mentions",
    "control_chars",
)

HUGE_TEXT_CHARS = 100_000
MENTIONS = "<@here> <#general> <@channel>"
CONTROL_TEXT = "Bright\x00 and\x07 airy\x1b[31m red\x1b[0m\r\x0b\x0c\x7f end"
SURROGATE_TEXT = "Sunny loft \ud800 with views \udfff of the park"


class Faults:
    """Switchable fault injection shared by the simulators.

    Rates are probabilities per request (``rate_malformed``: share of records). The
    failure modes 429/500/503/reset/timeout/store_late exclude each other; ``slow`` and
    ``token_expiry`` combine with them. ``store_late`` models an overloaded server: the
    request is handled (a message stored) only ``store_late_s`` after it arrived, when a
    client with a shorter timeout has long given up; :meth:`settle` waits for those.
    ``counts`` says how many of each were injected; ``corrupted`` maps ``(source,
    listing id)`` to the corruption served for it.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.rates: dict[str, float] = dict.fromkeys(RATE_KEYS, 0.0)
        self.timeout_hold_s = DEFAULT_TIMEOUT_HOLD_S
        self.slow_s = DEFAULT_SLOW_S
        self.store_late_s = DEFAULT_STORE_LATE_S
        self.retry_after_s = DEFAULT_RETRY_AFTER_S  # what a 429 with Retry-After asks for
        self.counts: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        self._late: set[asyncio.Event] = set()
        self.enabled_for: set[str] = set(SIMS)
        self.corrupted: dict[tuple[str, str], str] = {}
        # hold(): requests to the enabled simulators wait here until release(); ``held``
        # counts the requests waiting, so a test can act while a client is mid-request.
        self._gate: asyncio.Event | None = None
        self.held = 0

    def hold(self) -> None:
        """From now on, requests to the enabled simulators wait until ``release()``."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let every held request (and every later one) through."""
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def set(self, **rates: float) -> None:
        """Change some rates (``rate_500=0.2``), the hold times (``timeout_hold_s``,
        ``slow_s``, ``store_late_s``) or a 429's ``retry_after_s``; 0 disables a fault.
        Unknown names raise ``ValueError``."""
        for name, value in rates.items():
            number = float(value)
            if name in ("timeout_hold_s", "slow_s", "store_late_s", "retry_after_s"):
                if number < 0:
                    raise ValueError(f"{name} must be >= 0, got {value!r}")
                setattr(self, name, number)
            elif name in self.rates:
                if not 0.0 <= number <= 1.0:
                    raise ValueError(f"{name} must be within 0..1, got {value!r}")
                self.rates[name] = number
            else:
                known = ", ".join(
                    (*RATE_KEYS, "timeout_hold_s", "slow_s", "store_late_s", "retry_after_s")
                )
                raise ValueError(f"unknown fault {name!r}; known: {known}")

    def clear(self) -> None:
        """Disable every fault and restore the default hold times (counts are kept)."""
        self.rates = dict.fromkeys(RATE_KEYS, 0.0)
        self.timeout_hold_s = DEFAULT_TIMEOUT_HOLD_S
        self.slow_s = DEFAULT_SLOW_S
        self.store_late_s = DEFAULT_STORE_LATE_S
        self.retry_after_s = DEFAULT_RETRY_AFTER_S

    async def settle(self) -> None:
        """Wait until every request held by ``store_late`` has been handled."""
        while self._late:
            await next(iter(self._late)).wait()

    def rate(self, sim: str, name: str) -> float:
        """The rate of fault ``name`` (``"rate_500"``) as it applies to simulator ``sim``."""
        return self.rates[name] if sim in self.enabled_for else 0.0

    def _roll(self, sim: str, name: str) -> bool:
        rate = self.rate(sim, name)
        return rate > 0.0 and self._rng.random() < rate

    def _count(self, name: str) -> None:
        self.counts[name] += 1
        note = current_note()
        note.fault = name if note.fault is None else f"{note.fault}+{name}"

    def _pick_failure(self, sim: str) -> str | None:
        """One of 429/500/503/reset/timeout/store_late, or None, at the configured rates."""
        names = (
            "rate_429",
            "rate_500",
            "rate_503",
            "rate_reset",
            "rate_timeout",
            "rate_store_late",
        )
        rates = [self.rate(sim, name) for name in names]
        if not any(rates):
            return None
        draw = self._rng.random()
        for name, rate in zip(names, rates, strict=True):
            if draw < rate:
                return name.removeprefix("rate_")
            draw -= rate
        return None

    def serve_records(
        self, sim: str, source: str, records: Iterable[JsonDict], *, base_rate: float = 0.0
    ) -> list[JsonDict]:
        """The records as served: a stable share replaced by corrupted versions.

        The share is the larger of ``base_rate`` (the market's own ``hostile_rate``) and
        ``rate_malformed``. Untouched records are returned as they are (not copied).
        """
        rate = max(base_rate, self.rate(sim, "rate_malformed"))
        if rate <= 0.0:
            return list(records)
        served: list[JsonDict] = []
        corrupted_here = 0
        for record in records:
            listing_id = str(record.get("id"))
            variant = hostile_variant(source, listing_id, rate)
            if variant is None:
                served.append(record)
                continue
            served.append(make_hostile(source, record, variant))
            corrupted_here += 1
            self.corrupted[(source, listing_id)] = variant
        if corrupted_here:
            self.counts["malformed"] += corrupted_here
            note = current_note()
            note.fault = "malformed" if note.fault is None else f"{note.fault}+malformed"
        return served

    def middleware(self, target: FaultTarget) -> Middleware:
        """The aiohttp middleware that applies request-level faults to one simulator."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            sim = target.name
            if sim not in self.enabled_for:
                return await handler(request)
            gate = self._gate
            if gate is not None:
                self.held += 1
                try:
                    await gate.wait()
                finally:
                    self.held -= 1
            if (
                target.expire_token is not None
                and request.path not in target.token_paths
                and self._roll(sim, "rate_token_expiry")
            ):
                token = bearer_token(request)
                if token is not None:
                    # Really expire it: a client that replays the same token fails again.
                    target.expire_token(token)
                    self._count("token_expiry")
            failure = self._pick_failure(sim)
            if failure in ("429", "500", "503"):
                self._count(failure)
                status = int(failure)
                headers: dict[str, str] = {}
                # Half the 429s say when to come back, half leave the client to guess.
                if status == 429 and self._rng.random() < 0.5:
                    headers["Retry-After"] = f"{self.retry_after_s:g}"
                return json_response(target.error_body(status), status=status, headers=headers)
            if failure == "reset":
                self._count("reset")
                return drop_connection(request)
            if self._roll(sim, "rate_slow"):
                self._count("slow")
                await asyncio.sleep(self.slow_s)
            if failure == "store_late":
                # Received now, handled later: by then the client has timed out and gone,
                # and the message is stored all the same (aiohttp does not cancel a handler
                # whose client went away).
                self._count("store_late")
                done = asyncio.Event()
                self._late.add(done)
                try:
                    await request.read()
                    await asyncio.sleep(self.store_late_s)
                    return await handler(request)
                finally:
                    self._late.discard(done)
                    done.set()
            response = await handler(request)
            if failure == "timeout":
                # Handled first, answered late: for a send the effect has happened by the
                # time the client gives up, which is the ambiguous case it must survive.
                self._count("timeout")
                await asyncio.sleep(self.timeout_hold_s)
            note = current_note()
            if (
                note.commit_point
                and response.status == 200
                and self._roll(sim, "rate_commit_then_fail")
            ):
                self._count("commit_then_fail")
                if self._rng.random() < 0.5:
                    return drop_connection(request)
                return json_response(target.error_body(500), status=500)
            return response

        return middleware


@dataclass(frozen=True)
class FaultTarget:
    """How one simulator wants its faults expressed."""

    name: str
    error_body: Callable[[int], JsonDict]  # the API's own error body for 429/500/503
    expire_token: Callable[[str], None] | None = None  # None: the API has no bearer tokens
    token_paths: frozenset[str] = field(default_factory=frozenset)


def bearer_token(request: web.Request) -> str | None:
    """The bearer token a request presents, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _digest(source: str, listing_id: str) -> bytes:
    return hashlib.sha256(f"{source}:{listing_id}".encode()).digest()


def hostile_variant(source: str, listing_id: str, rate: float) -> str | None:
    """The corruption served for this record at this rate, or None. Stable per id, and a
    record corrupted at some rate is corrupted (the same way) at every higher rate."""
    digest = _digest(source, listing_id)
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction >= rate:
        return None
    return VARIANTS[int.from_bytes(digest[8:12], "big") % len(VARIANTS)]


def make_hostile(source: str, record: JsonDict, variant: str) -> JsonDict:
    """A corrupted copy of ``record`` (a Kotohomes or Kato record) of the given kind."""
    if source == "kotohomes":
        return _hostile_kotohomes(copy_record(record), variant)
    return _hostile_kato(copy_record(record), variant)


def _huge(seed_text: str) -> str:
    sentence = seed_text.strip() + " "
    return (sentence * (HUGE_TEXT_CHARS // max(1, len(sentence)) + 1))[:HUGE_TEXT_CHARS]


def _hostile_kotohomes(r: JsonDict, variant: str) -> JsonDict:
    price = r.get("price") if isinstance(r.get("price"), int | float) else 500_000
    if variant == "missing_id":
        r.pop("id", None)
    elif variant == "null_fields":
        for key in (
            "price",
            "city",
            "state",
            "zip_code",
            "bedrooms",
            "bathrooms",
            "description",
            "street_address",
            "agent",
            "photo_url",
        ):
            r[key] = None
    elif variant == "wrong_types":
        r["bedrooms"] = "three"
        r["bathrooms"] = [2]
        r["latitude"] = "40.7N"
        r["price"] = {"amount": price}
    elif variant == "negative_price":
        r["price"] = -abs(int(price or 1))
    elif variant == "absurd_price":
        r["price"] = 10**13
    elif variant == "invalid_dates":
        r["created_at"] = "2021-02-30T25:61:00Z"
        r["updated_at"] = "yesterday"
    elif variant == "huge_description":
        r["description"] = _huge(str(r.get("description") or "Lovely home."))
    elif variant == "bad_surrogates":
        r["description"] = SURROGATE_TEXT
        r["city"] = f"{r.get('city') or 'Springfield'}\udc00"
    elif variant == "mentions":
        r["description"] = f"{MENTIONS} Call now! {r.get('description') or ''}"
        r["street_address"] = f"<@here> {r.get('street_address') or '1 Main St'}"
    elif variant == "control_chars":
        r["description"] = CONTROL_TEXT
        r["city"] = f"{r.get('city') or 'Springfield'}\x08\x00"
    return r


def _hostile_kato(r: JsonDict, variant: str) -> JsonDict:
    if variant == "missing_id":
        r.pop("id", None)
    elif variant == "null_fields":
        for key in ("address", "position", "status", "rent", "price", "size", "marketing"):
            r[key] = None
    elif variant == "wrong_types":
        r["size"] = {"from": "large", "to": None, "metric": "sqft"}
        r["position"] = {"lat": "north", "lng": None}
        r["to_let"] = "maybe"
        r["property_types"] = "office"
    elif variant == "negative_price":
        r["to_let"] = True
        r["rent"] = {
            "from": -12.5,
            "to": None,
            "metric": "sqft",
            "currency": "GBP",
            "rent_on_application": False,
        }
    elif variant == "absurd_price":
        r["for_sale"] = True
        r["price"] = {
            "value": 1e13,
            "currency": "GBP",
            "price_on_application": False,
            "qualifier": None,
        }
    elif variant == "invalid_dates":
        r["created_at"] = "31/02/2024 10:00"
        # ISO-8601 and well formed, but before year 1 once in UTC: no datetime holds it.
        r["updated_at"] = "0001-01-01T00:00:00+01:00"
    elif variant == "huge_description":
        _set_summary(r, _huge(_summary(r) or "Open plan office space."))
    elif variant == "bad_surrogates":
        _set_summary(r, SURROGATE_TEXT)
        address = r.get("address")
        if isinstance(address, dict):
            address["name"] = "Broken \ud83d House"
    elif variant == "mentions":
        _set_summary(r, f"{MENTIONS} {_summary(r) or ''}")
        address = r.get("address")
        if isinstance(address, dict):
            address["name"] = "<@here> House"
    elif variant == "control_chars":
        _set_summary(r, CONTROL_TEXT)
        address = r.get("address")
        if isinstance(address, dict):
            address["line1"] = f"{address.get('line1') or '1 King St'}\x1b[2J\x00"
    return r


def _summary(r: JsonDict) -> str | None:
    marketing = r.get("marketing")
    if not isinstance(marketing, dict):
        return None
    for text in marketing.get("text") or []:
        if isinstance(text, dict) and text.get("key") == "summary":
            content = text.get("content")
            return content if isinstance(content, str) else None
    return None


def _set_summary(r: JsonDict, content: str) -> None:
    marketing = r.get("marketing")
    if not isinstance(marketing, dict):
        marketing = {"text": [], "key_points": []}
        r["marketing"] = marketing
    texts = marketing.setdefault("text", [])
    for text in texts:
        if isinstance(text, dict) and text.get("key") == "summary":
            text["content"] = content
            return
    texts.insert(0, {"key": "summary", "heading": "Summary", "content": content})
