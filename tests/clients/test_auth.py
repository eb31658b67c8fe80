"""Auth objects: API key in the query, client-credentials tokens cached and refreshed."""

from __future__ import annotations

import asyncio
import base64
from typing import Literal

import aiohttp
import pytest
import yarl
from pydantic import SecretStr

from listingbot.clients.auth import ApiKeyAuth, ClientCredentialsAuth
from listingbot.clients.base import ApiClient, PreparedRequest, RetryPolicy
from listingbot.clock import FakeClock
from listingbot.errors import UpstreamAuthError, UpstreamRejected, UpstreamUnavailable
from listingbot.ratelimit import SlidingWindowLimiter
from tests.clients.conftest import FakeServer, RecordingObserver, Reply, Seen

CLIENT_ID = "client-id-123"
CLIENT_SECRET = "client-secret-456"


class TokenIssuer:
    """Issues tok-1, tok-2, ... and says which are still valid."""

    def __init__(self, expires_in: float | None = 3600) -> None:
        self.issued = 0
        self.expires_in = expires_in
        self.revoked: set[str] = set()

    def token(self, _: Seen) -> Reply:
        self.issued += 1
        body: dict[str, object] = {"access_token": f"tok-{self.issued}", "token_type": "bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return Reply(json=body)

    def data(self, seen: Seen) -> Reply:
        token = seen.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("tok-") or token in self.revoked:
            return Reply(401, json={"error": "unauthorized", "error_description": "expired"})
        return Reply(json={"token": token})


def setup(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    *,
    style: Literal["form_body", "basic"] = "form_body",
    issuer: TokenIssuer | None = None,
    limiter: SlidingWindowLimiter | None = None,
    observer: RecordingObserver | None = None,
    early_s: float = 300.0,
) -> tuple[ApiClient, ClientCredentialsAuth, TokenIssuer]:
    issuer = issuer or TokenIssuer()
    server.script("POST", "/oauth/token", issuer.token)
    server.script("GET", "/data", issuer.data)
    auth = ClientCredentialsAuth(
        api="demo",
        token_url=f"{server.url}/oauth/token",
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(CLIENT_SECRET),
        session=session,
        clock=clock,
        style=style,
        scope="*" if style == "form_body" else None,
        default_lifetime_s=1000.0,
        early_s=early_s,
        limiter=limiter,
        observer=observer,
        retry=RetryPolicy(max_attempts=2),
    )
    client = ApiClient(
        api="demo",
        base_url=server.url,
        session=session,
        clock=clock,
        auth=auth,
        limiter=limiter,
        observer=observer,
    )
    return client, auth, issuer


async def test_api_key_is_added_to_the_query_string() -> None:
    """ApiKeyAuth appends ?key=<value> and cannot be refreshed."""
    auth = ApiKeyAuth("key", SecretStr("k-1"))
    request = PreparedRequest("GET", yarl.URL("http://h/x"))
    await auth.apply(request)
    assert request.params == [("key", "k-1")]
    assert await auth.invalidate(request) is False
    assert "k-1" not in repr(auth)


async def test_form_body_style_sends_credentials_in_the_form(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Kato style: grant_type, client_id, client_secret and scope in the form body."""
    client, _, _ = setup(server, session, clock)
    assert await client.request("GET", "/data") == {"token": "tok-1"}
    token_request = server.seen("POST", "/oauth/token")[0]
    assert token_request.form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "*",
    }
    assert "Authorization" not in token_request.headers


async def test_basic_style_sends_credentials_as_http_basic(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """ChatKitty style: Basic id:secret header, only grant_type in the form."""
    client, _, _ = setup(server, session, clock, style="basic")
    await client.request("GET", "/data")
    token_request = server.seen("POST", "/oauth/token")[0]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {expected}"
    assert token_request.form == {"grant_type": "client_credentials"}


async def test_data_requests_carry_the_bearer_token_and_never_the_credentials(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Authorization: Bearer <token>; the client id and secret stay off data requests."""
    client, _, _ = setup(server, session, clock)
    await client.request("GET", "/data", params=[("page", "1")])
    data_request = server.seen("GET", "/data")[0]
    assert data_request.headers["Authorization"] == "Bearer tok-1"
    assert data_request.headers["Accept"] == "application/json"
    assert CLIENT_ID not in repr(data_request)
    assert CLIENT_SECRET not in repr(data_request)


async def test_the_token_is_cached_across_requests(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    observer: RecordingObserver,
) -> None:
    """Three calls, one token request (and one token_fetched event)."""
    client, _, issuer = setup(server, session, clock, observer=observer)
    for _ in range(3):
        await client.request("GET", "/data")
    assert issuer.issued == 1
    assert observer.tokens == ["demo"]


async def test_the_token_is_refreshed_early_before_it_expires(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A token of 3600 s is replaced after 3600 - early_s, not at expiry."""
    client, _, issuer = setup(server, session, clock, early_s=60.0)
    await client.request("GET", "/data")
    clock.advance(3600 - 61)
    await client.request("GET", "/data")
    assert issuer.issued == 1
    clock.advance(2)
    assert await client.request("GET", "/data") == {"token": "tok-2"}


async def test_a_short_lived_token_is_not_refreshed_on_every_call(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The early margin is at most 5% of the lifetime, so a 10 s token lives 9.5 s."""
    client, _, issuer = setup(server, session, clock, issuer=TokenIssuer(expires_in=10))
    await client.request("GET", "/data")
    clock.advance(9.0)
    await client.request("GET", "/data")
    assert issuer.issued == 1


async def test_a_missing_expires_in_uses_the_default_lifetime(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """No expires_in: the token lives default_lifetime_s (1000 s here)."""
    client, _, issuer = setup(server, session, clock, issuer=TokenIssuer(expires_in=None))
    await client.request("GET", "/data")
    clock.advance(900)
    await client.request("GET", "/data")
    assert issuer.issued == 1
    clock.advance(60)
    await client.request("GET", "/data")
    assert issuer.issued == 2


async def test_a_401_fetches_one_new_token_and_replays(
    server: FakeServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    observer: RecordingObserver,
) -> None:
    """An expired token: one refresh, the same call replayed, the caller sees success."""
    client, _, issuer = setup(server, session, clock, observer=observer)
    await client.request("GET", "/data")
    issuer.revoked.add("tok-1")
    assert await client.request("GET", "/data") == {"token": "tok-2"}
    assert issuer.issued == 2
    assert len(server.seen("GET", "/data")) == 3
    assert observer.retries == ["401"]


async def test_a_second_401_is_an_auth_error(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """If the fresh token is refused too, UpstreamAuthError: no refresh loop."""
    client, _, issuer = setup(server, session, clock)
    server.script("GET", "/data", Reply(401, json={"error": "unauthorized"}))
    with pytest.raises(UpstreamAuthError) as caught:
        await client.request("GET", "/data")
    assert caught.value.status == 401
    assert issuer.issued == 2
    assert len(server.seen("GET", "/data")) == 2


async def test_a_401_replay_happens_even_without_retries(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """retry=False still allows the one refresh + replay after a 401."""
    client, _, issuer = setup(server, session, clock)
    await client.request("GET", "/data")
    issuer.revoked.add("tok-1")
    assert await client.request("GET", "/data", retry=False) == {"token": "tok-2"}


async def test_concurrent_callers_cause_one_token_request(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Twenty simultaneous first calls share a single token request."""
    client, _, issuer = setup(server, session, clock)
    results = await asyncio.gather(*(client.request("GET", "/data") for _ in range(20)))
    assert issuer.issued == 1
    assert all(result == {"token": "tok-1"} for result in results)


async def test_concurrent_401s_cause_one_refresh(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Many callers hitting the same expired token refresh it once between them."""
    client, _, issuer = setup(server, session, clock)
    await client.request("GET", "/data")
    issuer.revoked.add("tok-1")
    await asyncio.gather(*(client.request("GET", "/data") for _ in range(10)))
    assert issuer.issued == 2


@pytest.mark.parametrize("status", [400, 401])
async def test_refused_credentials_are_an_auth_error_without_the_credentials(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock, status: int
) -> None:
    """400/401 from the token endpoint: UpstreamAuthError naming the API, not the secrets."""
    client, _, _ = setup(server, session, clock)
    echo = {"error": "invalid_client", "error_description": f"bad {CLIENT_ID}/{CLIENT_SECRET}"}
    server.script("POST", "/oauth/token", Reply(status, json=echo))
    with pytest.raises(UpstreamAuthError) as caught:
        await client.request("GET", "/data")
    text = str(caught.value)
    assert text.startswith("demo: ")
    assert CLIENT_ID not in text
    assert CLIENT_SECRET not in text
    assert not server.seen("GET", "/data")


async def test_token_endpoint_outage_is_unavailable(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """5xx from the token endpoint (after its retries) is retryable, not an auth error."""
    client, _, _ = setup(server, session, clock)
    server.script("POST", "/oauth/token", Reply(502))
    with pytest.raises(UpstreamUnavailable):
        await client.request("GET", "/data")
    assert len(server.seen("POST", "/oauth/token")) == 2


async def test_a_token_answer_without_access_token_is_unavailable(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A 200 without access_token is no token."""
    client, _, _ = setup(server, session, clock)
    server.script("POST", "/oauth/token", Reply(json={"token_type": "bearer"}))
    with pytest.raises(UpstreamUnavailable, match="access_token"):
        await client.request("GET", "/data")


async def test_the_token_request_goes_through_the_limiter(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """With one slot per minute, token request + data request take two minutes' slots."""
    limiter = SlidingWindowLimiter(1, 60.0, clock)
    client, _, _ = setup(server, session, clock, limiter=limiter)
    await client.request("GET", "/data")
    assert clock.monotonic() == pytest.approx(60.0)


def test_reprs_show_no_secrets(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """Neither the auth object nor its client prints a credential."""
    auth = ClientCredentialsAuth(
        api="demo",
        token_url="http://h/oauth/token",
        client_id=SecretStr(CLIENT_ID),
        client_secret=SecretStr(CLIENT_SECRET),
        session=session,
        clock=clock,
        style="basic",
    )
    assert CLIENT_ID not in repr(auth)
    assert CLIENT_SECRET not in repr(auth)
    assert CLIENT_SECRET not in repr(vars(auth))


async def test_a_refreshed_token_is_masked_in_errors_from_its_first_request(
    server: FakeServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An error body that echoes the bearer token shows it masked, before and after a
    refresh replaced the token the client masked until then."""
    client, _, issuer = setup(server, session, clock)
    server.script(
        "GET", "/echo", lambda seen: Reply(400, text=f"bad {seen.headers['Authorization']}")
    )
    with pytest.raises(UpstreamRejected) as first:
        await client.request("GET", "/echo")
    clock.advance(3600)
    with pytest.raises(UpstreamRejected) as second:
        await client.request("GET", "/echo")
    assert issuer.issued == 2
    assert first.value.hint == second.value.hint == "bad Bearer ***"
    assert "tok-" not in str(first.value) + str(second.value)
