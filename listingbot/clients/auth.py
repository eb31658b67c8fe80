"""Credentials as objects: an API key in the query string, or OAuth client credentials.

``ClientCredentialsAuth`` caches its token until shortly before it expires and fetches a new
one under an ``asyncio.Lock``, so many concurrent callers cause one token request; a 401
drops the token that failed and the request path replays the call once.

:func:`client_credentials_api` is the one place an API client is wired to OAuth client
credentials (Kato and ChatKitty): the token requests share the API's session, limiter,
observer, timeout and retry policy.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog
from pydantic import SecretStr

from listingbot.clients.base import (
    DEFAULT_RETRY,
    ApiClient,
    PreparedRequest,
    RequestObserver,
    RetryPolicy,
)
from listingbot.clock import Clock
from listingbot.errors import UpstreamAuthError, UpstreamRejected, UpstreamUnavailable
from listingbot.ratelimit import SlidingWindowLimiter


class ApiKeyAuth:
    """A static key sent as a query parameter (Kotohomes: ``?key=...``)."""

    def __init__(self, param: str, key: SecretStr) -> None:
        self.param = param
        self._key = key

    def __repr__(self) -> str:
        return f"ApiKeyAuth(param={self.param!r}, key=***)"

    async def apply(self, request: PreparedRequest) -> None:
        request.params.append((self.param, self._key.get_secret_value()))

    async def invalidate(self, used: PreparedRequest) -> bool:
        # A key cannot be refreshed: replaying with the same one would fail the same way.
        return False

    def secrets(self) -> Collection[str]:
        return (self._key.get_secret_value(),)


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # clock.monotonic() after which a new token is fetched

    def __repr__(self) -> str:
        return f"_Token(refresh_at={self.refresh_at})"


class ClientCredentialsAuth:
    """OAuth 2.0 client credentials, bearer token cached until ``early_s`` before expiry.

    ``style="form_body"`` (Kato) sends ``client_id``/``client_secret``/``scope`` in the
    form body; ``style="basic"`` (ChatKitty) sends them as HTTP Basic auth. The refresh
    margin is ``early_s`` but at most 5% of the token's lifetime, so short-lived tokens are
    not refreshed on every call. The token request goes through ``limiter`` when given
    (Kato counts token requests against its rate limit).
    """

    def __init__(
        self,
        *,
        api: str,
        token_url: str,
        client_id: SecretStr,
        client_secret: SecretStr,
        session: aiohttp.ClientSession,
        clock: Clock,
        style: Literal["form_body", "basic"],
        scope: str | None = None,
        default_lifetime_s: float = 14 * 86400,
        early_s: float = 300.0,
        limiter: SlidingWindowLimiter | None = None,
        observer: RequestObserver | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.api = api
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._style = style
        self._scope = scope
        self._default_lifetime_s = default_lifetime_s
        self._early_s = early_s
        self._observer = observer
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        # Encoded by hand: aiohttp.BasicAuth is deprecated in newer aiohttp releases and its
        # replacement does not exist in the older ones this project supports.
        pair = f"{client_id.get_secret_value()}:{client_secret.get_secret_value()}"
        self._basic = SecretStr(base64.b64encode(pair.encode()).decode("ascii"))
        self._http = ApiClient(
            api=api,
            base_url=token_url,
            session=session,
            clock=clock,
            retry=retry,
            timeout_s=timeout_s,
            limiter=limiter,
            observer=observer,
            secrets=(
                client_id.get_secret_value(),
                client_secret.get_secret_value(),
                self._basic.get_secret_value(),
            ),
        )

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(api={self.api!r}, token_url={self.token_url!r})"

    async def ensure_token(self) -> None:
        """Hold a valid token (fetching one if needed): the credentials check."""
        await self._current_token()

    async def apply(self, request: PreparedRequest) -> None:
        token = await self._current_token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        request.credential = token

    async def invalidate(self, used: PreparedRequest) -> bool:
        # Only drop the token the failed request carried: a concurrent caller may already
        # have replaced it, and that newer token deserves its chance.
        if self._token is not None and used.credential is self._token:
            self._token = None
        return True

    def secrets(self) -> Collection[str]:
        values = [self._client_id.get_secret_value(), self._client_secret.get_secret_value()]
        if self._token is not None:
            values.append(self._token.value)
        return values

    async def _current_token(self) -> _Token:
        token = self._token
        if token is not None and self._clock.monotonic() < token.refresh_at:
            return token
        async with self._lock:
            # Whoever held the lock before us may have fetched a fresh token already.
            token = self._token
            if token is not None and self._clock.monotonic() < token.refresh_at:
                return token
            self._token = None
            token = await self._fetch()
            self._token = token
            return token

    async def _fetch(self) -> _Token:
        form = {"grant_type": "client_credentials"}
        headers: dict[str, str] = {}
        if self._style == "basic":
            headers["Authorization"] = f"Basic {self._basic.get_secret_value()}"
        else:
            form["client_id"] = self._client_id.get_secret_value()
            form["client_secret"] = self._client_secret.get_secret_value()
        if self._scope is not None:
            form["scope"] = self._scope
        requested_at = self._clock.monotonic()
        try:
            payload = await self._http.request("POST", self.token_url, data=form, headers=headers)
        except UpstreamAuthError as err:
            raise UpstreamAuthError(
                self.api,
                f"the token endpoint refused the client credentials: {err.detail}",
                status=err.status,
            ) from err
        except UpstreamRejected as err:
            # OAuth servers answer bad credentials with 400 invalid_client as often as 401.
            raise UpstreamAuthError(
                self.api, f"the token request was rejected: {err.detail}", status=err.status
            ) from err
        token = self._parse(payload, requested_at)
        if self._observer is not None:
            self._observer.token_fetched(self.api)
        structlog.get_logger(__name__).info("upstream_token_fetched", api=self.api)
        return token

    def _parse(self, payload: Any, requested_at: float) -> _Token:
        access = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(access, str) or not access.strip():
            raise UpstreamUnavailable(
                self.api, "the token endpoint answered without an access_token"
            )
        lifetime = self._default_lifetime_s
        expires_in = payload.get("expires_in")
        try:
            seconds = float(expires_in) if expires_in is not None else math.nan
        except (TypeError, ValueError):
            seconds = math.nan
        if math.isfinite(seconds) and seconds > 0:
            lifetime = seconds
        margin = min(self._early_s, lifetime * 0.05)
        # Counted from when the request was sent: the server's clock started no earlier.
        return _Token(access.strip(), requested_at + lifetime - margin)


def client_credentials_api(
    *,
    api: str,
    base_url: str,
    token_url: str,
    client_id: SecretStr,
    client_secret: SecretStr,
    style: Literal["form_body", "basic"],
    session: aiohttp.ClientSession,
    clock: Clock,
    token_lifetime_s: float,
    scope: str | None = None,
    refresh_early_s: float = 300.0,
    limiter: SlidingWindowLimiter | None = None,
    observer: RequestObserver | None = None,
    timeout_s: float = 30.0,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[ApiClient, ClientCredentialsAuth]:
    """An API client whose requests carry a client-credentials bearer token, and its auth.

    The token endpoint is called through the same ``limiter`` (Kato counts token requests
    against its rate limit), ``observer``, ``timeout_s`` and ``retry`` as the API itself.
    ``token_lifetime_s`` is used when a token answer has no ``expires_in``. The auth is
    returned too, for a credentials check (:meth:`ClientCredentialsAuth.ensure_token`).
    """
    auth = ClientCredentialsAuth(
        api=api,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        session=session,
        clock=clock,
        style=style,
        scope=scope,
        default_lifetime_s=token_lifetime_s,
        early_s=refresh_early_s,
        limiter=limiter,
        observer=observer,
        timeout_s=timeout_s,
        retry=retry,
    )
    http = ApiClient(
        api=api,
        base_url=base_url,
        session=session,
        clock=clock,
        auth=auth,
        retry=retry,
        timeout_s=timeout_s,
        limiter=limiter,
        observer=observer,
    )
    return http, auth
