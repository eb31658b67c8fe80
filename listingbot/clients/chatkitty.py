"""ChatKitty Platform API: channels and channel messages (endpoints and shapes only).

Bodies go out in camelCase (every example and SDK does, whatever the schema names say).
HAL ``_links`` may use any path layout, so they are followed as returned, but only on the
configured host: the bearer token must not be handed to whatever host a link names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
import yarl
from pydantic import SecretStr

from listingbot.clients.auth import ClientCredentialsAuth
from listingbot.clients.base import DEFAULT_RETRY, ApiClient, RequestObserver, RetryPolicy
from listingbot.clock import Clock
from listingbot.errors import UpstreamUnavailable

API = "chatkitty"
# Used only when the token answer lacks expires_in (documented ~12 h); a 401 refreshes anyway.
TOKEN_LIFETIME_S = 3600.0
TOKEN_EARLY_S = 60.0
MAX_PAGES = 10_000  # a server that never stops paging is a broken server
MAX_MESSAGE_PAGE = 100  # the largest message page ChatKitty serves


@dataclass(frozen=True)
class Channel:
    """A channel as listingbot needs it (direct channels have no name: empty string)."""

    id: int
    name: str
    display_name: str | None
    type: str


@dataclass(frozen=True)
class SentMessage:
    """What ChatKitty answered to a send."""

    id: int
    channel_id: int
    created_time: str | None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_channel(raw: Any) -> Channel | None:
    """A :class:`Channel` from a ChannelResource, or None when it has no usable id."""
    if not isinstance(raw, Mapping):
        return None
    channel_id = _as_int(raw.get("id"))
    if channel_id is None:
        return None
    name = raw.get("name")
    display = raw.get("displayName", raw.get("display_name"))
    kind = raw.get("type")
    return Channel(
        id=channel_id,
        name=name if isinstance(name, str) else "",
        display_name=display if isinstance(display, str) else None,
        type=kind if isinstance(kind, str) else "UNKNOWN",
    )


def _older_than(message: Mapping[str, Any], since: datetime) -> bool:
    """Whether a message resource says it was created before ``since`` (False when its
    ``createdTime`` is missing or unreadable: such a message proves nothing)."""
    raw = message.get("createdTime", message.get("created_time"))
    if not isinstance(raw, str):
        return False
    try:
        created = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created < since


def hal_link(payload: Mapping[str, Any], rel: str) -> str | None:
    """The href of link ``rel``; accepts the object form and the (documented) array form."""
    links = payload.get("_links")
    entry: Any = None
    if isinstance(links, Mapping):
        entry = links.get(rel)
    elif isinstance(links, list):
        entry = next(
            (item for item in links if isinstance(item, Mapping) and item.get("rel") == rel),
            None,
        )
    if isinstance(entry, list):  # HAL allows an array of link objects per rel
        entry = entry[0] if entry else None
    href = entry.get("href") if isinstance(entry, Mapping) else None
    return href if isinstance(href, str) and href.strip() else None


def _embedded(payload: Any, name: str) -> list[Any]:
    if not isinstance(payload, Mapping):
        raise UpstreamUnavailable(API, f"a {name} page is not a JSON object")
    embedded = payload.get("_embedded")
    if embedded is None:
        return []  # an empty page may omit `_embedded` altogether
    items = embedded.get(name) if isinstance(embedded, Mapping) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise UpstreamUnavailable(API, f"`_embedded.{name}` is not a list")
    return items


class ChatKittyClient:
    """Lists and checks channels, sends messages, reads a channel's recent messages."""

    def __init__(
        self,
        *,
        api_url: str,
        path_prefix: str,
        token_url: str,
        client_id: SecretStr,
        client_secret: SecretStr,
        session: aiohttp.ClientSession,
        clock: Clock,
        timeout_s: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        observer: RequestObserver | None = None,
    ) -> None:
        self.prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self._origin = yarl.URL(api_url).origin()
        self._auth = ClientCredentialsAuth(
            api=API,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            session=session,
            clock=clock,
            style="basic",
            default_lifetime_s=TOKEN_LIFETIME_S,
            early_s=TOKEN_EARLY_S,
            observer=observer,
            timeout_s=timeout_s,
            retry=retry,
        )
        self.timeout_s = float(timeout_s)
        self._http = ApiClient(
            api=API,
            base_url=api_url,
            session=session,
            clock=clock,
            auth=self._auth,
            retry=retry,
            timeout_s=timeout_s,
            observer=observer,
        )

    def __repr__(self) -> str:
        return f"ChatKittyClient(api_url={self._http.base_url!r}, prefix={self.prefix!r})"

    async def list_channels(self, *, page_size: int = 100) -> list[Channel]:
        """Every channel the application can see (HAL pages, zero-based, by number)."""
        channels: list[Channel] = []
        for page in range(MAX_PAGES):
            payload = await self._http.request(
                "GET",
                f"{self.prefix}/channels",
                params=[("page", str(page)), ("size", str(page_size))],
            )
            items = _embedded(payload, "channels")
            for raw in items:
                channel = parse_channel(raw)
                if channel is None:
                    structlog.get_logger(__name__).warning(
                        "chatkitty_bad_channel", page=page, reason="no usable id"
                    )
                else:
                    channels.append(channel)
            meta = payload.get("page")
            meta = meta if isinstance(meta, Mapping) else {}
            number = _as_int(meta.get("number"))
            total_pages = _as_int(meta.get("totalPages", meta.get("total_pages")))
            if number is not None and number != page:
                raise UpstreamUnavailable(API, f"asked for channel page {page}, got {number}")
            if hal_link(payload, "next") is None or not items:
                return channels
            if total_pages is not None and page + 1 >= total_pages:
                return channels
        raise UpstreamUnavailable(API, f"channel listing did not end after {MAX_PAGES} pages")

    async def get_channel(self, channel_id: int) -> Channel:
        """One channel; :class:`listingbot.errors.NotFound` when it does not exist."""
        payload = await self._http.request("GET", f"{self.prefix}/channels/{int(channel_id)}")
        channel = parse_channel(payload)
        if channel is None:
            raise UpstreamUnavailable(API, f"channel {channel_id} answered without an id")
        return channel

    async def send_message(
        self, channel_id: int, body: str, properties: Mapping[str, Any]
    ) -> SentMessage:
        """Post a system text message; ONE attempt (plus a replay after a 401).

        There is no idempotency key, so a blind retry could post twice: the caller decides,
        using ``UpstreamUnavailable.ambiguous`` (the message may have been stored) and the
        delivery key it put into ``properties``.
        """
        payload = await self._http.request(
            "POST",
            f"{self.prefix}/channels/{int(channel_id)}/messages",
            json={"type": "TEXT", "body": body, "properties": dict(properties)},
            retry=False,
        )
        message_id = _as_int(payload.get("id")) if isinstance(payload, Mapping) else None
        if message_id is None:
            # The server said 200, so the message most likely exists: ambiguous, not failed.
            raise UpstreamUnavailable(
                API, f"send to channel {channel_id} answered without a message id", ambiguous=True
            )
        assert isinstance(payload, Mapping)
        answered_channel = _as_int(payload.get("channelId", payload.get("channel_id")))
        created = payload.get("createdTime", payload.get("created_time"))
        return SentMessage(
            id=message_id,
            channel_id=answered_channel if answered_channel is not None else int(channel_id),
            created_time=created if isinstance(created, str) else None,
        )

    async def recent_messages(
        self, channel_id: int, *, limit: int = 200, page_size: int = 50
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` of the channel's messages, newest first, as raw resources."""
        messages: list[dict[str, Any]] = []
        target = f"{self.prefix}/channels/{int(channel_id)}/messages"
        params: list[tuple[str, str]] = [("size", str(max(1, min(page_size, limit))))]
        followed: set[str] = set()
        while len(messages) < limit:
            payload = await self._http.request("GET", target, params=params)
            items = _embedded(payload, "messages")
            messages.extend(item for item in items if isinstance(item, dict))
            href = hal_link(payload, "next")
            if href is None or not items:
                break
            if href in followed:
                structlog.get_logger(__name__).warning(
                    "chatkitty_link_loop", channel_id=channel_id, pages=len(followed) + 1
                )
                break
            followed.add(href)
            target, params = self._same_host(href), []
        return messages[:limit]

    async def messages_back_to(
        self, channel_id: int, since: datetime, *, max_messages: int, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """The channel's messages, newest first, paging back until they are older than
        ``since``. Returns (messages, complete): complete when the walk reached a message
        created before ``since`` or the channel's first message; False when it stopped at
        ``max_messages`` first. A failing page raises (nothing is concluded from a part).
        """
        messages: list[dict[str, Any]] = []
        target = f"{self.prefix}/channels/{int(channel_id)}/messages"
        params: list[tuple[str, str]] = [("size", str(max(1, min(page_size, MAX_MESSAGE_PAGE))))]
        followed: set[str] = set()
        while True:
            payload = await self._http.request("GET", target, params=params)
            items = [item for item in _embedded(payload, "messages") if isinstance(item, dict)]
            messages.extend(items)
            if any(_older_than(item, since) for item in items):
                return messages, True
            href = hal_link(payload, "next")
            if href is None or not items:
                return messages, True  # the channel's first message is in hand
            if len(messages) >= max_messages:
                return messages, False
            if href in followed:
                raise UpstreamUnavailable(API, f"channel {channel_id} message pages loop")
            followed.add(href)
            target, params = self._same_host(href), []

    def _same_host(self, href: str) -> str:
        url = yarl.URL(href)
        if url.is_absolute() and url.origin() != self._origin:
            raise UpstreamUnavailable(
                API, f"refusing to follow a link to another host ({url.origin()})"
            )
        return href
