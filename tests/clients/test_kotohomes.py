"""KotohomesClient: query shape, array styles, errors, and the key kept secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from listingbot.clients.base import RetryPolicy
from listingbot.clients.kotohomes import KotohomesClient
from listingbot.clock import FakeClock
from listingbot.errors import UpstreamAuthError, UpstreamRejected, UpstreamUnavailable
from tests.clients.conftest import FakeServer, Reply

KEY = "koto-key-XYZ-123"
RECORD = {"id": "li_1", "created_at": "2021-04-25T17:35:23.809Z", "price": 500000}


def make(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    *,
    array_style: Literal["brackets", "repeat"] = "brackets",
    **kwargs: Any,
) -> KotohomesClient:
    return KotohomesClient(
        base_url=server.url,
        key=SecretStr(KEY),
        session=session,
        clock=clock,
        array_style=array_style,
        **kwargs,
    )


async def test_search_sends_brackets_style_arrays_key_sort_and_limit(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Default style: states[]=NY&states[]=NJ, plus key, sort_by and limit=50."""
    server.script("GET", "/v1/listings", Reply(json={"data": [RECORD]}))
    client = make(server, session, clock)
    records = await client.search([("states", "NJ"), ("states", "NY"), ("price_max", "900000")])
    assert records == [RECORD]
    assert server.requests[0].query == [
        ("states[]", "NJ"),
        ("states[]", "NY"),
        ("price_max", "900000"),
        ("sort_by", "updated_at"),
        ("limit", "50"),
        ("key", KEY),
    ]


async def test_search_sends_repeat_style_arrays_when_configured(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """array_style="repeat": states=NY&states=NJ (the later docs' form)."""
    server.script("GET", "/v1/listings", Reply(json={"data": []}))
    client = make(server, session, clock, array_style="repeat")
    await client.search([("states", "NY"), ("zip_codes[]", "10001")])
    assert server.requests[0].query[:2] == [("states", "NY"), ("zip_codes", "10001")]


async def test_created_min_is_sent_as_utc_iso_with_milliseconds(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """created_min is UTC, millisecond precision, with a Z; sort_by as asked."""
    server.script("GET", "/v1/listings", Reply(json={"data": []}))
    eastern = timezone(timedelta(hours=-5))
    since = datetime(2021, 4, 25, 12, 35, 23, 809_999, tzinfo=eastern)
    await make(server, session, clock).search(
        [("states", "NY")], sort_by="created_at", created_min=since, limit=10
    )
    query = dict(server.requests[0].query)
    assert query["created_min"] == "2021-04-25T17:35:23.809Z"
    assert (query["sort_by"], query["limit"]) == ("created_at", "10")


async def test_a_403_is_a_loud_auth_error_without_the_key(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """403: UpstreamAuthError that says the key was rejected, never retried, key masked."""
    server.script("GET", "/v1/listings", Reply(403, json={"error": f"invalid key {KEY}"}))
    with capture_logs() as logs, pytest.raises(UpstreamAuthError) as caught:
        await make(server, session, clock).search([("states", "NY")])
    text = str(caught.value)
    assert "Kotohomes rejected the API key (HTTP 403)" in text
    assert caught.value.status == 403
    assert KEY not in text
    assert KEY not in str(caught.value.__cause__)
    assert KEY not in repr(logs)
    assert len(server.requests) == 1


async def test_a_400_is_rejected_with_the_body_as_hint(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """400: UpstreamRejected whose hint is the server's explanation."""
    server.script("GET", "/v1/listings", Reply(400, text="latitude requires radius"))
    with pytest.raises(UpstreamRejected) as caught:
        await make(server, session, clock).search([("latitude", "40.7")])
    assert caught.value.hint == "latitude requires radius"
    assert KEY not in str(caught.value)


async def test_the_key_never_appears_in_errors_or_logs_after_retries(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Repeated 500s: every retry log line and the final error show key=*** only."""
    server.script("GET", "/v1/listings", Reply(500, text=f"boom for key={KEY}"))
    client = make(server, session, clock, retry=RetryPolicy(max_attempts=3))
    with capture_logs() as logs, pytest.raises(UpstreamUnavailable) as caught:
        await client.search([("states", "NY")])
    retries = [entry for entry in logs if entry["event"] == "upstream_retry"]
    assert len(retries) == 2
    assert all("key=***" in entry["url"] for entry in retries)
    assert KEY not in repr(logs)
    assert KEY not in str(caught.value)
    assert "key=***" in str(caught.value)


async def test_records_that_are_not_objects_are_dropped_and_logged(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Only JSON objects are returned; the rest are counted in a log line."""
    server.script("GET", "/v1/listings", Reply(json={"data": [RECORD, "junk", 7, None]}))
    with capture_logs() as logs:
        records = await make(server, session, clock).search([("states", "NY")])
    assert records == [RECORD]
    assert [entry["dropped"] for entry in logs if entry["event"] == "kotohomes_bad_record"] == [3]


@pytest.mark.parametrize("payload", [{}, {"data": None}, {"data": {"id": "x"}}, []])
async def test_an_answer_without_a_data_list_is_not_believed(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, payload: Any
) -> None:
    """No `data` list is a broken answer, never an empty result."""
    server.script("GET", "/v1/listings", Reply(json=payload))
    with pytest.raises(UpstreamUnavailable, match="data"):
        await make(server, session, clock).search([("states", "NY")])


async def test_get_returns_the_record_or_none_when_gone(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """GET /v1/listings/{id}: the record (bare or under data), None on 404."""
    server.script("GET", "/v1/listings/li_1", Reply(json={"data": RECORD}))
    server.script("GET", "/v1/listings/li_2", Reply(json={**RECORD, "id": "li_2"}))
    server.script("GET", "/v1/listings/li_3", Reply(404, json={"error": "not found"}))
    client = make(server, session, clock)
    assert await client.get("li_1") == RECORD
    assert (await client.get("li_2") or {})["id"] == "li_2"
    assert await client.get("li_3") is None
    assert dict(server.requests[0].query) == {"key": KEY}


async def test_min_request_interval_paces_requests(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """min_request_interval_s=2: three searches take at least four seconds."""
    server.script("GET", "/v1/listings", Reply(json={"data": []}))
    client = make(server, session, clock, min_request_interval_s=2.0)
    for _ in range(3):
        await client.search([("states", "NY")])
    assert clock.monotonic() == pytest.approx(4.0)


def test_client_owned_parameters_cannot_come_from_filters(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """key/sort_by/limit/created_min in the filters are a programming error, as is limit 51."""
    client = KotohomesClient(base_url="http://h", key=SecretStr(KEY), session=session, clock=clock)
    with pytest.raises(ValueError, match="key"):
        client.query([("key", "other")])
    with pytest.raises(ValueError, match="limit"):
        client.query([("states", "NY")], limit=51)
    with pytest.raises(ValueError, match="timezone"):
        client.query([("states", "NY")], created_min=datetime(2021, 1, 1))
    assert KEY not in repr(client)


def test_created_min_keeps_utc_input_as_is(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An aware UTC time is formatted without shifting."""
    client = KotohomesClient(base_url="http://h", key=SecretStr(KEY), session=session, clock=clock)
    pairs = client.query([], created_min=datetime(2021, 4, 25, 17, 35, 23, tzinfo=UTC))
    assert ("created_min", "2021-04-25T17:35:23.000Z") in pairs
