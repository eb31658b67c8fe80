"""Kato Client API simulator: OAuth client credentials, paginated availability, and the
60-requests-per-minute limit.

``POST /oauth/token`` (form body) issues bearer tokens that expire;
``GET /v1/availability`` and ``GET /v2/availability`` serve the market's UK records a page
at a time. v2 puts the pagination block under ``meta.pagination``, v1 at the top level
(the seed's wording), so a client must read both. The pagination links leave out the
filters, as the documentation warns. Every request, token requests included, counts
against one sliding 60-second window; beyond it the answer is 429 with ``Retry-After``.

Two modes. ``"current"`` (the default) serves records the way the PHP/Laravel API does,
as the maintained importer reads it: a stable share of records (``php_share``, by id)
comes with ``[]`` for an empty object, ``0``/``1`` booleans, money as text with symbols
and suffixes (``"£45.00 psf"``), other spellings of the rent metric and ``status`` as an
object. ``"seed"`` serves every record in the clean shape. Both allow at most 50 records
a page (the seed's changelog) and, like Laravel, keep only the last of repeated
``status=`` names.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from listingbot.clock import Clock, SystemClock
from listingbot.sim._http import (
    JsonDict,
    RequestLog,
    base_url,
    copy_record,
    json_errors_middleware,
    json_response,
    request_log_middleware,
    retry_after_s,
)
from listingbot.sim._photos import KATO_PHOTO_ORIGIN, PhotoHost, rehost_kato
from listingbot.sim._shapes import KATO_STATUSES
from listingbot.sim.faults import Faults, FaultTarget, bearer_token
from listingbot.sim.market import Market

DEFAULT_CLIENTS: Mapping[str, str] = {"test-kato-id": "test-kato-secret"}
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
WINDOW_S = 60.0
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 50
Mode = Literal["current", "seed"]
MODES: tuple[Mode, ...] = ("current", "seed")
DEFAULT_PHP_SHARE = 0.3
SORT_FIELDS = frozenset({"id", "created_at", "updated_at"})
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})
# A JWT-looking prefix, like the Passport tokens in the reference's example header.
JWT_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256"}').rstrip(b"=").decode()


@dataclass
class _Token:
    client_id: str
    expires_at: float  # clock.monotonic() seconds


def error_body(status: int, message: str | None = None) -> JsonDict:
    """Laravel's error shape: ``{"message": ...}``."""
    messages = {
        401: "Unauthenticated.",
        404: "Not Found.",
        405: "The method is not supported for this route.",
        429: "Too Many Attempts.",
        500: "Server Error",
        503: "Service Unavailable",
    }
    return {"message": messages.get(status, message or "Error")}


class KatoSim:
    """The Kato API over a ``Market``.

    ``tokens_issued`` counts successful token requests; ``max_requests_in_any_window``
    is the most requests (accepted or throttled) seen inside any 60 s window.
    """

    def __init__(
        self,
        market: Market,
        *,
        clients: Mapping[str, str] = DEFAULT_CLIENTS,
        token_lifetime_s: float = 14 * 86400,
        requests_per_minute: int = 60,
        clock: Clock | None = None,
        faults: Faults | None = None,
        mode: Mode = "current",
        php_share: float = DEFAULT_PHP_SHARE,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode: Mode = mode
        self.php_share = php_share if mode == "current" else 0.0
        self.market = market
        self.clients = dict(clients)
        self.token_lifetime_s = token_lifetime_s
        self.requests_per_minute = requests_per_minute
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.faults = faults if faults is not None else Faults()
        self.requests: list[RequestLog] = []
        self.tokens_issued = 0
        self.max_requests_in_any_window = 0
        self.throttled = 0  # requests answered 429 by the rate limit (not by faults)
        self._tokens: dict[str, _Token] = {}
        self._accepted: deque[float] = deque()  # times of requests let through the limit
        self._seen: deque[float] = deque()  # times of every request, for the statistic
        # The photo CDN: the records' image URLs point here (fault switches: see _photos).
        self.photos = PhotoHost(KATO_PHOTO_ORIGIN, "/media", rehost_kato)
        # A fault switch: availability pages from this number on answer 500 (a sweep that
        # fails midway, after the pages before it were served); None: off.
        self.fail_from_page: int | None = None
        # Called with the page number and the statuses asked for, before a page is served:
        # a test moves the account while a sweep reads it. None: off.
        self.before_page: Callable[[int, tuple[str, ...]], None] | None = None

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        for token in self._tokens.values():
            token.expires_at = -math.inf

    def _expire_token(self, token: str) -> None:
        if token in self._tokens:
            self._tokens[token].expires_at = -math.inf

    def app(self) -> web.Application:
        target = FaultTarget(
            name="kato",
            error_body=error_body,
            expire_token=self._expire_token,
            token_paths=frozenset({TOKEN_PATH}),
        )
        app = web.Application(
            middlewares=[
                request_log_middleware(self.requests),
                self._rate_limit_middleware(),
                self.faults.middleware(target),
                json_errors_middleware(error_body),
            ]
        )
        app.router.add_post(TOKEN_PATH, self._token)
        for version in ("v1", "v2"):
            app.router.add_get(f"/{version}/availability", self._list)
            app.router.add_get(f"/{version}/availability/{{id}}", self._show)
        self.photos.add_routes(app)
        return app

    # ----------------------------------------------------------------- rate limit

    def _rate_limit_middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.photos.owns(request.path):
                return await handler(request)  # the CDN, not the API: no budget
            now = self.clock.monotonic()
            self._note_seen(now)
            while self._accepted and now - self._accepted[0] >= WINDOW_S:
                self._accepted.popleft()
            limit = self.requests_per_minute
            if len(self._accepted) >= limit:
                self.throttled += 1
                wait = self._accepted[0] + WINDOW_S - now
                return json_response(
                    error_body(429),
                    status=429,
                    headers={
                        "Retry-After": retry_after_s(wait),
                        "X-RateLimit-Limit": str(limit),
                        "X-RateLimit-Remaining": "0",
                    },
                )
            self._accepted.append(now)
            response = await handler(request)
            if not response.prepared:
                response.headers["X-RateLimit-Limit"] = str(limit)
                response.headers["X-RateLimit-Remaining"] = str(max(0, limit - len(self._accepted)))
            return response

        return middleware

    def _note_seen(self, now: float) -> None:
        self._seen.append(now)
        while now - self._seen[0] >= WINDOW_S:
            self._seen.popleft()
        self.max_requests_in_any_window = max(self.max_requests_in_any_window, len(self._seen))

    # ----------------------------------------------------------------- auth

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type not in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            # The reference says the id and secret go in a form body; a JSON body is
            # not read, so the client is unknown.
            return _invalid_client()
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            return json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported "
                    "by the authorization server.",
                    "hint": "Check that all required parameters have been provided",
                    "message": "The authorization grant type is not supported by the "
                    "authorization server.",
                },
                status=400,
            )
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if (
            not isinstance(client_id, str)
            or not isinstance(client_secret, str)
            or client_id not in self.clients
            or not secrets.compare_digest(self.clients[client_id].encode(), client_secret.encode())
        ):
            return _invalid_client()
        token = f"{JWT_HEADER}.{secrets.token_urlsafe(48)}.{secrets.token_urlsafe(32)}"
        self._tokens[token] = _Token(client_id, self.clock.monotonic() + self.token_lifetime_s)
        self.tokens_issued += 1
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": int(self.token_lifetime_s),
                "access_token": token,
            }
        )

    def _authenticated(self, request: web.Request) -> bool:
        token = bearer_token(request)
        if token is None or token not in self._tokens:
            return False
        return self.clock.monotonic() < self._tokens[token].expires_at

    # ----------------------------------------------------------------- availability

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return json_response(error_body(401), status=401)
        errors: dict[str, list[str]] = {}
        query = request.query
        limit = _positive_int(query.get("limit"), "limit", DEFAULT_PAGE_SIZE, errors)
        if limit > MAX_PAGE_SIZE:
            errors.setdefault("limit", []).append(
                f"The limit field must not be greater than {MAX_PAGE_SIZE}."
            )
        page = _positive_int(query.get("page"), "page", 1, errors)
        if self.fail_from_page is not None and page >= self.fail_from_page:
            return json_response(error_body(500), status=500)
        # PHP keeps the last of repeated plain names; status[]= is read as a list.
        plain = query.getall("status", [])[-1:]
        statuses = _statuses(plain + query.getall("status[]", []), errors)
        published = _boolean(query.get("published_to_website"), "published_to_website", errors)
        api_controlled = _boolean(query.get("api_controlled"), "api_controlled", errors)
        sort_by = query.get("sort_by")
        if sort_by is not None and sort_by.removeprefix("-") not in SORT_FIELDS:
            errors.setdefault("sort_by", []).append("The selected sort by is invalid.")
        if errors:
            first = next(iter(errors.values()))[0]
            more = sum(len(v) for v in errors.values()) - 1
            message = first if not more else f"{first} (and {more} more errors)"
            return json_response({"message": message, "errors": errors}, status=422)

        if self.before_page is not None:
            self.before_page(page, tuple(sorted(statuses)))
        records = self.market.kato_records()
        selected = [
            r
            for r in records
            if (not statuses or r.get("status") in statuses)
            and (published is None or (r.get("published_to_website") is not None) == published)
            and (api_controlled is None or bool(r.get("api_controlled")) == api_controlled)
        ]
        if sort_by is not None:
            field = sort_by.removeprefix("-")
            selected.sort(
                key=lambda r: int(r["id"]) if field == "id" else str(r.get(field)),
                reverse=sort_by.startswith("-"),
            )
        total = len(selected)
        total_pages = max(1, math.ceil(total / limit))
        chunk = selected[(page - 1) * limit : page * limit]
        data = self.faults.serve_records(
            "kato", "kato", self._shaped(chunk), base_rate=self.market.hostile_rate
        )
        block = _pagination(
            request, page=page, limit=limit, total=total, total_pages=total_pages, count=len(chunk)
        )
        version = request.path.split("/")[1]
        data = self.photos.rehost(request, data)
        if version == "v1":
            return json_response({"data": data, "pagination": block})
        return json_response({"data": data, "meta": {"pagination": block}})

    async def _show(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return json_response(error_body(401), status=401)
        record = self.market.find("kato", request.match_info["id"])
        if record is None:
            return json_response(error_body(404), status=404)
        served = self.faults.serve_records(
            "kato", "kato", self._shaped([record]), base_rate=self.market.hostile_rate
        )
        return json_response({"data": self.photos.rehost(request, served)[0]})

    def _shaped(self, records: list[JsonDict]) -> list[JsonDict]:
        if self.php_share <= 0:
            return records
        return [
            php_shape(r, variant) if (variant := php_variant(r, self.php_share)) else r
            for r in records
        ]


def _invalid_client() -> web.Response:
    return json_response(
        {
            "error": "invalid_client",
            "error_description": "Client authentication failed",
            "message": "Client authentication failed",
        },
        status=401,
    )


def _positive_int(text: str | None, name: str, default: int, errors: dict[str, list[str]]) -> int:
    if text is None:
        return default
    try:
        number = int(text.strip())
    except ValueError:
        errors.setdefault(name, []).append(f"The {name} field must be an integer.")
        return default
    if number < 1:
        errors.setdefault(name, []).append(f"The {name} field must be at least 1.")
        return default
    return number


def _statuses(values: list[str], errors: dict[str, list[str]]) -> set[str]:
    wanted: set[str] = set()
    for value in values:
        slug = value.strip().lower()
        if slug not in KATO_STATUSES:
            errors.setdefault("status", []).append("The selected status is invalid.")
            continue
        wanted.add(slug)
    return wanted


# --------------------------------------------------------------------- PHP shapes

PHP_VARIANTS: tuple[int, ...] = (0, 1, 2, 3)
_METRIC_SPELLINGS = {"sqft": ("per_sq_ft", "psf", "sq ft"), "sqm": ("per_sq_m", "m2", "sq m")}
_STATUS_LABELS = {
    "available": "Available",
    "under_offer": "Under Offer",
    "coming_soon": "Coming Soon",
    "let": "Let",
    "sold": "Sold",
}


def php_variant(record: JsonDict, share: float) -> int | None:
    """Which PHP shaping a record gets at this share (None: clean), stable per id."""
    digest = hashlib.sha256(f"php:{record.get('id')}".encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 >= share:
        return None
    return PHP_VARIANTS[digest[8] % len(PHP_VARIANTS)]


def php_shape(record: JsonDict, variant: int) -> JsonDict:
    """The record as Laravel would serialize it; the same facts in another shape.

    Every variant writes booleans as 0/1 (or "1"/"0"), a missing price or rent object as
    ``[]``, money as text and ``status`` as an object; the variants differ in which
    spellings they use, so that together they cover what the importer copes with.
    """
    r = copy_record(record)
    as_text = variant % 2 == 1
    for name in ("for_sale", "to_let", "api_controlled", "fitted_space"):
        if isinstance(r.get(name), bool):
            r[name] = ("1" if r[name] else "0") if as_text else int(r[name])
    for name in ("price", "rent"):
        if r.get(name) is None:
            r[name] = []
    price = r.get("price")
    if isinstance(price, dict):
        if isinstance(price.get("price_on_application"), bool):
            price["price_on_application"] = int(price["price_on_application"])
        if _number(price.get("value")):
            price["value"] = f"£{price['value']:,.0f}" if variant < 2 else f"{price['value']:.2f}"
    rent = r.get("rent")
    if isinstance(rent, dict):
        if isinstance(rent.get("rent_on_application"), bool):
            rent["rent_on_application"] = int(rent["rent_on_application"])
        metric = rent.get("metric")
        suffix = {"sqft": " psf", "sqm": " psm"}.get(str(metric), "")
        for end in ("from", "to"):
            if _number(rent.get(end)):
                rent[end] = f"£{rent[end]:,.2f}{suffix}" if variant < 2 else f"{rent[end]:.2f}"
        if metric in _METRIC_SPELLINGS:
            rent["metric"] = _METRIC_SPELLINGS[metric][variant % 3]
    status = r.get("status")
    if isinstance(status, str):
        label = _STATUS_LABELS.get(status, status)
        shapes: list[Any] = [
            {"key": status, "name": label},
            {
                "id": KATO_STATUSES.index(status) + 1 if status in KATO_STATUSES else 0,
                "value": status,
                "label": label,
            },
            {"label": label},
            {"slug": status, "colour": "#2a7"},
        ]
        r["status"] = shapes[variant]
    return r


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boolean(text: str | None, name: str, errors: dict[str, list[str]]) -> bool | None:
    if text is None:
        return None
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    label = name.replace("_", " ")
    errors.setdefault(name, []).append(f"The {label} field must be true or false.")
    return None


def _pagination(
    request: web.Request, *, page: int, limit: int, total: int, total_pages: int, count: int
) -> JsonDict:
    # Deliberately only `page` in the links: the documentation tells clients to add
    # their own filters (and limit) back, and a client that trusts the links must fail.
    path = f"{base_url(request)}{request.path}"

    def link(number: int | None) -> str | None:
        if number is None or number < 1 or number > total_pages:
            return None
        return f"{path}?page={number}"

    first_item = (page - 1) * limit + 1
    return {
        "from": first_item if count else None,
        "to": first_item + count - 1 if count else None,
        "total": total,
        "count": count,
        "per_page": limit,
        "current_page": page,
        "total_pages": total_pages,
        "links": {
            "first": link(1),
            "previous": link(page - 1) if page > 1 else None,
            "fastback": link(page - 10),
            "next": link(page + 1),
            "fastforward": link(page + 10),
            "last": link(total_pages),
        },
    }
