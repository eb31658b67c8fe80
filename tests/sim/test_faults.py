"""Faults switch on and off at run time, reach every simulator, and are counted."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from listingbot.clock import FakeClock
from listingbot.sim import us_zip_codes
from listingbot.sim.chatkitty import ChatKittySim
from listingbot.sim.faults import (
    FIELD_DROPPING_VARIANTS,
    HUGE_TEXT_CHARS,
    REJECTABLE_VARIANTS,
    SURVIVABLE_VARIANTS,
    VARIANTS,
    Faults,
    hostile_variant,
    make_hostile,
)
from listingbot.sim.kato import KatoSim
from listingbot.sim.kotohomes import KotohomesSim
from listingbot.sim.market import Market
from tests.sim.helpers import Serve, basic, bearer

KEY = "test-kotohomes-key"
KATO_FORM = {
    "grant_type": "client_credentials",
    "client_id": "test-kato-id",
    "client_secret": "test-kato-secret",
    "scope": "*",
}


@dataclass
class Stack:
    faults: Faults
    market: Market
    kotohomes: KotohomesSim
    kato: KatoSim
    chatkitty: ChatKittySim
    kotohomes_url: str
    kato_url: str
    chatkitty_url: str


@pytest.fixture
async def stack(serve: Serve, market: Market, clock: FakeClock) -> AsyncIterator[Stack]:
    faults = Faults(seed=3)
    kotohomes = KotohomesSim(market, faults=faults)
    kato = KatoSim(market, clock=clock, faults=faults)
    chatkitty = ChatKittySim(clock=clock, faults=faults)
    async with (
        serve(kotohomes.app()) as k_url,
        serve(kato.app()) as kato_url,
        serve(chatkitty.app()) as ck_url,
    ):
        yield Stack(faults, market, kotohomes, kato, chatkitty, k_url, kato_url, ck_url)


def _search(stack: Stack) -> str:
    zips = "".join(f"&zip_codes={z}" for z in us_zip_codes("NY", "NJ", "CA"))
    return f"{stack.kotohomes_url}/v1/listings?key={KEY}{zips}&limit=50"


async def _kato_token(http: aiohttp.ClientSession, stack: Stack) -> str:
    async with http.post(f"{stack.kato_url}/oauth/token", data=KATO_FORM) as response:
        assert response.status == 200
        token: str = (await response.json())["access_token"]
    return token


async def _chatkitty_auth(http: aiohttp.ClientSession, stack: Stack) -> dict[str, str]:
    headers = {"Authorization": basic("test-ck-id", "test-ck-secret")}
    data = {"grant_type": "client_credentials"}
    async with http.post(
        f"{stack.chatkitty_url}/oauth/token", data=data, headers=headers
    ) as response:
        return bearer((await response.json())["access_token"])


def test_set_rejects_unknown_faults_and_bad_rates() -> None:
    """Typos and probabilities outside 0..1 are errors, not silent no-ops."""
    faults = Faults()
    with pytest.raises(ValueError, match="unknown fault"):
        faults.set(rate_50x=0.5)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        faults.set(rate_500=1.5)
    faults.set(rate_500=0.25, timeout_hold_s=0.5)
    assert faults.rates["rate_500"] == 0.25
    assert faults.timeout_hold_s == 0.5
    faults.clear()
    assert not any(faults.rates.values())
    assert faults.timeout_hold_s == 5.0


def test_corruption_is_stable_per_id_and_grows_with_the_rate() -> None:
    """The same id gets the same corruption; a higher rate corrupts a superset."""
    ids = [f"li_{n:020d}" for n in range(400)]
    low = {i: hostile_variant("kotohomes", i, 0.1) for i in ids}
    high = {i: hostile_variant("kotohomes", i, 0.5) for i in ids}
    assert low == {i: hostile_variant("kotohomes", i, 0.1) for i in ids}
    corrupted_low = {i for i, v in low.items() if v}
    assert corrupted_low <= {i for i, v in high.items() if v}
    assert all(high[i] == low[i] for i in corrupted_low)
    assert 20 < len(corrupted_low) < 60
    assert {v for v in high.values() if v} == set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_kotohomes_corruption_does_what_its_name_says(market: Market, variant: str) -> None:
    """Every variant produces its kind of damage and leaves the original alone."""
    original = market.kotohomes_records()[0]
    snapshot = copy.deepcopy(original)
    bad = make_hostile("kotohomes", original, variant)
    assert original == snapshot
    assert bad != original
    checks: dict[str, Callable[[dict[str, Any]], bool]] = {
        "missing_id": lambda r: "id" not in r,
        "null_fields": lambda r: r["price"] is None and r["city"] is None,
        "wrong_types": lambda r: r["bedrooms"] == "three",
        "negative_price": lambda r: r["price"] < 0,
        "absurd_price": lambda r: r["price"] > 1e10,
        "invalid_dates": lambda r: r["updated_at"] == "yesterday",
        "huge_description": lambda r: len(r["description"]) == HUGE_TEXT_CHARS,
        "bad_surrogates": lambda r: "\ud800" in r["description"],
        "mentions": lambda r: "<@here>" in r["description"] and "<#general>" in r["description"],
        "control_chars": lambda r: "\x00" in r["description"] and "\x1b" in r["description"],
    }
    assert checks[variant](bad)
    assert variant in REJECTABLE_VARIANTS | FIELD_DROPPING_VARIANTS | SURVIVABLE_VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_kato_corruption_changes_the_record(market: Market, variant: str) -> None:
    """Kato records are corrupted too, without touching the original."""
    original = market.kato_records()[0]
    bad = make_hostile("kato", original, variant)
    assert bad != original
    assert ("id" in bad) == (variant != "missing_id")


async def test_500_switches_on_counts_and_switches_off(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """rate_500=1 fails every request in the API's error shape; clear() restores."""
    stack.faults.set(rate_500=1.0)
    async with http.get(_search(stack)) as response:
        assert response.status == 500
        assert (await response.json())["error"] == "server_error"
    assert stack.faults.counts["500"] == 1
    assert stack.kotohomes.requests[-1].fault == "500"
    stack.faults.clear()
    async with http.get(_search(stack)) as response:
        assert response.status == 200
    assert stack.faults.counts["500"] == 1


async def test_429_comes_with_and_without_retry_after(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """Half the injected 429s carry Retry-After: 1, half carry nothing."""
    stack.faults.set(rate_429=1.0)
    retry_after: list[str | None] = []
    for _ in range(30):
        async with http.get(f"{stack.chatkitty_url}/v1/channels") as response:
            assert response.status == 429
            assert (await response.json())["error"] == "TooManyRequestsError"
            retry_after.append(response.headers.get("Retry-After"))
    assert set(retry_after) == {"1", None}
    assert stack.faults.counts["429"] == 30


async def test_503_uses_the_kato_error_shape(http: aiohttp.ClientSession, stack: Stack) -> None:
    """Injected errors speak each API's own dialect."""
    stack.faults.set(rate_503=1.0)
    async with http.post(f"{stack.kato_url}/oauth/token", data=KATO_FORM) as response:
        assert response.status == 503
        assert await response.json() == {"message": "Service Unavailable"}


async def test_reset_drops_the_connection(http: aiohttp.ClientSession, stack: Stack) -> None:
    """rate_reset: the client sees a disconnect, the log a request without a status."""
    stack.faults.set(rate_reset=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(_search(stack)) as response:
            await response.read()
    assert stack.faults.counts["reset"] >= 1
    assert stack.kotohomes.requests[-1].status is None
    assert stack.kotohomes.requests[-1].fault == "reset"


async def test_slow_responses_still_answer(http: aiohttp.ClientSession, stack: Stack) -> None:
    """rate_slow delays, then answers normally."""
    stack.faults.set(rate_slow=1.0, slow_s=0.01)
    async with http.get(_search(stack)) as response:
        assert response.status == 200
    assert stack.faults.counts["slow"] == 1


async def test_timeout_holds_the_answer_after_the_send_took_effect(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """A held send times out on the client although the message was stored."""
    auth = await _chatkitty_auth(http, stack)
    stack.faults.set(rate_timeout=1.0, timeout_hold_s=2.0)
    url = f"{stack.chatkitty_url}/v1/channels/702/messages"
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            url,
            json={"type": "TEXT", "body": "held"},
            headers=auth,
            timeout=aiohttp.ClientTimeout(total=0.2),
        ) as response:
            await response.read()
    assert [m["body"] for m in stack.chatkitty.messages[702]] == ["held"]
    assert stack.faults.counts["timeout"] == 1


async def test_token_expiry_really_expires_the_token(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """rate_token_expiry: 401, and the same token keeps failing; a new one works."""
    token = await _kato_token(http, stack)
    stack.faults.set(rate_token_expiry=1.0)
    fresh = await _kato_token(http, stack)  # the token endpoint is exempt
    async with http.get(f"{stack.kato_url}/v2/availability", headers=bearer(token)) as response:
        assert response.status == 401
    stack.faults.clear()
    async with http.get(f"{stack.kato_url}/v2/availability", headers=bearer(token)) as response:
        assert response.status == 401
    async with http.get(f"{stack.kato_url}/v2/availability", headers=bearer(fresh)) as response:
        assert response.status == 200
    assert stack.faults.counts["token_expiry"] == 1


async def test_commit_then_fail_stores_the_message_and_fails_the_answer(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """The ambiguous failure: every send is stored, every answer is a 500 or a reset."""
    auth = await _chatkitty_auth(http, stack)
    stack.faults.set(rate_commit_then_fail=1.0)
    outcomes: list[str] = []
    for n in range(8):
        try:
            async with http.post(
                f"{stack.chatkitty_url}/v1/channels/702/messages",
                json={"type": "TEXT", "body": f"m{n}"},
                headers=auth,
            ) as response:
                outcomes.append(str(response.status))
        except aiohttp.ClientConnectionError:
            outcomes.append("reset")
    assert set(outcomes) == {"500", "reset"}
    assert len(stack.chatkitty.messages[702]) == 8
    assert stack.faults.counts["commit_then_fail"] == 8
    async with http.get(f"{stack.chatkitty_url}/v1/channels", headers=auth) as response:
        assert response.status == 200  # reads are not affected


async def test_malformed_records_are_stable_and_counted(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """rate_malformed corrupts the same records in every response."""
    stack.faults.set(rate_malformed=0.3)
    async with http.get(_search(stack)) as response:
        first = (await response.json())["data"]
    corrupted = dict(stack.faults.corrupted)
    async with http.get(_search(stack)) as response:
        second = (await response.json())["data"]
    assert first == second
    assert corrupted == stack.faults.corrupted
    assert 0 < len(corrupted) < len(first)
    assert stack.faults.counts["malformed"] == 2 * len(corrupted)
    served_ids = {r.get("id") for r in first}
    for (source, listing_id), variant in corrupted.items():
        assert source == "kotohomes"
        assert (listing_id in served_ids) == (variant != "missing_id")


async def test_market_hostile_rate_applies_without_faults(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """The market's own hostile_rate corrupts records with every fault switched off."""
    stack.market.hostile_rate = 0.5
    token = await _kato_token(http, stack)
    async with http.get(f"{stack.kato_url}/v2/availability", headers=bearer(token)) as response:
        assert response.status == 200
    assert any(source == "kato" for source, _ in stack.faults.corrupted)


async def test_enabled_for_limits_faults_to_some_simulators(
    http: aiohttp.ClientSession, stack: Stack
) -> None:
    """Faults apply only to the simulators listed in enabled_for."""
    stack.faults.set(rate_500=1.0)
    stack.faults.enabled_for = {"kato"}
    async with http.get(_search(stack)) as response:
        assert response.status == 200
    async with http.post(f"{stack.kato_url}/oauth/token", data=KATO_FORM) as response:
        assert response.status == 500
