"""The one request path every upstream client goes through.

``ApiClient.request`` owns everything the three APIs have in common: URL building, auth,
rate limiting, the per-attempt timeout, retries with full-jitter backoff, ``Retry-After``,
the mapping of HTTP statuses to :mod:`listingbot.errors`, JSON decoding and validation,
and redaction of secrets from every message and log line. The API modules only know their
endpoints and payload shapes.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import math
import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import pydantic_core
import structlog
import yarl
from multidict import CIMultiDictProxy

from listingbot.clock import Clock
from listingbot.errors import (
    NotFound,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from listingbot.ratelimit import SlidingWindowLimiter
from listingbot.redact import SECRET_PARAMS, Redactor, redact_url
from listingbot.text import cap

HINT_MAX_CHARS = 300
USER_AGENT = "listingbot/0.1 (+https://github.com/listingbot)"
DEFAULT_HEADERS: Mapping[str, str] = {"Accept": "application/json"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried.

    ``max_retry_after_s``: a server asking for a longer pause than this is not waited out
    inside the call; the call fails with ``retry_after_s`` set so the caller can reschedule.
    """

    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    default_429_wait_s: float = 60.0  # Kato says wait >= 60 s when no Retry-After
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_s, base_s * 2**(attempt - 1)))."""
        exponent = min(max(attempt - 1, 0), 62)  # beyond that the cap has long won
        return rng.uniform(0.0, min(self.max_s, self.base_s * 2.0**exponent))


DEFAULT_RETRY = RetryPolicy()


class RequestObserver(Protocol):
    """Metrics hooks; see :class:`NullObserver` for the do-nothing default."""

    def request_done(self, api: str, status: int | None, duration_s: float) -> None:
        """One attempt finished; ``status`` is None for a network error or timeout."""

    def rate_limit_wait(self, api: str, seconds: float) -> None:
        """The local limiter held a request back for ``seconds``."""

    def token_fetched(self, api: str) -> None:
        """A new access token was obtained."""

    def retry(self, api: str, reason: str) -> None:
        """An attempt failed and is being retried (reason: status code or failure kind)."""


class NullObserver:
    """Observes nothing."""

    def request_done(self, api: str, status: int | None, duration_s: float) -> None:
        pass

    def rate_limit_wait(self, api: str, seconds: float) -> None:
        pass

    def token_fetched(self, api: str) -> None:
        pass

    def retry(self, api: str, reason: str) -> None:
        pass


@dataclass
class PreparedRequest:
    """One attempt of a request, before auth is applied; :class:`Auth` may change it.

    ``credential`` is whatever the auth attached (e.g. its token object), so that after a
    401 the auth can tell whether the credential that failed is still the current one.
    """

    method: str
    url: yarl.URL
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    credential: object | None = None

    def full_url(self) -> yarl.URL:
        return self.url.extend_query(self.params) if self.params else self.url


class Auth(Protocol):
    """Adds credentials to a request; ``secrets`` lists every value to keep out of text."""

    async def apply(self, request: PreparedRequest) -> None:
        """Add the credential (a header or a query parameter)."""

    async def invalidate(self, used: PreparedRequest) -> bool:
        """After a 401: drop the credential ``used`` carried; True if a replay makes sense."""

    def secrets(self) -> Collection[str]:
        """The secret values this auth holds right now (keys, client secrets, tokens)."""


class UpstreamCause(Exception):
    """A redacted stand-in for a third-party exception, used as ``__cause__``.

    aiohttp puts full URLs into some messages (a connect timeout names the URL, query
    string and Kotohomes key included), so the original exception is never chained: a
    logged traceback would print it.
    """


@dataclass(frozen=True, slots=True)
class Undecoded:
    """A 2xx body as it arrived, not decoded: its digest was the one the caller said it
    had decoded before (``ApiClient.request(unchanged=...)``)."""

    body: bytes


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True)
class _Failure:
    kind: str  # short and fixed (a metrics label): timeout, connect, disconnect, network
    reason: str
    ambiguous: bool  # the request may have reached the server
    cause: UpstreamCause


def wire_int(value: Any) -> int | None:
    """An integer as APIs put one on the wire (a number, or its digits as a string);
    None for anything else, booleans included. Used for ids and page counters."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def body_digest(body: bytes) -> bytes:
    """A digest of an answer's body: equal digests mean byte-for-byte equal bodies."""
    return hashlib.blake2b(body, digest_size=16).digest()


def decode_json(body: bytes) -> Any:
    """A JSON body as Python values, with the values ``json.loads`` gives; raises
    ValueError (or UnicodeDecodeError) when it is not JSON.

    pydantic's parser (Rust, installed with pydantic) reads it first: a page of 50 Kato
    records in about 10 % less time than the standard library. Where both accept a body
    they give the same values; it refuses a few that the standard library reads (a lone
    surrogate escape such as ``"\\ud800"``, a byte-order mark, UTF-16), and those are read
    by the standard library, so what is accepted is unchanged too. Only keys go through
    its string cache: the cache lives as long as the process, and a cache of values would
    hold on to up to 16,384 strings of the account's records.
    """
    try:
        return pydantic_core.from_json(body, cache_strings="keys")
    except ValueError:
        return jsonlib.loads(body)


def error_hint(body: bytes) -> str:
    """The server's explanation from an error body, on one line, uncapped and unredacted.

    Understands ChatKitty (``message``, ``error_description``), Kato/Laravel (``message`` +
    ``errors {field: [..]}``) and plain-text bodies (Kotohomes).
    """
    text = body.decode("utf-8", "replace")
    try:
        doc = jsonlib.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        parts = [
            value.strip()
            for key in ("message", "error_description", "hint", "detail", "explanation")
            if isinstance(value := doc.get(key), str) and value.strip()
        ]
        if not parts and isinstance(doc.get("error"), str):
            parts.append(doc["error"])
        errors = doc.get("errors")
        if isinstance(errors, Mapping):
            for name, messages in errors.items():
                listed = messages if isinstance(messages, list) else [messages]
                parts.append(f"{name}: {'; '.join(str(m) for m in listed)}")
        elif isinstance(errors, list):
            parts.extend(str(e) for e in errors)
        if parts:
            text = "; ".join(parts)
    elif isinstance(doc, str):
        text = doc
    return " ".join(_CONTROL.sub(" ", text).split())


def new_session() -> aiohttp.ClientSession:
    """The HTTP session the clients share: each request sets its own timeout, and a
    dropped connection is retried by :meth:`ApiClient.request` only, never by aiohttp."""
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None), headers={"User-Agent": USER_AGENT}
    )
    # aiohttp silently re-sends an idempotent request once when a kept-alive connection
    # drops. That hidden retry bypasses the Kato limiter (Kato then sees more than
    # requests_per_minute) and our own retry policy. aiohttp 3.14 still has no public
    # switch (its maintainers chose a private attribute, aio-libs/aiohttp#9141, and left
    # #10790 asking for a public one closed), so this is the one place listingbot touches
    # it; tests/clients/test_base.py fails when aiohttp renames it or stops retrying.
    session._retry_connection = False
    return session


class ApiClient:
    """Sends requests to one API and turns every outcome into a value or a listingbot error.

    ``secret_params`` are query parameters whose values are masked wherever a URL is shown
    (on top of :data:`listingbot.redact.SECRET_PARAMS`); ``secrets`` are extra values to
    remove from any text besides those the auth reports.
    """

    def __init__(
        self,
        *,
        api: str,
        base_url: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        auth: Auth | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout_s: float = 30.0,
        limiter: SlidingWindowLimiter | None = None,
        observer: RequestObserver | None = None,
        secret_params: Collection[str] = (),
        secrets: Collection[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._clock = clock
        self._auth = auth
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._limiter = limiter
        self._observer: RequestObserver = observer or NullObserver()
        self._secret_params = SECRET_PARAMS | {p.lower() for p in secret_params}
        self._secrets = tuple(secrets)
        self._redactor = Redactor(self._secrets)
        self._redactor_for: tuple[str, ...] = self._secrets
        # Jitter only spreads retries out; it needs no cryptographic quality.
        self._rng = rng or random.Random()  # noqa: S311

    def __repr__(self) -> str:
        return f"ApiClient(api={self.api!r}, base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        """``text`` without any secret this client knows of (the auth's as they are now:
        a new token is masked from the first request that carries it)."""
        secrets = self._secrets if self._auth is None else (*self._secrets, *self._auth.secrets())
        if secrets != self._redactor_for:
            # Built again only when the secrets change (a new token), not per request.
            self._redactor, self._redactor_for = Redactor(secrets), secrets
        return self._redactor.redact(text)

    def shown_url(self, url: yarl.URL | str) -> str:
        """A URL as it may appear in logs and errors."""
        return self.redact(redact_url(url, self._secret_params))

    def url(self, path_or_url: str) -> yarl.URL:
        """Absolute URLs (HAL links) as given; anything else relative to ``base_url``."""
        if path_or_url.startswith(("http://", "https://")):
            return yarl.URL(path_or_url)
        return yarl.URL(self.base_url + "/" + path_or_url.lstrip("/"))

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        digest: bool = False,
        unchanged: bytes | None = None,
        decode: Callable[[bytes], Any] = decode_json,
    ) -> Any:
        """Send the request, retrying what is worth retrying; return the decoded JSON.

        Returns the JSON (None for an empty body); the API modules read its shape.
        Raises only :class:`listingbot.errors.UpstreamError` subclasses.
        ``retry=False`` makes one attempt (plus the single replay after a 401), for calls
        that must not be repeated blindly. ``digest=True`` returns ``(json, digest)``, the
        digest (``body_digest``) of the body as it arrived: equal digests, equal answers.
        With ``digest=True``, a body whose digest is ``unchanged`` (one the caller decoded
        before) is not decoded again: it comes back as ``(Undecoded(body), digest)``.
        ``decode`` reads a 2xx body (raising ValueError when it is not JSON): an API module
        that reads its answers in its own way (``clients.kato.decode_page``) says how.
        """
        method = method.upper()
        url = self.url(path_or_url)
        max_attempts = self._retry.max_attempts if retry else 1
        attempt = 0
        replayed_401 = False
        last_429_s: float | None = None
        while True:
            attempt += 1
            prepared = PreparedRequest(
                method, url, list(params), {**DEFAULT_HEADERS, **(headers or {})}
            )
            if self._auth is not None:
                await self._auth.apply(prepared)
            shown = f"{method} {self.shown_url(prepared.full_url())}"
            if self._limiter is not None:
                waited = await self._limiter.acquire()
                if waited > 0:
                    self._observer.rate_limit_wait(self.api, waited)
            outcome = await self._send(prepared, json=json, data=data)

            if isinstance(outcome, _Failure):
                if attempt >= max_attempts:
                    raise UpstreamUnavailable(
                        self.api,
                        f"{shown}: {outcome.reason} (attempt {attempt} of {max_attempts})",
                        retry_after_s=last_429_s,
                        ambiguous=outcome.ambiguous,
                    ) from outcome.cause
                wait = self._retry.backoff_s(attempt, self._rng)
                await self._pause(
                    shown,
                    status=None,
                    attempt=attempt,
                    wait_s=wait,
                    kind=outcome.kind,
                    reason=outcome.reason,
                )
                continue

            status = outcome.status
            if 200 <= status < 300:
                if not digest:
                    return self._decode(shown, outcome, decode)
                mark = body_digest(outcome.body)
                if unchanged is not None and mark == unchanged:
                    return Undecoded(outcome.body), mark
                return self._decode(shown, outcome, decode), mark
            hint = cap(
                self.redact(error_hint(outcome.body)), HINT_MAX_CHARS, word_share=None, trim=None
            )
            message = f"{shown} -> HTTP {status}" + (f": {hint}" if hint else "")

            if status == 401 and self._auth is not None and not replayed_401:
                replayed_401 = True
                if await self._auth.invalidate(prepared):
                    self._observer.retry(self.api, "401")
                    structlog.get_logger(__name__).info(
                        "upstream_token_rejected", api=self.api, url=shown
                    )
                    attempt -= 1  # the replay with a fresh credential is not a retry
                    continue
            if status in (401, 403):
                raise UpstreamAuthError(self.api, message, status=status)
            if status == 429 or status >= 500:
                server_wait = parse_retry_after(
                    outcome.headers.get("Retry-After"), self._clock.now()
                )
                if status == 429:
                    wait = self._retry.default_429_wait_s if server_wait is None else server_wait
                    last_429_s = wait
                    if self._limiter is not None:
                        # Every other caller sharing the limiter must hold off too.
                        self._limiter.penalize(wait)
                else:
                    wait = max(self._retry.backoff_s(attempt, self._rng), server_wait or 0.0)
                if attempt >= max_attempts or wait > self._retry.max_retry_after_s:
                    raise UpstreamUnavailable(
                        self.api,
                        f"{message} (attempt {attempt} of {max_attempts})",
                        status=status,
                        retry_after_s=server_wait if server_wait is not None else last_429_s,
                        # A 5xx may come after the server acted (stored the message, say).
                        ambiguous=status >= 500,
                    )
                await self._pause(
                    shown,
                    status=status,
                    attempt=attempt,
                    wait_s=wait,
                    kind=str(status),
                    reason=f"HTTP {status}",
                )
                continue
            if status == 404:
                raise NotFound(self.api, message, status=status, hint=hint)
            if 400 <= status < 500:
                raise UpstreamRejected(self.api, message, status=status, hint=hint)
            raise UpstreamUnavailable(self.api, f"{message} (unexpected status)", status=status)

    async def _pause(
        self,
        shown: str,
        *,
        status: int | None,
        attempt: int,
        wait_s: float,
        kind: str,
        reason: str,
    ) -> None:
        self._observer.retry(self.api, kind)
        if status == 429:
            # Waiting out the server's rate limit is rate-limit time, like our own limiter's.
            self._observer.rate_limit_wait(self.api, wait_s)
        structlog.get_logger(__name__).warning(
            "upstream_retry",
            api=self.api,
            status=status,
            reason=reason,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            url=shown,
        )
        await self._clock.sleep(wait_s)

    async def _send(
        self, prepared: PreparedRequest, *, json: Any, data: Mapping[str, str] | None
    ) -> _Reply | _Failure:
        started = self._clock.monotonic()
        status: int | None = None
        failure: tuple[str, str, bool, BaseException] | None = None
        try:
            async with self._session.request(
                prepared.method,
                prepared.full_url(),
                headers=prepared.headers,
                json=json,
                data=dict(data) if data is not None else None,
                timeout=self._timeout,
            ) as response:
                body = await response.read()
                status = response.status
                return _Reply(response.status, response.headers, body)
        except aiohttp.ConnectionTimeoutError as err:
            failure = ("connect", "connection timed out", False, err)
        except TimeoutError as err:
            failure = ("timeout", f"no complete answer within {self._timeout_s:g} s", True, err)
        except aiohttp.ClientConnectorError as err:
            failure = ("connect", "cannot connect", False, err)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as err:
            failure = ("disconnect", "connection dropped before a complete answer", True, err)
        except aiohttp.ClientError as err:
            failure = ("network", f"connection error ({type(err).__name__})", True, err)
        finally:
            self._observer.request_done(
                self.api, status, max(0.0, self._clock.monotonic() - started)
            )
        # Built outside the except blocks so that no aiohttp exception rides along as context.
        assert failure is not None
        kind, reason, ambiguous, original = failure
        name = type(original).__name__
        detail = self.redact(redact_url(str(original), self._secret_params))
        cause = UpstreamCause(f"{name}: {detail}" if detail else name)
        return _Failure(kind, reason, ambiguous, cause)

    def _decode(self, shown: str, reply: _Reply, decode: Callable[[bytes], Any]) -> Any:
        if not reply.body.strip():
            return None
        try:
            return decode(reply.body)
        except (ValueError, UnicodeDecodeError) as err:
            # Typically a proxy's HTML error page. The server did answer 2xx, so a
            # non-idempotent call may have taken effect: ambiguous.
            raise UpstreamUnavailable(
                self.api,
                f"{shown} -> HTTP {reply.status} with a body that is not JSON",
                status=reply.status,
                ambiguous=True,
            ) from err
