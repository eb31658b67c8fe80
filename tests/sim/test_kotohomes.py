"""The Kotohomes simulator holds clients to the Listing API reference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from listingbot.sim import us_zip_codes
from listingbot.sim.kotohomes import MODES, KotohomesSim, Mode
from listingbot.sim.market import Market
from tests.sim.helpers import Serve

KEY = "test-kotohomes-key"


@pytest.fixture
def empty(market: Market) -> Market:
    for listing_id in market.ids("kotohomes"):
        market.remove("kotohomes", listing_id)
    return market


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """Today's API and the seed's: where they agree, every test runs against both."""
    mode: Mode = request.param
    return mode


@pytest.fixture
async def sim(market: Market, mode: Mode) -> KotohomesSim:
    return KotohomesSim(market, mode=mode)


def _in(*states: str) -> list[tuple[str, str]]:
    """The market's ZIP codes of ``states``: a constraint both modes accept."""
    return [("zip_codes", z) for z in us_zip_codes(*states)]


@pytest.fixture
async def url(serve: Serve, sim: KotohomesSim) -> AsyncIterator[str]:
    async with serve(sim.app()) as base:
        yield f"{base}/v1/listings"


async def _get(
    http: aiohttp.ClientSession, url: str, params: list[tuple[str, str]], *, key: str | None = KEY
) -> tuple[int, Any]:
    query = ([("key", key)] if key is not None else []) + params
    async with http.get(url, params=query) as response:
        return response.status, await response.json()


async def _ids(http: aiohttp.ClientSession, url: str, params: list[tuple[str, str]]) -> set[str]:
    status, body = await _get(http, url, params)
    assert status == 200, body
    return {record["id"] for record in body["data"]}


async def test_missing_key_is_403_with_a_json_message(
    http: aiohttp.ClientSession, url: str
) -> None:
    """No key: 403 and a JSON body that says why."""
    status, body = await _get(http, url, [*_in("NY")], key=None)
    assert status == 403
    assert "key" in body["message"].lower()


async def test_wrong_key_is_403(http: aiohttp.ClientSession, url: str) -> None:
    """An unknown key is refused the same way."""
    status, body = await _get(http, url, [*_in("NY")], key="stolen")
    assert status == 403
    assert body["error"] == "forbidden"


async def test_search_returns_data_newest_update_first_25_by_default(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """The default answer: {"data": [...]}, 25 records, updated_at descending."""
    status, body = await _get(http, url, _in())
    assert status == 200
    assert list(body) == ["data"]
    updated = [r["updated_at"] for r in body["data"]]
    assert len(updated) == 25
    assert updated == sorted(updated, reverse=True)
    newest = max(r["updated_at"] for r in market.kotohomes_records())
    assert updated[0] == newest


async def test_array_filters_accept_brackets_and_plain_repeated_names(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """states[]=NY&states[]=NJ and states=NY&states=NJ select the same listings."""
    wanted = {empty.add_kotohomes(state="NY")["id"], empty.add_kotohomes(state="NJ")["id"]}
    empty.add_kotohomes(state="CA")
    zips = [("zip_codes", z) for z in us_zip_codes()]
    brackets = await _ids(http, url, [("states[]", "NY"), ("states[]", "NJ"), *zips])
    plain = await _ids(http, url, [("states", "NY"), ("states", "NJ"), *zips])
    assert brackets == plain == wanted


async def test_zip_code_and_mls_number_filters_match_exactly(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """zip_codes and mls_numbers select only the listings that carry them."""
    a = empty.add_kotohomes(state="NY", zip_code="10001", mls_number="NYRS-1")
    b = empty.add_kotohomes(state="NY", zip_code="10011", mls_number="NYRS-2")
    assert await _ids(http, url, [("zip_codes[]", "10001")]) == {a["id"]}
    assert await _ids(http, url, [("mls_numbers", "NYRS-2")]) == {b["id"]}


async def test_property_types_filter_and_unknown_type_is_400(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """property_types filters; a value outside the documented list is a 400."""
    condo = empty.add_kotohomes(state="NY", property_type="condominium")
    empty.add_kotohomes(state="NY", property_type="townhouse")
    params = [*_in("NY"), ("property_types[]", "condominium")]
    assert await _ids(http, url, params) == {condo["id"]}
    status, body = await _get(http, url, [*_in("NY"), ("property_types", "castle")])
    assert status == 400
    assert "castle" in body["message"]


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("price", 400_000, 600_000),
        ("living_area", 1200, 1800),
        ("year_built", 1950, 1990),
        ("bedrooms", 2, 4),
        ("bathrooms", 1.5, 2.5),
    ],
)
async def test_range_filters_are_inclusive(
    http: aiohttp.ClientSession,
    url: str,
    empty: Market,
    field: str,
    low: float,
    high: float,
) -> None:
    """X_min and X_max include listings exactly on the bound and exclude the rest."""
    below = empty.add_kotohomes(state="NY", **{field: low - 1 if low > 100 else low - 0.5})
    on_low = empty.add_kotohomes(state="NY", **{field: low})
    on_high = empty.add_kotohomes(state="NY", **{field: high})
    above = empty.add_kotohomes(state="NY", **{field: high + 1 if high > 100 else high + 0.5})
    params = [*_in("NY"), (f"{field}_min", str(low)), (f"{field}_max", str(high))]
    found = await _ids(http, url, params)
    assert found == {on_low["id"], on_high["id"]}
    assert below["id"] not in found
    assert above["id"] not in found


async def test_radius_is_great_circle_miles(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """0.1 degree of latitude is about 6.9 miles: inside a 7 mile radius, outside 6.8."""
    near = empty.add_kotohomes(state="NJ", latitude=40.1, longitude=-74.0)
    empty.add_kotohomes(state="NJ", latitude=40.5, longitude=-74.0)
    centre = [("latitude", "40.0"), ("longitude", "-74.0")]
    assert await _ids(http, url, [*centre, ("radius", "7")]) == {near["id"]}
    assert await _ids(http, url, [*centre, ("radius", "6.8")]) == set()


async def test_type_filter_selects_rentals(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """type=for_rent returns only rentals."""
    rental = empty.add_kotohomes(state="WA", type="for_rent", price=2400)
    empty.add_kotohomes(state="WA", type="for_sale")
    assert await _ids(http, url, [*_in("WA"), ("type", "for_rent")]) == {rental["id"]}


def _whole(stamp: str) -> str:
    """A served timestamp in today's created_min form: whole seconds, Z."""
    return stamp[:19] + "Z"


async def test_created_min_is_inclusive(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """created_min keeps the listing created at exactly that instant, drops older ones."""
    empty.add_kotohomes(state="IL")
    empty.advance(120)
    second = empty.add_kotohomes(state="IL")
    empty.advance(120)
    third = empty.add_kotohomes(state="IL")
    later = [*_in("IL"), ("created_min", _whole(second["created_at"]))]
    assert await _ids(http, url, later) == {second["id"], third["id"]}


async def _created_order(
    http: aiohttp.ClientSession, url: str, empty: Market, sort_by: str
) -> tuple[int, list[str], list[str]]:
    made = []
    for _ in range(3):
        made.append(empty.add_kotohomes(state="IL")["id"])
        empty.advance(120)
    status, body = await _get(http, url, [*_in("IL"), ("sort_by", sort_by)])
    return status, made, [r["id"] for r in body.get("data", [])]


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_sorts_a_field_named_alone_ascending(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """Today: sort_by=created_at answers oldest first (a field without a direction)."""
    status, made, served = await _created_order(http, url, empty, "created_at")
    assert status == 200
    assert served == made


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_takes_an_explicit_direction(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """Today: sort_by=created_at desc answers newest first."""
    status, made, served = await _created_order(http, url, empty, "created_at desc")
    assert status == 200
    assert served == made[::-1]


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_sorts_by_several_fields(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """Today: sort_by is repeatable; the first field decides, the next breaks ties."""
    a = empty.add_kotohomes(state="IL", price=300_000, bedrooms=2)["id"]
    b = empty.add_kotohomes(state="IL", price=200_000, bedrooms=3)["id"]
    c = empty.add_kotohomes(state="IL", price=300_000, bedrooms=4)["id"]
    params = [*_in("IL"), ("sort_by", "price"), ("sort_by", "bedrooms desc")]
    status, body = await _get(http, url, params)
    assert status == 200
    assert [r["id"] for r in body["data"]] == [b, c, a]


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_sorts_created_at_descending(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """The seed: sort_by=created_at answers newest first."""
    status, made, served = await _created_order(http, url, empty, "created_at")
    assert status == 200
    assert served == made[::-1]


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_refuses_an_explicit_direction(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """The seed knows two values of sort_by and nothing else: a direction is a 400."""
    status, _made, _served = await _created_order(http, url, empty, "created_at desc")
    assert status == 400


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_wants_created_min_in_whole_seconds(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """Today: a created_min with a fraction of a second is a 400 that shows the form."""
    listing = empty.add_kotohomes(state="IL")
    status, body = await _get(http, url, [*_in("IL"), ("created_min", "2026-01-01T12:00:00.000Z")])
    assert status == 400
    assert "whole seconds" in body["message"]
    assert await _ids(http, url, [*_in("IL"), ("created_min", "2026-01-01T12:00")]) == {
        listing["id"]
    }


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_takes_created_min_with_milliseconds(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """The seed's simulator reads any ISO-8601 created_min, fractions included."""
    listing = empty.add_kotohomes(state="IL")
    params = [*_in("IL"), ("created_min", listing["created_at"])]
    assert await _ids(http, url, params) == {listing["id"]}


async def test_open_houses_only(http: aiohttp.ClientSession, url: str, empty: Market) -> None:
    """open_houses_only=true keeps listings with an upcoming open house."""
    start = empty.now + timedelta(days=2)
    house = {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
    }
    showing = empty.add_kotohomes(state="MA", open_houses=[house])
    empty.add_kotohomes(state="MA", open_houses=[])
    params = [*_in("MA"), ("open_houses_only", "true")]
    assert await _ids(http, url, params) == {showing["id"]}


async def test_limit_caps_the_page_and_must_be_1_to_50(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """limit=50 gives up to 50 records; 0 and 51 are rejected with a hint."""
    states = _in()
    status, body = await _get(http, url, [*states, ("limit", "50")])
    assert status == 200
    assert len(body["data"]) == 50
    for bad in ("0", "51"):
        status, body = await _get(http, url, [*states, ("limit", bad)])
        assert status == 400
        assert "limit" in body["message"]


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        ([("latitude", "40.7"), ("longitude", "-74")], "radius"),
        ([*_in("NY"), ("price_min", "cheap")], "price_min"),
        ([*_in("NY"), ("sort_by", "colour")], "sort_by"),
        ([*_in("NY"), ("created_min", "last tuesday")], "created_min"),
        ([*_in("NY"), ("type", "auction")], "type"),
        ([*_in("NY"), ("state", "NY")], "Unknown parameter"),
        ([*_in("NY"), ("price_min", "9"), ("price_max", "1")], "price_min"),
    ],
)
async def test_bad_parameters_get_400_with_a_hint(
    http: aiohttp.ClientSession, url: str, params: list[tuple[str, str]], hint: str
) -> None:
    """Each malformed search is a 400 whose message says what to fix."""
    status, body = await _get(http, url, params)
    assert status == 400
    assert hint in body["message"]


async def test_get_one_listing_and_404_when_gone(
    http: aiohttp.ClientSession, url: str, market: Market
) -> None:
    """GET /v1/listings/{id} returns it; after removal it is a JSON 404."""
    listing_id = market.ids("kotohomes")[0]
    async with http.get(f"{url}/{listing_id}", params={"key": KEY}) as response:
        assert response.status == 200
        assert (await response.json())["data"]["id"] == listing_id
    market.remove("kotohomes", listing_id)
    async with http.get(f"{url}/{listing_id}", params={"key": KEY}) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    async with http.get(f"{url}/{listing_id}") as response:
        assert response.status == 403


async def test_request_log_redacts_the_key(
    http: aiohttp.ClientSession, url: str, sim: KotohomesSim
) -> None:
    """The request log keeps the query but never the key's value."""
    await _get(http, url, [("zip_codes[]", "10001")])
    logged = sim.requests[-1]
    assert logged.query == [("key", "***"), ("zip_codes[]", "10001")]
    assert logged.status == 200
    assert KEY not in repr(sim.requests)


async def test_a_search_without_any_geographic_filter_is_400(
    http: aiohttp.ClientSession, url: str
) -> None:
    """Neither version answers a search that names no place at all."""
    status, body = await _get(http, url, [("price_min", "100000")])
    assert status == 400
    assert "latitude" in body["message"]


@pytest.mark.parametrize("mode", ["current"])
async def test_current_api_refuses_states_alone_with_a_hint(
    http: aiohttp.ClientSession, url: str
) -> None:
    """Today's API: states alone is no constraint; the 400 names the ones that are."""
    status, body = await _get(http, url, [("states", "NY"), ("states", "NJ")])
    assert status == 400
    assert "states alone is not a constraint" in body["message"]
    for constraint in ("latitude/longitude/radius", "territory", "zip_codes", "mls_numbers"):
        assert constraint in body["message"]


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_answers_states_alone(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """The seed's API: states[]=NY&states[]=NJ (its own example) is a valid search."""
    wanted = {empty.add_kotohomes(state="NY")["id"], empty.add_kotohomes(state="NJ")["id"]}
    empty.add_kotohomes(state="CA")
    assert await _ids(http, url, [("states[]", "NY"), ("states[]", "NJ")]) == wanted


@pytest.mark.parametrize("mode", ["current"])
async def test_territory_selects_the_listings_inside_it(
    http: aiohttp.ClientSession, url: str, empty: Market
) -> None:
    """territory=<id> is a constraint of its own: only that territory's listings."""
    inside = empty.add_kotohomes(state="NJ", city="Hoboken", zip_code="07030")
    empty.add_kotohomes(state="NJ", city="Newark", zip_code="07102")
    assert await _ids(http, url, [("territory", "hoboken-nj")]) == {inside["id"]}
    status, body = await _get(http, url, [("territory", "atlantis")])
    assert status == 400
    assert "territory" in body["message"].lower()


@pytest.mark.parametrize("mode", ["seed"])
async def test_seed_api_does_not_know_territory(http: aiohttp.ClientSession, url: str) -> None:
    """territory came after the seed: its API calls it an unknown parameter."""
    status, body = await _get(http, url, [("territory", "hoboken-nj"), *_in("NJ")])
    assert status == 400
    assert "Unknown parameter 'territory'" in body["message"]


async def test_photo_urls_point_at_the_simulators_photo_host_which_answers_head(
    http: aiohttp.ClientSession, url: str, sim: KotohomesSim
) -> None:
    """Served records' photo URLs are on the simulator's own host, which answers a HEAD
    with an image type and a Content-Length, as the CDN would."""
    status, body = await _get(http, url, _in("NY"))
    assert status == 200
    record = body["data"][0]
    base = url.removesuffix("/v1/listings")
    assert record["photo_url"].startswith(f"{base}/photos/{record['id']}/")
    assert record["photo_template"].startswith(f"{base}/photos/{record['id']}/")
    async with http.head(record["photo_url"]) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert (response.content_length or 0) > 0


async def test_the_photo_host_status_switch_answers_every_photo_with_it(
    http: aiohttp.ClientSession, url: str, sim: KotohomesSim
) -> None:
    """``photos.status = 404``: every photo is gone from the CDN."""
    _, body = await _get(http, url, _in("NY"))
    sim.photos.status = 404
    async with http.head(body["data"][0]["photo_url"]) as response:
        assert response.status == 404
