"""KotohomesClient: query shape, array styles, errors, and the key kept secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from listingbot.sim._http import start_app
from listingbot.sim.kotohomes import MODES, KotohomesSim, Mode
from listingbot.sim.market import Market
from tests.clients.conftest import FakeServer, Reply

KEY = "koto-key-XYZ-123"
RECORD = {"id": "li_1", "created_at": "2021-04-25T17:35:23.809Z", "price": 500000}


def make(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    *,
    array_style: Literal["brackets", "repeat"] = "repeat",
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


async def test_search_sends_repeated_names_key_and_limit_but_no_sort_by(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Default: states=NJ&states=NY (today's form), key and limit=50, and no sort_by (both
    versions then answer newest update first)."""
    server.script("GET", "/v1/listings", Reply(json={"data": [RECORD]}))
    client = make(server, session, clock)
    records = await client.search([("states", "NJ"), ("states", "NY"), ("price_max", "900000")])
    assert records == [RECORD]
    assert server.requests[0].query == [
        ("states", "NJ"),
        ("states", "NY"),
        ("price_max", "900000"),
        ("limit", "50"),
        ("key", KEY),
    ]


async def test_search_sends_brackets_style_arrays_when_configured(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """array_style="brackets": states[]=NY (the seed's form, deprecated but accepted)."""
    server.script("GET", "/v1/listings", Reply(json={"data": []}))
    client = make(server, session, clock, array_style="brackets")
    await client.search([("states", "NY"), ("zip_codes[]", "10001")])
    assert server.requests[0].query[:2] == [("states[]", "NY"), ("zip_codes[]", "10001")]


async def test_created_min_is_sent_as_utc_iso_in_whole_seconds(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """created_min is UTC, whole seconds rounded down (the bound is inclusive), with a Z."""
    server.script("GET", "/v1/listings", Reply(json={"data": []}))
    eastern = timezone(timedelta(hours=-5))
    since = datetime(2021, 4, 25, 12, 35, 23, 809_999, tzinfo=eastern)
    await make(server, session, clock).search(
        [("zip_codes", "10001")], sort_by="created_at", created_min=since, limit=10
    )
    query = dict(server.requests[0].query)
    assert query["created_min"] == "2021-04-25T17:35:23Z"
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
    assert ("created_min", "2021-04-25T17:35:23Z") in pairs


# --- reading the answers, against the simulator in both of its modes ----------------------

IL = [("zip_codes", "60601")]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """Today's API and the seed's: where they differ, both are tested."""
    mode: Mode = request.param
    return mode


@pytest.fixture
def market(clock: FakeClock) -> Market:
    return Market(seed=3, start=clock.now(), kotohomes_count=0, kato_count=0)


@pytest.fixture
async def sim_url(market: Market, mode: Mode) -> AsyncIterator[str]:
    sim = KotohomesSim(market, api_keys=(KEY,), mode=mode)
    runner, url = await start_app(sim.app(), "127.0.0.1", 0)
    try:
        yield url
    finally:
        await runner.cleanup()


def at_sim(url: str, session: aiohttp.ClientSession, clock: FakeClock, **kwargs: Any) -> Any:
    return KotohomesClient(base_url=url, key=SecretStr(KEY), session=session, clock=clock, **kwargs)


def add_listings(market: Market, count: int) -> list[str]:
    """``count`` listings in ZIP 60601, created a minute apart; their ids, oldest first."""
    ids = []
    for _ in range(count):
        market.now += timedelta(minutes=1)
        ids.append(market.add_kotohomes(state="IL", city="Chicago", zip_code="60601")["id"])
    return ids


async def test_new_listings_come_back_complete_when_fewer_than_a_page(
    sim_url: str, market: Market, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Fewer new listings than a page: one request, all of them, no gap, in either mode."""
    add_listings(market, 5)
    since = market.now
    fresh = add_listings(market, 3)
    window = await at_sim(sim_url, session, clock).new_listings(IL, since=since, limit=50)
    assert {r["id"] for r in window.records} >= set(fresh)
    assert (window.requests, window.gap, window.complete) == (1, False, True)


async def test_new_listings_walk_forward_or_report_the_gap(
    sim_url: str, market: Market, mode: Mode, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """130 new listings, pages of 50: today's ascending answers are walked forward to all
    130; the seed's descending answer is the newest 50 and a reported possible gap."""
    add_listings(market, 2)
    since = market.now
    fresh = add_listings(market, 130)
    window = await at_sim(sim_url, session, clock).new_listings(IL, since=since, limit=50)
    ids = [r["id"] for r in window.records]
    assert len(ids) == len(set(ids))
    if mode == "current":
        assert window.order == "ascending"
        assert set(fresh) <= set(ids)
        assert (window.requests, window.gap) == (3, False)
    else:
        assert window.order == "descending"
        assert ids == fresh[::-1][:50]
        assert (window.requests, window.gap) == (1, True)


async def test_recent_updates_are_the_newest_by_update_in_either_mode(
    sim_url: str, market: Market, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """No sort_by: both versions answer newest update first, so an old listing's change
    is at the top of the page, not beyond it."""
    ids = add_listings(market, 80)
    market.now += timedelta(minutes=5)
    market.update_kotohomes(ids[0], price=123_000)
    window = await at_sim(sim_url, session, clock).recent_updates(IL, limit=50)
    assert window.records[0]["id"] == ids[0]
    assert window.order == "descending"
    assert not window.gap


async def test_an_explicit_direction_is_sent_only_when_configured(
    sim_url: str, market: Market, mode: Mode, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """created_sort="created_at desc": today's API answers newest first (a full page is a
    possible gap); the seed's refuses the direction with a 400."""
    add_listings(market, 2)
    since = market.now
    fresh = add_listings(market, 60)
    client = at_sim(sim_url, session, clock, created_sort="created_at desc")
    if mode == "seed":
        with pytest.raises(UpstreamRejected):
            await client.new_listings(IL, since=since, limit=50)
        return
    window = await client.new_listings(IL, since=since, limit=50)
    assert [r["id"] for r in window.records] == fresh[::-1][:50]
    assert (window.order, window.gap) == ("descending", True)


def _stamped(n: int, created: str) -> dict[str, Any]:
    return {"id": f"li_{n}", "created_at": created, "updated_at": created}


async def test_an_unordered_full_page_is_a_gap_not_a_walk(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A full page in no order at all cannot be walked or trusted: one request, a gap."""
    page = [_stamped(n, f"2026-01-01T12:{(n * 7) % 50:02d}:00Z") for n in range(50)]
    server.script("GET", "/v1/listings", Reply(json={"data": page}))
    since = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    with capture_logs() as logs:
        window = await make(server, session, clock).new_listings(IL, since=since, limit=50)
    assert (window.order, window.gap, window.requests) == ("unordered", True, 1)
    assert [e["order"] for e in logs if e["event"] == "kotohomes_unexpected_order"] == ["unordered"]


async def test_a_full_page_within_one_second_is_a_gap(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Fifty listings created in the second of created_min: walking cannot move past
    them, so the walk stops and says so instead of asking the same question forever."""
    page = [_stamped(n, f"2026-01-01T12:00:00.{n:03d}Z") for n in range(50)]
    server.script("GET", "/v1/listings", Reply(json={"data": page}))
    since = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    window = await make(server, session, clock).new_listings(IL, since=since, limit=50)
    assert (window.order, window.gap, window.requests) == ("ascending", True, 1)


async def test_an_ascending_answer_to_the_update_search_is_not_taken_for_the_newest(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A full page of updates oldest first would be the oldest 50: flagged, not believed."""
    page = [_stamped(n, f"2026-01-01T12:{n:02d}:00Z") for n in range(50)]
    server.script("GET", "/v1/listings", Reply(json={"data": page}))
    with capture_logs() as logs:
        window = await make(server, session, clock).recent_updates(IL, limit=50)
    assert (window.order, window.gap) == ("ascending", True)
    assert any(e["event"] == "kotohomes_unexpected_order" for e in logs)
