"""The Kato simulator: client-credentials tokens, both pagination shapes, filters and
the 60-requests-per-minute window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from listingbot.clock import FakeClock
from listingbot.sim.kato import MODES, KatoSim, Mode
from listingbot.sim.market import Market
from tests.sim.helpers import Serve, bearer

CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "test-kato-id",
    "client_secret": "test-kato-secret",
    "scope": "*",
}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """Today's PHP-shaped answers and the seed's clean ones: every test runs on both."""
    mode: Mode = request.param
    return mode


@pytest.fixture
def sim(market: Market, clock: FakeClock, mode: Mode) -> KatoSim:
    return KatoSim(market, clock=clock, token_lifetime_s=3600, mode=mode)


@pytest.fixture
async def url(serve: Serve, sim: KatoSim) -> AsyncIterator[str]:
    async with serve(sim.app()) as base:
        yield base


async def _token(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/oauth/token", data=CREDENTIALS) as response:
        assert response.status == 200
        body = await response.json()
    token: str = body["access_token"]
    return token


async def _list(
    http: aiohttp.ClientSession, url: str, token: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    path = "/v2/availability"
    async with http.get(f"{url}{path}", params=params or {}, headers=bearer(token)) as response:
        return response.status, await response.json()


async def test_token_request_with_form_body_issues_a_bearer_token(
    http: aiohttp.ClientSession, url: str, sim: KatoSim
) -> None:
    """grant_type, client_id, client_secret and scope in a form body give a token."""
    async with http.post(f"{url}/oauth/token", data=CREDENTIALS) as response:
        body = await response.json()
    assert response.status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]
    assert sim.tokens_issued == 1


async def test_wrong_client_secret_is_401(http: aiohttp.ClientSession, url: str) -> None:
    """Bad credentials: 401 invalid_client."""
    data = {**CREDENTIALS, "client_secret": "guess"}
    async with http.post(f"{url}/oauth/token", data=data) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_client"


async def test_credentials_in_a_json_body_are_401(http: aiohttp.ClientSession, url: str) -> None:
    """The id and secret belong in a form body; a JSON body authenticates nobody."""
    async with http.post(f"{url}/oauth/token", json=CREDENTIALS) as response:
        assert response.status == 401


async def test_wrong_grant_type_is_400(http: aiohttp.ClientSession, url: str) -> None:
    """Only the client_credentials grant exists."""
    data = {**CREDENTIALS, "grant_type": "password"}
    async with http.post(f"{url}/oauth/token", data=data) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "unsupported_grant_type"


async def test_availability_without_a_bearer_token_is_401(
    http: aiohttp.ClientSession, url: str
) -> None:
    """No Authorization header: 401 with Laravel's message."""
    async with http.get(f"{url}/v2/availability") as response:
        assert response.status == 401
        assert await response.json() == {"message": "Unauthenticated."}


async def test_unknown_token_is_401(http: aiohttp.ClientSession, url: str) -> None:
    """A token the server never issued is refused."""
    status, _ = await _list(http, url, "forged")
    assert status == 401


async def test_token_expires_after_its_lifetime(
    http: aiohttp.ClientSession, url: str, clock: FakeClock
) -> None:
    """A token works until token_lifetime_s has passed on the injected clock."""
    token = await _token(http, url)
    clock.advance(3599)
    assert (await _list(http, url, token))[0] == 200
    clock.advance(1)
    assert (await _list(http, url, token))[0] == 401


async def test_expire_tokens_invalidates_every_issued_token(
    http: aiohttp.ClientSession, url: str, sim: KatoSim
) -> None:
    """expire_tokens() makes the current token fail; a new one works."""
    token = await _token(http, url)
    sim.expire_tokens()
    assert (await _list(http, url, token))[0] == 401
    assert (await _list(http, url, await _token(http, url)))[0] == 200


async def test_v2_puts_pagination_under_meta(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """/v2/availability: data plus meta.pagination with the documented keys."""
    status, body = await _list(http, url, await _token(http, url), {"limit": "25", "page": "2"})
    assert status == 200
    block = body["meta"]["pagination"]
    total = len(market.kato_records())
    assert block == {
        "from": 26,
        "to": 50,
        "total": total,
        "count": 25,
        "per_page": 25,
        "current_page": 2,
        "total_pages": 3,
        "links": block["links"],
    }
    assert set(block["links"]) == {"first", "previous", "fastback", "next", "fastforward", "last"}
    assert block["links"]["fastback"] is None
    assert block["links"]["next"].endswith("/v2/availability?page=3")
    assert "pagination" not in body


async def test_v1_puts_pagination_at_the_top_level(http: aiohttp.ClientSession, url: str) -> None:
    """/v1/availability: the block sits beside data, as the seed words it."""
    token = await _token(http, url)
    async with http.get(f"{url}/v1/availability", headers=bearer(token)) as response:
        body = await response.json()
    assert body["pagination"]["per_page"] == 50
    assert body["pagination"]["current_page"] == 1
    assert "meta" not in body


async def test_walking_pages_returns_every_record_once(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """page=1..total_pages covers all records exactly once."""
    token = await _token(http, url)
    seen: list[str] = []
    page, total_pages = 1, 1
    while page <= total_pages:
        _, body = await _list(http, url, token, {"limit": "7", "page": str(page)})
        seen += [str(r["id"]) for r in body["data"]]
        total_pages = body["meta"]["pagination"]["total_pages"]
        page += 1
    assert sorted(seen) == sorted(market.ids("kato"))


async def test_links_leave_out_the_filters(http: aiohttp.ClientSession, url: str) -> None:
    """The docs warn links carry no filters: the simulator does the same."""
    token = await _token(http, url)
    params = {"status": "available", "limit": "5"}
    _, body = await _list(http, url, token, params)
    nxt = body["meta"]["pagination"]["links"]["next"]
    assert "status" not in nxt
    assert "limit" not in nxt


async def test_empty_result_is_a_legitimate_first_page(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """No matches: empty data, total 0, a single page."""
    for listing_id in market.ids("kato"):
        market.remove("kato", listing_id)
    _, body = await _list(http, url, await _token(http, url))
    assert body["data"] == []
    block = body["meta"]["pagination"]
    assert (block["total"], block["count"], block["total_pages"], block["from"]) == (0, 0, 1, None)


async def test_filters_select_status_publication_and_api_control(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """status, published_to_website and api_controlled are applied server-side."""
    token = await _token(http, url)
    _, body = await _list(
        http,
        url,
        token,
        {"status": "available", "published_to_website": "true", "api_controlled": "false"},
    )
    expected = {
        str(r["id"])
        for r in market.kato_records()
        if r["status"] == "available"
        and r["published_to_website"] is not None
        and not r["api_controlled"]
    }
    assert {str(r["id"]) for r in body["data"]} == expected
    assert expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "vacant"}, "status"),
        ({"published_to_website": "yes please"}, "published_to_website"),
        ({"api_controlled": "maybe"}, "api_controlled"),
        ({"limit": "51"}, "limit"),
        ({"page": "0"}, "page"),
    ],
)
async def test_invalid_filter_values_are_422(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], field: str
) -> None:
    """Laravel-style validation: 422 with message and errors per field."""
    status, body = await _list(http, url, await _token(http, url), params)
    assert status == 422
    assert body["message"]
    assert field in body["errors"]


async def test_61st_request_in_a_minute_is_429_with_retry_after(
    http: aiohttp.ClientSession, url: str, sim: KatoSim, clock: FakeClock
) -> None:
    """Token requests count too; the 61st request inside 60 s waits for the oldest slot."""
    token = await _token(http, url)  # request 1, at t=0
    clock.advance(20)
    for _ in range(59):  # requests 2..60, at t=20
        assert (await _list(http, url, token))[0] == 200
    async with http.get(f"{url}/v2/availability", headers=bearer(token)) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "40"
        assert await response.json() == {"message": "Too Many Attempts."}
    clock.advance(40)  # the token request leaves the window
    assert (await _list(http, url, token))[0] == 200
    assert (await _list(http, url, token))[0] == 429
    assert sim.max_requests_in_any_window == 62
    assert sim.throttled == 2


async def test_rate_limit_is_configurable(
    http: aiohttp.ClientSession, serve: Serve, market: Market, clock: FakeClock
) -> None:
    """requests_per_minute sets the window's size."""
    sim = KatoSim(market, clock=clock, requests_per_minute=3)
    async with serve(sim.app()) as base:
        token = await _token(http, base)
        assert (await _list(http, base, token))[0] == 200
        assert (await _list(http, base, token))[0] == 200
        assert (await _list(http, base, token))[0] == 429


async def test_show_availability_and_404(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """GET /v2/availability/{id} returns one record; unknown ids are 404."""
    token = await _token(http, url)
    listing_id = market.ids("kato")[0]
    async with http.get(f"{url}/v2/availability/{listing_id}", headers=bearer(token)) as r:
        assert r.status == 200
        assert str((await r.json())["data"]["id"]) == listing_id
    async with http.get(f"{url}/v2/availability/1", headers=bearer(token)) as r:
        assert r.status == 404


async def _all(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> list[Any]:
    _, body = await _list(http, url, await _token(http, url), {**params, "limit": "50"})
    records: list[Any] = body["data"]
    return records


async def test_page_size_is_at_most_50(http: aiohttp.ClientSession, url: str) -> None:
    """limit=50 is served (the seed's changelog makes 50 the maximum); 51 is a 422."""
    token = await _token(http, url)
    status, body = await _list(http, url, token, {"limit": "50"})
    assert status == 200
    assert len(body["data"]) == 50


async def test_repeated_status_names_keep_only_the_last_like_laravel(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """status=available&status=let is, to PHP, status=let: the first value is lost."""
    token = await _token(http, url)
    path = f"{url}/v2/availability?status=available&status=let&limit=50"
    async with http.get(path, headers=bearer(token)) as response:
        body = await response.json()
    served = {_status_slug(r["status"]) for r in body["data"]}
    assert served == {"let"}
    assert any(r["status"] == "available" for r in market.kato_records())


def _status_slug(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("key", "value", "slug", "label"):
            if key in value:
                return str(value[key]).lower().replace(" ", "_")
    return str(value)


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_serves_a_share_of_records_in_php_shapes(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """Today: some records come with 0/1 booleans, status objects, money as text with a
    symbol and a suffix and [] for an empty object; the others as they always were."""
    records = await _all(http, url, {})
    shaped = [r for r in records if isinstance(r["status"], dict)]
    clean = [r for r in records if isinstance(r["status"], str)]
    assert shaped
    assert clean
    assert all(r["for_sale"] in (0, 1, "0", "1") for r in shaped)
    assert all(isinstance(r["for_sale"], bool) for r in clean)
    texts = [r["rent"]["from"] for r in shaped if isinstance(r["rent"], dict) and r["rent"]["from"]]
    assert any(isinstance(t, str) and t.startswith("£") and " ps" in t for t in texts)
    assert any(r["price"] == [] or r["rent"] == [] for r in shaped)


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_serves_every_record_in_the_clean_shape(
    http: aiohttp.ClientSession, url: str
) -> None:
    """The seed's shape: booleans are booleans, status is a string, absent objects null."""
    records = await _all(http, url, {})
    assert all(isinstance(r["for_sale"], bool) for r in records)
    assert all(isinstance(r["status"], str) for r in records)
    assert all(r["price"] != [] and r["rent"] != [] for r in records)


async def test_some_rents_are_quoted_per_annum_or_per_desk(
    http: aiohttp.ClientSession, url: str
) -> None:
    """Rent metrics beyond sq ft and sq m are served (in either mode)."""
    metrics: set[str] = set()
    for page in ("1", "2"):
        _, body = await _list(http, url, await _token(http, url), {"limit": "50", "page": page})
        metrics |= {r["rent"]["metric"] for r in body["data"] if isinstance(r["rent"], dict)}
    assert metrics & {"per_annum", "per_desk"}


async def test_image_urls_point_at_the_simulators_media_host_outside_the_rate_limit(
    http: aiohttp.ClientSession, url: str, sim: KatoSim
) -> None:
    """Served image URLs are on the simulator's own host; a HEAD of one answers an image
    with a Content-Length and does not use the API's request budget."""
    token = await _token(http, url)
    status, body = await _list(http, url, token)
    assert status == 200
    image = next(r["images"][0]["url"] for r in body["data"] if r.get("images"))
    assert image.startswith(f"{url}/media/")
    sim.requests_per_minute = 0  # the API answers 429 from here on; the CDN does not
    async with http.head(image) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert (response.content_length or 0) > 0
