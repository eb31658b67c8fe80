"""ApiClient.request: retries, Retry-After, status mapping, decoding, redaction."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from listingbot.clients.auth import ApiKeyAuth
from listingbot.clients.base import (
    ApiClient,
    RetryPolicy,
    decode_json,
    error_hint,
    new_session,
    parse_retry_after,
    wire_int,
)
from listingbot.clock import FakeClock
from listingbot.errors import (
    NotFound,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from listingbot.ratelimit import SlidingWindowLimiter
from listingbot.sim.kato import php_shape, php_variant
from listingbot.sim.market import Market
from tests.clients.conftest import FakeServer, RecordingObserver, Reply, refused_url

SECRET = "s3cret-key-value"


def make_client(
    server_url: str,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    **kwargs: object,
) -> ApiClient:
    options: dict[str, object] = {"rng": random.Random(7), "timeout_s": 5.0}
    options.update(kwargs)
    return ApiClient(
        api="demo",
        base_url=server_url,
        session=session,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


async def test_a_500_is_retried_and_the_later_success_returned(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """5xx then 200: the caller gets the 200's JSON after one backoff sleep."""
    server.script("GET", "/things", Reply(500), Reply(json={"ok": True}))
    client = make_client(server.url, session, clock)
    assert await client.request("GET", "/things") == {"ok": True}
    assert len(server.seen("GET", "/things")) == 2
    assert len(clock.sleeps) == 1
    assert 0.0 <= clock.sleeps[0] <= 0.5


async def test_retry_after_seconds_on_429_is_waited_out(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """429 with Retry-After: 7 sleeps exactly 7 s on the injected clock, then retries."""
    server.script("GET", "/x", Reply(429, headers={"Retry-After": "7"}), Reply(json=[1]))
    assert await make_client(server.url, session, clock).request("GET", "/x") == [1]
    assert clock.sleeps == [7.0]


async def test_retry_after_http_date_on_429_is_waited_out(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A Retry-After HTTP-date is turned into seconds from the clock's now."""
    when = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    server.script("GET", "/x", Reply(429, headers={"Retry-After": when}), Reply(json=[1]))
    await make_client(server.url, session, clock).request("GET", "/x")
    assert clock.sleeps == [30.0]


async def test_429_without_retry_after_waits_the_default(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """No Retry-After: wait default_429_wait_s (Kato asks for at least 60 s)."""
    server.script("GET", "/x", Reply(429), Reply(json=[1]))
    await make_client(server.url, session, clock).request("GET", "/x")
    assert clock.sleeps == [60.0]


async def test_a_429_penalizes_the_shared_limiter(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Every other user of the limiter is held back for the Retry-After too."""
    limiter = SlidingWindowLimiter(100, 60.0, clock)
    server.script("GET", "/x", Reply(429, headers={"Retry-After": "9"}))
    client = make_client(
        server.url, session, clock, limiter=limiter, retry=RetryPolicy(max_attempts=1)
    )
    with pytest.raises(UpstreamUnavailable):
        await client.request("GET", "/x")
    assert await limiter.acquire() == pytest.approx(9.0)


async def test_a_retry_after_beyond_the_policy_limit_fails_instead_of_sleeping(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A server asking for an hour is not waited out inside the call."""
    server.script("GET", "/x", Reply(429, headers={"Retry-After": "3600"}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make_client(server.url, session, clock).request("GET", "/x")
    assert caught.value.retry_after_s == 3600.0
    assert clock.sleeps == []


async def test_exhausted_retries_raise_unavailable_with_the_last_status(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """After max_attempts 5xx answers: UpstreamUnavailable, status set, one request each."""
    server.script("GET", "/x", Reply(503, json={"message": "down"}))
    client = make_client(server.url, session, clock, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/x")
    assert caught.value.status == 503
    assert len(server.seen("GET", "/x")) == 3
    assert len(clock.sleeps) == 2


async def test_exhausted_429s_carry_the_last_retry_after(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """When every attempt is a 429, the error says how long the server wants us to wait."""
    server.script("GET", "/x", Reply(429, headers={"Retry-After": "4"}))
    client = make_client(server.url, session, clock, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/x")
    assert caught.value.retry_after_s == 4.0
    assert not caught.value.ambiguous


async def test_retry_false_makes_a_single_attempt(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """retry=False: a 500 is reported at once, ambiguous (the server may have acted)."""
    server.script("POST", "/x", Reply(500))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make_client(server.url, session, clock).request("POST", "/x", json={}, retry=False)
    assert len(server.seen("POST", "/x")) == 1
    assert caught.value.ambiguous
    assert clock.sleeps == []


async def test_a_timeout_is_retried_then_reported_as_ambiguous(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A request that gets no answer in time is retried; the final error is ambiguous."""
    server.script("GET", "/slow", Reply(hang=True))
    client = make_client(
        server.url, session, clock, timeout_s=0.05, retry=RetryPolicy(max_attempts=2)
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/slow")
    assert caught.value.ambiguous
    assert caught.value.status is None
    assert len(server.seen("GET", "/slow")) == 2


async def test_a_dropped_connection_is_ambiguous(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The server closing the socket after receiving the request: maybe it acted."""
    server.script("POST", "/x", Reply(drop=True))
    with pytest.raises(UpstreamUnavailable) as caught:
        await make_client(server.url, session, clock).request("POST", "/x", json={}, retry=False)
    assert caught.value.ambiguous


async def test_a_refused_connection_is_not_ambiguous(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Nothing listening: the request cannot have reached a server."""
    client = make_client(refused_url(), session, clock, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/x")
    assert not caught.value.ambiguous
    assert len(clock.sleeps) == 1


async def test_403_is_an_auth_error(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """403 is not retried: UpstreamAuthError with the status."""
    server.script("GET", "/x", Reply(403, json={"error": "access_denied"}))
    with pytest.raises(UpstreamAuthError) as caught:
        await make_client(server.url, session, clock).request("GET", "/x")
    assert caught.value.status == 403
    assert len(server.requests) == 1


async def test_401_without_refreshable_auth_is_an_auth_error(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An API key cannot be refreshed, so a 401 is final after one request."""
    server.script("GET", "/x", Reply(401))
    client = make_client(server.url, session, clock, auth=ApiKeyAuth("key", SecretStr(SECRET)))
    with pytest.raises(UpstreamAuthError):
        await client.request("GET", "/x")
    assert len(server.requests) == 1


async def test_404_is_not_found(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """404 raises NotFound (an UpstreamRejected) with the server's message as hint."""
    server.script("GET", "/x", Reply(404, json={"error": "X", "message": "Resource not found"}))
    with pytest.raises(NotFound) as caught:
        await make_client(server.url, session, clock).request("GET", "/x")
    assert caught.value.hint == "Resource not found"


async def test_other_4xx_is_rejected_with_the_servers_hint(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A 422 is not retried and carries the Laravel message and field errors."""
    body = {"message": "The given data was invalid.", "errors": {"status": ["Unknown."]}}
    server.script("GET", "/x", Reply(422, json=body))
    with pytest.raises(UpstreamRejected) as caught:
        await make_client(server.url, session, clock).request("GET", "/x")
    assert caught.value.status == 422
    assert caught.value.hint == "The given data was invalid.; status: Unknown."
    assert len(server.requests) == 1


async def test_hint_is_capped_and_redacted(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A long error body is cut to 300 characters and never repeats a secret."""
    server.script("GET", "/x", Reply(400, text=f"bad key {SECRET} " + "x" * 1000))
    client = make_client(server.url, session, clock, auth=ApiKeyAuth("key", SecretStr(SECRET)))
    with pytest.raises(UpstreamRejected) as caught:
        await client.request("GET", "/x")
    assert len(caught.value.hint) <= 300
    assert caught.value.hint.startswith("bad key *** x")
    assert SECRET not in str(caught.value)


async def test_a_2xx_body_that_is_not_json_is_unavailable(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A proxy's HTML page with 200 is a failure, not data."""
    server.script("GET", "/x", Reply(200, text="<html>Bad gateway</html>"))
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        await make_client(server.url, session, clock).request("GET", "/x")


async def test_absolute_urls_are_used_as_given(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A HAL link with its own query string is requested unchanged."""
    server.script("GET", "/other/page", Reply(json={"n": 2}))
    client = make_client("http://unused.invalid", session, clock)
    assert await client.request("GET", f"{server.url}/other/page?start=5&next=9") == {"n": 2}
    assert server.requests[0].query == [("start", "5"), ("next", "9")]


async def test_the_limiter_is_acquired_before_every_attempt(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    observer: RecordingObserver,
) -> None:
    """A retry takes a new limiter slot, and the wait is reported to the observer."""
    limiter = SlidingWindowLimiter(1, 10.0, clock)
    server.script("GET", "/x", Reply(500), Reply(json={}))
    client = make_client(server.url, session, clock, limiter=limiter, observer=observer)
    await client.request("GET", "/x")
    assert clock.monotonic() == pytest.approx(10.0)
    assert len(observer.waits) == 1
    assert observer.done == [("demo", 500), ("demo", 200)]
    assert observer.retries == ["500"]


async def test_the_key_never_appears_in_errors_or_logs(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Query-string secrets are masked in the error, its cause and every retry log line."""
    server.script("GET", "/x", Reply(hang=True))
    client = make_client(
        server.url,
        session,
        clock,
        auth=ApiKeyAuth("key", SecretStr(SECRET)),
        secret_params={"key"},
        timeout_s=0.05,
        retry=RetryPolicy(max_attempts=2),
    )
    with capture_logs() as logs, pytest.raises(UpstreamUnavailable) as caught:
        await client.request("GET", "/x", params=[("q", "1")])
    assert server.requests[0].query == [("q", "1"), ("key", SECRET)]
    assert "key=***" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in str(caught.value.__cause__)
    assert any(entry["event"] == "upstream_retry" for entry in logs)
    assert SECRET not in repr(logs)


def test_backoff_is_full_jitter_capped_at_max() -> None:
    """backoff_s(n) lies in [0, min(max_s, base_s * 2**(n-1))]."""
    policy = RetryPolicy(base_s=0.5, max_s=8.0)
    rng = random.Random(1)
    for attempt in range(1, 40):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        samples = [policy.backoff_s(attempt, rng) for _ in range(50)]
        assert all(0.0 <= s <= ceiling for s in samples)
    assert max(policy.backoff_s(30, rng) for _ in range(200)) > 4.0  # jitter spans the range


def test_retry_after_parsing_accepts_seconds_and_dates_only(clock: FakeClock) -> None:
    """Delta-seconds and HTTP-dates parse; garbage and negatives are ignored."""
    now = clock.now()
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=5), usegmt=True), now) == 5.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-3", now) is None
    assert parse_retry_after(None, now) is None


def test_error_hint_reads_each_apis_error_shape() -> None:
    """ChatKitty auth and API errors, Laravel errors and plain text all give a hint."""
    assert error_hint(b'{"error": "unauthorized", "error_description": "Bad creds"}') == (
        "Bad creds"
    )
    assert error_hint(b'{"error": "ClientError", "message": "check"}') == "check"
    assert error_hint(b'{"error": "ClientError"}') == "ClientError"
    assert error_hint(b"latitude requires radius\n") == "latitude requires radius"


class _DropsSecondRequest:
    """A loopback HTTP/1.1 server: on each connection it answers the first request
    (keep-alive) and closes the connection on the second one without an answer."""

    def __init__(self) -> None:
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if answered:
                    break
                answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def test_aiohttp_resends_on_its_own_when_a_kept_alive_connection_drops() -> None:
    """Why new_session exists: a plain aiohttp session re-sends an idempotent request once
    on a fresh connection. If this fails, aiohttp stopped doing it: drop the switch."""
    dropper = _DropsSecondRequest()
    async with dropper as url, aiohttp.ClientSession() as plain:
        for path in ("/first", "/second"):
            async with plain.get(url + path) as reply:
                assert reply.status == 200
    assert dropper.requests == 3  # the second one twice: dropped, then re-sent by aiohttp


async def test_new_session_leaves_a_dropped_connection_to_our_retry_policy(
    clock: FakeClock,
) -> None:
    """new_session switches aiohttp's hidden re-send off: a kept-alive connection dropped
    mid-request reaches ApiClient as one failed attempt (fails if aiohttp renames the
    private `_retry_connection` switch)."""
    dropper = _DropsSecondRequest()
    async with dropper as url, new_session() as session:
        client = make_client(url, session, clock, retry=RetryPolicy(max_attempts=1))
        assert await client.request("GET", "/first") == {}
        with pytest.raises(UpstreamUnavailable, match="connection dropped"):
            await client.request("GET", "/second")
    assert dropper.requests == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(7, 7), ("12", 12), (" 3 ", 3), (True, None), ("7.5", None), (7.0, None), (None, None)],
)
def test_wire_int_reads_numbers_and_digit_strings_only(raw: object, expected: int | None) -> None:
    """Ids and page counters: an int or its digits; booleans, fractions and others are None."""
    assert wire_int(raw) == expected


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value with the awkward parts: every kind of number, escapes,
    non-ASCII and astral text, nesting, empty containers."""
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(
            [0, -1, 2**31, -(2**63), 2**64 + 1, 10**30, rng.randrange(-(10**6), 10**6)]
        )
    if kind == 2:
        return rng.choice(
            [0.0, -0.0, 0.1, 1e-7, 5e-324, 1.7976931348623157e308, rng.uniform(-1e9, 1e9)]
        )
    if kind in (3, 4, 5):
        alphabet = 'ab "\\/\n\t\x00\x1f\x7f é£€\u2028\u202e\U0001f600'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        size = rng.randrange(5)
        return {f"k{rng.randrange(5)}": _random_json(rng, depth + 1) for _ in range(size)}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(5))]


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, with the type of every number kept (1 is not 1.0)."""
    return json.dumps(a) == json.dumps(b) and repr(a) == repr(b)


def test_bodies_decode_to_what_the_standard_library_reads() -> None:
    """decode_json answers json.loads: the same values for the simulators' own answers, for
    random documents (numbers, escapes, astral text, nesting), and for the bodies only the
    standard library reads (lone surrogate escapes, a BOM, UTF-16)."""
    market = Market(11, kotohomes_count=60, kato_count=60)
    records = market.kotohomes_records() + market.kato_records()
    records += [php_shape(r, v) for r in market.kato_records() if (v := php_variant(r, 1.0))]
    rng = random.Random(5)
    bodies = [json.dumps({"data": records}).encode()]
    bodies += [json.dumps(_random_json(rng)).encode() for _ in range(2_000)]
    bodies += [json.dumps(_random_json(rng), ensure_ascii=False).encode() for _ in range(500)]
    bodies += [
        b'{"a": "\\ud800"}',
        b'["\\udc00x\\ud83d\\ude00"]',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "é"}'.encode("utf-16"),
        b"[NaN, Infinity, -Infinity, 1e400]",
        b'{"a": 1, "a": 2}',
    ]
    for body in bodies:
        assert _same(decode_json(body), json.loads(body)), body[:80]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad gateway</html>",
        b'{"a": 1} x',
        b"[1,]",
        b'{"a": "\xff"}',
        b"[" + b"9" * 5000 + b"]",
    ],
)
def test_bodies_the_standard_library_refuses_are_refused(body: bytes) -> None:
    """What json.loads refuses, decode_json refuses too (as ValueError)."""
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ValueError):
        decode_json(body)
