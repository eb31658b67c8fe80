"""KatoClient: token, both pagination shapes, complete-or-raise sweeps, one shared limiter."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from listingbot.clients.base import RetryPolicy
from listingbot.clients.kato import KatoClient, KatoPage, KatoRecord, RepeatedRecords
from listingbot.clock import FakeClock
from listingbot.errors import UpstreamUnavailable
from tests.clients.conftest import FakeServer, Handler, RecordingObserver, Reply, Seen

CLIENT_ID = "kato-id-123"
CLIENT_SECRET = "kato-secret-XYZ"


def token_reply(_: Seen) -> Reply:
    return Reply(json={"access_token": "kato-token", "token_type": "Bearer", "expires_in": 1209600})


def paged(
    records: list[dict[str, Any]], *, per_page: int, nested: bool = True
) -> Callable[[Seen], Reply]:
    """A handler serving `records` in pages like Kato: v2 `meta.pagination` or v1 top level."""

    def handle(seen: Seen) -> Reply:
        page = int(dict(seen.query)["page"])
        chunk = records[(page - 1) * per_page : page * per_page]
        total_pages = max(1, -(-len(records) // per_page))
        block = {
            "total": len(records),
            "count": len(chunk),
            "per_page": per_page,
            "current_page": page,
            "total_pages": total_pages,
            "links": {"next": "https://kato/v2/availability?page=2"},  # no filter params
        }
        body: dict[str, Any] = {"data": chunk}
        if nested:
            body["meta"] = {"pagination": block}
        else:
            body["pagination"] = block
        return Reply(json=body)

    return handle


def make(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    **kwargs: Any,
) -> KatoClient:
    server.script("POST", "/oauth/token", token_reply)
    options: dict[str, Any] = {"api_version": "v2", "page_size": 2}
    options.update(kwargs)
    return KatoClient(
        base_url=server.url,
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(CLIENT_SECRET),
        session=session,
        clock=clock,
        **options,
    )


RECORDS = [{"id": n, "status": "available"} for n in range(1, 6)]


async def test_sweep_reads_every_page_with_nested_pagination(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """v2 shape (meta.pagination): pages 1..3 of 2 records give all five records."""
    server.script("GET", "/v2/availability", paged(RECORDS, per_page=2))
    sweep = await make(server, session, clock).sweep()
    assert sweep.records == RECORDS
    assert (sweep.pages, sweep.total) == (3, 5)
    pages = [dict(r.query)["page"] for r in server.seen("GET", "/v2/availability")]
    assert pages == ["1", "2", "3"]


async def test_sweep_reads_every_page_with_top_level_pagination(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The seed's shape (pagination at the top level) works the same."""
    server.script("GET", "/v1/availability", paged(RECORDS, per_page=2, nested=False))
    sweep = await make(server, session, clock, api_version="v1").sweep()
    assert [record["id"] for record in sweep.records] == [1, 2, 3, 4, 5]


async def test_filters_limit_and_page_are_sent_on_every_page(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Pages are fetched by number with the filters repeated (the links drop them)."""
    server.script("GET", "/v2/availability", paged(RECORDS, per_page=2))
    await make(server, session, clock).sweep([("published_to_website", "true")])
    for index, seen in enumerate(server.seen("GET", "/v2/availability"), start=1):
        assert seen.query == [
            ("published_to_website", "true"),
            ("limit", "2"),
            ("page", str(index)),
        ]


async def test_an_empty_first_page_is_an_empty_result(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """No records at all is a legitimate, complete answer."""
    block = {"total": 0, "count": 0, "per_page": 2, "current_page": 1, "total_pages": 0}
    server.script(
        "GET", "/v2/availability", Reply(json={"data": [], "meta": {"pagination": block}})
    )
    sweep = await make(server, session, clock).sweep()
    assert (sweep.records, sweep.pages, sweep.total) == ([], 1, 0)


async def test_a_failure_midway_raises_instead_of_returning_part(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Page 2 keeps failing: the sweep raises; no partial result escapes."""
    pages = paged(RECORDS, per_page=2)

    def flaky(seen: Seen) -> Reply:
        return Reply(500) if dict(seen.query)["page"] == "2" else pages(seen)

    server.script("GET", "/v2/availability", flaky)
    client = make(server, session, clock, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(UpstreamUnavailable):
        await client.sweep()


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"id": 9}]},  # no pagination block
        {"data": "nope", "meta": {"pagination": {"current_page": 2, "total_pages": 3}}},
        {"data": [{"id": 9}], "meta": {"pagination": {"current_page": 1, "total_pages": 3}}},
        {"data": [{"id": 9}], "meta": {"pagination": {"total": 5}}},
    ],
)
async def test_an_inconsistent_later_page_raises(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, body: Any
) -> None:
    """A page 2 without data/pagination, or claiming to be page 1, fails the sweep."""
    first = {"data": [{"id": 1}], "meta": {"pagination": {"current_page": 1, "total_pages": 3}}}
    server.script("GET", "/v2/availability", Reply(json=first), Reply(json=body))
    with pytest.raises(UpstreamUnavailable):
        await make(server, session, clock).sweep()


async def test_data_requests_use_the_bearer_token_only(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Token from POST /oauth/token (form body); data requests carry Bearer + Accept only."""
    server.script("GET", "/v2/availability", paged(RECORDS[:1], per_page=2))
    await make(server, session, clock, scope="read").sweep()
    token = server.seen("POST", "/oauth/token")[0]
    assert token.form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "read",
    }
    data = server.seen("GET", "/v2/availability")[0]
    assert data.headers["Authorization"] == "Bearer kato-token"
    assert data.headers["Accept"] == "application/json"
    assert CLIENT_SECRET not in repr(data)
    assert CLIENT_ID not in repr(data)


async def test_the_token_is_reused_across_sweeps(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Two sweeps, one token request (token requests count against the rate limit)."""
    server.script("GET", "/v2/availability", paged(RECORDS, per_page=2))
    client = make(server, session, clock)
    await client.sweep()
    clock.advance(600)
    await client.sweep()
    assert len(server.seen("POST", "/oauth/token")) == 1


async def test_an_expired_token_is_refreshed_once_and_the_page_replayed(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """401 mid-sweep: one new token, the same page again, the sweep completes."""
    pages = paged(RECORDS, per_page=2)
    server.script(
        "GET", "/v2/availability", pages, Reply(401, json={"message": "Unauthenticated."}), pages
    )
    sweep = await make(server, session, clock).sweep()
    assert len(sweep.records) == 5
    assert len(server.seen("POST", "/oauth/token")) == 2


async def test_a_429_with_retry_after_is_waited_out(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """429 + Retry-After: 5 -> the sweep pauses 5 s on the clock, then carries on."""
    pages = paged(RECORDS, per_page=2)
    too_many = Reply(429, json={"message": "Too Many Attempts."}, headers={"Retry-After": "5"})
    server.script("GET", "/v2/availability", pages, too_many, pages)
    sweep = await make(server, session, clock).sweep()
    assert len(sweep.records) == 5
    assert clock.sleeps == [5.0]


async def test_one_limiter_covers_token_and_data_requests(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """At 2 requests/minute, token + page 1 fill the window and page 2 waits for the next."""
    server.script("GET", "/v2/availability", paged(RECORDS[:3], per_page=2))
    client = make(server, session, clock, requests_per_minute=2)
    await client.sweep()
    assert len(server.requests) == 3
    assert clock.monotonic() >= 60.0
    assert client.limiter.max_requests == 2


async def test_never_more_than_requests_per_minute_in_any_window(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A long sweep at 5/min never puts a sixth request into any 60 s window."""
    times: list[float] = []
    pages = paged([{"id": n} for n in range(40)], per_page=2)

    def timed(seen: Seen) -> Reply:
        times.append(clock.monotonic())
        return pages(seen)

    server.script("GET", "/v2/availability", timed)
    await make(server, session, clock, requests_per_minute=5).sweep()
    assert len(times) == 20
    assert max(sum(1 for t in times if start <= t < start + 60.0) for start in times) <= 5


async def test_several_statuses_are_one_sweep_each_merged_by_id(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """status [available, let]: Laravel would keep only the last repeated name, so each
    status is swept on its own (one status per request) and the answers merged."""
    stock = {
        "available": [{"id": 1, "status": "available"}, {"id": 2, "status": "available"}],
        "let": [{"id": 3, "status": "let"}, {"id": 1, "status": "let"}],
    }

    def handle(seen: Seen) -> Reply:
        statuses = [v for n, v in seen.query if n == "status"]
        assert len(statuses) == 1, "more than one status in a request"
        return paged(stock[statuses[0]], per_page=2)(seen)

    server.script("GET", "/v2/availability", handle)
    client = make(server, session, clock)
    sweep = await client.sweep(
        [("published_to_website", "true"), ("status", "available"), ("status", "let")]
    )
    assert [r["id"] for r in sweep.records] == [1, 2, 3]
    sent = [dict(r.query) for r in server.seen("GET", "/v2/availability")]
    assert [(q["status"], q["published_to_website"]) for q in sent] == [
        ("available", "true"),
        ("let", "true"),
    ]
    assert sweep.pages == 2


def test_page_size_above_50_is_refused(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """50 is Kato's maximum page size (the seed's changelog)."""
    with pytest.raises(ValueError, match="page_size"):
        KatoClient(
            base_url="http://h",
            api_version="v2",
            client_id=SecretStr(CLIENT_ID),
            client_secret=SecretStr(CLIENT_SECRET),
            session=session,
            clock=clock,
            page_size=51,
        )


def _announcing(pages: Callable[[Seen], Reply], page: str, asked: asyncio.Event) -> Handler:
    """``pages``, setting ``asked`` when ``page`` is requested."""

    def handle(seen: Seen) -> Reply:
        if dict(seen.query)["page"] == page:
            asked.set()
        return pages(seen)

    return handle


async def test_the_next_page_is_requested_while_this_one_is_read(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Holding page 1 (not asking for more), the sweep has already asked for page 2, so
    the server's time for it passes while the poller reads page 1."""
    asked = asyncio.Event()
    server.script("GET", "/v2/availability", _announcing(paged(RECORDS, per_page=2), "2", asked))
    async with aclosing(make(server, session, clock).pages()) as pages:
        first = await anext(pages)
        assert [r["id"] for r in first.records] == [1, 2]
        await asyncio.wait_for(asked.wait(), timeout=10)  # times out without the page ahead
        rest = [page async for page in pages]
    assert [r["id"] for p in rest for r in p.records] == [3, 4, 5]
    assert [dict(s.query)["page"] for s in server.seen("GET", "/v2/availability")] == [
        "1",
        "2",
        "3",
    ]


async def test_nothing_is_requested_past_the_last_page(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The page ahead is asked for only when the last answer says there are more pages:
    a one-page sweep costs one request, a three-page sweep three."""
    server.script("GET", "/v2/availability", paged(RECORDS[:2], per_page=2))
    client = make(server, session, clock)
    assert (await client.sweep()).pages == 1
    assert len(server.seen("GET", "/v2/availability")) == 1
    server.script("GET", "/v2/availability", paged(RECORDS, per_page=2))
    assert (await client.sweep()).pages == 3
    assert len(server.seen("GET", "/v2/availability")) == 4


async def test_a_sweep_closed_early_cancels_the_page_ahead(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The poller stops after page 1 (its store failed, say) while page 2 hangs: closing
    the sweep returns at once (the request ahead is cancelled, not waited on)."""
    pages = paged(RECORDS, per_page=2)
    asked = asyncio.Event()

    def hang_on_two(seen: Seen) -> Reply:
        if dict(seen.query)["page"] == "2":
            asked.set()
            return Reply(hang=True)
        return pages(seen)

    server.script("GET", "/v2/availability", hang_on_two)
    sweep = make(server, session, clock).pages()
    await anext(sweep)
    await asyncio.wait_for(asked.wait(), timeout=10)
    await asyncio.wait_for(sweep.aclose(), timeout=10)
    # The session is not left waiting: another sweep on it completes.
    server.script("GET", "/v2/availability", paged(RECORDS[:2], per_page=2))
    assert (await make(server, session, clock).sweep()).records == RECORDS[:2]


async def test_a_failed_page_ahead_of_a_closed_sweep_is_not_left_unretrieved(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Page 2 fails while the poller is still on page 1 and then stops: the failure is
    collected when the sweep closes, not reported later as an exception nobody read."""
    pages = paged(RECORDS, per_page=2)

    def fail_two(seen: Seen) -> Reply:
        return Reply(500) if dict(seen.query)["page"] == "2" else pages(seen)

    server.script("GET", "/v2/availability", fail_two)
    failed = asyncio.Event()

    class Observer(RecordingObserver):
        def request_done(self, api: str, status: int | None, duration_s: float) -> None:
            super().request_done(api, status, duration_s)
            if status == 500:
                failed.set()

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        client = make(
            server, session, clock, retry=RetryPolicy(max_attempts=1), observer=Observer()
        )
        sweep = client.pages()
        await anext(sweep)
        await asyncio.wait_for(failed.wait(), timeout=10)
        for _ in range(5):
            await asyncio.sleep(0)  # the request's task finishes raising
        await sweep.aclose()
        del sweep
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def _marks(client: KatoClient, params: list[tuple[str, str]] | None = None) -> list[Any]:
    async with aclosing(client.pages(params or [])) as pages:
        return [page.mark async for page in pages]


async def test_a_page_is_marked_by_its_place_in_the_sweep_and_its_body(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Each page carries its place ("<status asked>:<number>") and its body's digest: the
    same answers give the same marks, and a changed record changes its page's digest
    alone (the others' bodies are byte for byte the same)."""
    records = [dict(r) for r in RECORDS]
    server.script("GET", "/v2/availability", paged(records, per_page=2))
    client = make(server, session, clock)
    first = await _marks(client)
    again = await _marks(client)
    records[4]["status"] = "let"
    changed = await _marks(client)
    assert [m.key for m in first] == [":1", ":2", ":3"]
    assert again == first
    assert [m.digest == f.digest for m, f in zip(changed, first, strict=True)] == [
        True,
        True,
        False,
    ]
    parted = await _marks(client, [("status", "available"), ("status", "let")])
    keys = [f"{status}:{n}" for status in ("available", "let") for n in (1, 2, 3)]
    assert [m.key for m in parted] == keys


async def test_a_page_holding_an_item_that_is_not_an_object_has_no_mark(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An item of `data` that is not an object is dropped from the page's records, so
    its records are not the whole page: it has no mark (it can never be known whole)."""
    records: list[Any] = [{"id": 1}, "junk", {"id": 3}]
    server.script("GET", "/v2/availability", paged(records, per_page=2))
    marks = await _marks(make(server, session, clock))
    assert marks[0] is None
    assert marks[1] is not None


async def test_a_page_served_again_byte_for_byte_is_handed_on_undecoded(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A page whose body is byte for byte the one the client read last time comes with
    its records not decoded (decoded, they are the same records) and its count and
    place in the sweep as before, read from that body: the sweep asks for no page past
    its last. A page whose body changed is decoded as it arrives."""
    records = [dict(r) for r in RECORDS]
    server.script("GET", "/v2/availability", paged(records, per_page=2))
    client = make(server, session, clock)

    async def sweep() -> list[KatoPage]:
        async with aclosing(client.pages()) as pages:
            return [page async for page in pages]

    first = await sweep()
    again = await sweep()
    records[4]["status"] = "let"
    changed = await sweep()
    assert [p.mark.repeated for p in first if p.mark] == [False, False, False]
    assert [p.mark.repeated for p in again if p.mark] == [True, True, True]
    assert [isinstance(p.records, RepeatedRecords) and p.records.decoded for p in again] == [
        False,
        False,
        False,
    ]
    assert [list(p.records) for p in again] == [list(p.records) for p in first]
    assert [(p.number, p.total) for p in again] == [(p.number, p.total) for p in first]
    assert [p.mark.repeated for p in changed if p.mark] == [True, True, False]
    assert changed[2].records == [records[4]]
    assert len(server.seen("GET", "/v2/availability")) == 9


async def test_a_sweep_hands_on_records_read_from_their_bytes_with_the_same_digests_again(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Every record of a page comes read from its bytes (``KatoRecord``: its digest of
    its bytes, not decoded whole), and a page served again, once decoded, gives records
    with the digests the first read gave: what the state file holds of them still
    matches, so they are not normalized again."""
    records = [{**r, "marketing": {"summary": f"text {r['id']}"}} for r in RECORDS]
    server.script("GET", "/v2/availability", paged(records, per_page=2))
    client = make(server, session, clock)

    async def sweep() -> list[KatoPage]:
        async with aclosing(client.pages()) as pages:
            return [page async for page in pages]

    first = [r for page in await sweep() for r in page.records]
    again = [r for page in await sweep() for r in page.records]
    assert all(type(r) is KatoRecord and not r.decoded_whole for r in first)
    assert all(type(r) is KatoRecord for r in again)
    assert [r.digest for r in again] == [r.digest for r in first]
    assert len({r.digest for r in first}) == len(records)
    assert first == records
