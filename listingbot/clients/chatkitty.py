"""ChatKitty Platform API: channels, channel and thread messages, FILE messages, message
patches, the application-wide message list and moderators (endpoints and shapes only).

Bodies go out in camelCase (every example and SDK does, whatever the schema names say).
HAL ``_links`` may use any path layout, so they are followed as returned, but only on the
configured host: the bearer token must not be handed to whatever host a link names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
import yarl
from pydantic import SecretStr

from listingbot.clients.auth import client_credentials_api
from listingbot.clients.base import DEFAULT_RETRY, RequestObserver, RetryPolicy, wire_int
from listingbot.clock import Clock
from listingbot.errors import UpstreamUnavailable

API = "chatkitty"
# Used only when the token answer lacks expires_in (documented ~12 h); a 401 refreshes anyway.
TOKEN_LIFETIME_S = 3600.0
TOKEN_EARLY_S = 60.0
MAX_PAGES = 10_000  # a server that never stops paging is a broken server
MAX_MESSAGE_PAGE = 100  # the largest message page ChatKitty serves
MERGE_PATCH = "application/json+merge-patch"


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


@dataclass(frozen=True)
class ExternalFile:
    """A CreateExternalFileProperties: a file ChatKitty links to rather than hosts."""

    url: str
    name: str
    content_type: str
    size: int

    def wire(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "name": self.name,
            "contentType": self.content_type,
            "size": self.size,
        }


@dataclass(frozen=True)
class ChatUser:
    """A user as listingbot needs it: ``name`` is the username."""

    id: int | None
    name: str
    display_name: str | None


def parse_channel(raw: Any) -> Channel | None:
    """A :class:`Channel` from a ChannelResource, or None when it has no usable id."""
    if not isinstance(raw, Mapping):
        return None
    channel_id = wire_int(raw.get("id"))
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


def parse_user(raw: Any) -> ChatUser | None:
    """A :class:`ChatUser` from a ChatUserResource/Properties, or None without a name."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        return None
    display = raw.get("displayName", raw.get("display_name"))
    return ChatUser(
        id=wire_int(raw.get("id")),
        name=raw["name"],
        display_name=display if isinstance(display, str) else None,
    )


def _text(body: str, properties: Mapping[str, Any], group_tag: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "TEXT", "body": body, "properties": dict(properties)}
    if group_tag is not None:
        message["groupTag"] = group_tag
    return message


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
        self.timeout_s = float(timeout_s)
        self._http, _auth = client_credentials_api(
            api=API,
            base_url=api_url,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            style="basic",
            session=session,
            clock=clock,
            token_lifetime_s=TOKEN_LIFETIME_S,
            refresh_early_s=TOKEN_EARLY_S,
            observer=observer,
            timeout_s=timeout_s,
            retry=retry,
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
            number = wire_int(meta.get("number"))
            total_pages = wire_int(meta.get("totalPages", meta.get("total_pages")))
            if number is not None and number != page:
                raise UpstreamUnavailable(API, f"asked for channel page {page}, got {number}")
            if hal_link(payload, "next") is None or not items:
                return channels
            if total_pages is not None and page + 1 >= total_pages:
                return channels
        raise UpstreamUnavailable(API, f"channel listing did not end after {MAX_PAGES} pages")

    async def send_message(
        self,
        channel_id: int,
        body: str,
        properties: Mapping[str, Any],
        *,
        group_tag: str | None = None,
    ) -> SentMessage:
        """Post a system text message; ONE attempt (plus a replay after a 401).

        There is no idempotency key, so a blind retry could post twice: the caller decides,
        using ``UpstreamUnavailable.ambiguous`` (the message may have been stored) and the
        delivery key it put into ``properties``.
        """
        message = _text(body, properties, group_tag)
        return await self._post(f"/channels/{int(channel_id)}/messages", message, channel_id)

    async def reply_in_thread(
        self,
        message_id: int,
        body: str,
        properties: Mapping[str, Any],
        *,
        group_tag: str | None = None,
        channel_id: int | None = None,
    ) -> SentMessage:
        """Post a system text reply in the thread of message ``message_id``; ONE attempt,
        like :meth:`send_message`. :class:`listingbot.errors.NotFound` when the message
        (or its thread) is gone: the caller falls back to a channel message."""
        message = _text(body, properties, group_tag)
        return await self._post(f"/threads/{int(message_id)}/messages", message, channel_id)

    async def send_file(
        self,
        channel_id: int,
        file: ExternalFile,
        properties: Mapping[str, Any],
        *,
        group_tag: str | None = None,
        thread_of: int | None = None,
    ) -> SentMessage:
        """Post a system FILE message (an external file) in the channel, or in the thread of
        message ``thread_of``; ONE attempt, like :meth:`send_message`."""
        message: dict[str, Any] = {
            "type": "FILE",
            "file": file.wire(),
            "properties": dict(properties),
        }
        if group_tag is not None:
            message["groupTag"] = group_tag
        path = (
            f"/channels/{int(channel_id)}/messages"
            if thread_of is None
            else f"/threads/{int(thread_of)}/messages"
        )
        return await self._post(path, message, channel_id)

    async def _post(
        self, path: str, message: Mapping[str, Any], channel_id: int | None
    ) -> SentMessage:
        payload = await self._http.request(
            "POST", f"{self.prefix}{path}", json=dict(message), retry=False
        )
        message_id = wire_int(payload.get("id")) if isinstance(payload, Mapping) else None
        if message_id is None:
            # The server said 200, so the message most likely exists: ambiguous, not failed.
            raise UpstreamUnavailable(
                API, f"POST {path} answered without a message id", ambiguous=True
            )
        assert isinstance(payload, Mapping)
        answered_channel = wire_int(payload.get("channelId", payload.get("channel_id")))
        if answered_channel is None and channel_id is None:
            raise UpstreamUnavailable(API, f"POST {path} answered without a channel id")
        created = payload.get("createdTime", payload.get("created_time"))
        return SentMessage(
            id=message_id,
            channel_id=answered_channel if answered_channel is not None else int(channel_id or 0),
            created_time=created if isinstance(created, str) else None,
        )

    async def patch_message_properties(
        self, message_id: int, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch (RFC 7386) a message's properties: keys set to None are removed,
        objects merge. Retried like a read, since applying the same merge patch twice
        leaves the same message. Returns the patched message resource."""
        payload = await self._http.request(
            "PATCH",
            f"{self.prefix}/messages/{int(message_id)}",
            json={"properties": dict(patch)},
            headers={"Content-Type": MERGE_PATCH},
        )
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(API, f"patch of message {message_id} answered no message")
        return payload

    async def get_message(self, message_id: int) -> dict[str, Any]:
        """One message resource; :class:`listingbot.errors.NotFound` when it is gone."""
        payload = await self._http.request("GET", f"{self.prefix}/messages/{int(message_id)}")
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(API, f"message {message_id} is not a JSON object")
        return payload

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
        path = f"/channels/{int(channel_id)}/messages"
        return await self._back_to(path, since, max_messages=max_messages, page_size=page_size)

    async def thread_messages_back_to(
        self, message_id: int, since: datetime, *, max_messages: int, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """The replies in message ``message_id``'s thread, as :meth:`messages_back_to`
        walks a channel's messages. NotFound when the message is gone."""
        path = f"/threads/{int(message_id)}/messages"
        return await self._back_to(path, since, max_messages=max_messages, page_size=page_size)

    async def _back_to(
        self, path: str, since: datetime, *, max_messages: int, page_size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        messages: list[dict[str, Any]] = []
        async for items, more in self._cursor_pages(path, [], page_size):
            messages.extend(items)
            if any(_older_than(item, since) for item in items):
                return messages, True
            if more and len(messages) >= max_messages:
                return messages, False
        return messages, True  # the first message is in hand

    async def message_pages(
        self, *, query: str | None = None, username: str | None = None, page_size: int = 100
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The application's messages (every channel, thread replies included), newest
        first, one page at a time; ``query`` keeps text messages whose body contains it,
        ``username`` one sender's. Stop iterating once the page reaches what you know."""
        params = [(k, v) for k, v in (("query", query), ("username", username)) if v is not None]
        async for items, _ in self._cursor_pages("/messages", params, page_size):
            yield items

    async def channel_message_pages(
        self, channel_id: int, *, query: str | None = None, page_size: int = 100
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A channel's top-level messages, newest first, one page at a time."""
        params = [("query", query)] if query is not None else []
        path = f"/channels/{int(channel_id)}/messages"
        async for items, _ in self._cursor_pages(path, params, page_size):
            yield items

    async def _cursor_pages(
        self, path: str, params: list[tuple[str, str]], page_size: int
    ) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        """Cursor pages of ``path`` (newest first) with whether another follows, following
        ``_links.next`` on the same host until it is absent. A failing page raises; a page
        loop is a broken server."""
        target = f"{self.prefix}{path}"
        query = [*params, ("size", str(max(1, min(page_size, MAX_MESSAGE_PAGE))))]
        followed: set[str] = set()
        for _ in range(MAX_PAGES):
            payload = await self._http.request("GET", target, params=query)
            items = [item for item in _embedded(payload, "messages") if isinstance(item, dict)]
            href = hal_link(payload, "next")
            if items:
                yield items, href is not None
            if href is None or not items:
                return
            if href in followed:
                raise UpstreamUnavailable(API, f"{path} message pages loop")
            followed.add(href)
            target, query = self._same_host(href), []
        raise UpstreamUnavailable(API, f"{path} did not end after {MAX_PAGES} pages")

    async def channel_moderators(self, channel_id: int, *, page_size: int = 100) -> list[ChatUser]:
        """Every moderator of the channel (numbered pages, zero-based)."""
        users: list[ChatUser] = []
        path = f"{self.prefix}/channels/{int(channel_id)}/moderators"
        for page in range(MAX_PAGES):
            payload = await self._http.request(
                "GET", path, params=[("page", str(page)), ("size", str(page_size))]
            )
            items = _embedded(payload, "users")
            users.extend(user for user in map(parse_user, items) if user is not None)
            meta = payload.get("page")
            total_pages = wire_int(meta.get("totalPages")) if isinstance(meta, Mapping) else None
            if hal_link(payload, "next") is None or not items:
                return users
            if total_pages is not None and page + 1 >= total_pages:
                return users
        raise UpstreamUnavailable(API, f"channel {channel_id} moderators did not end")

    def _same_host(self, href: str) -> str:
        url = yarl.URL(href)
        if url.is_absolute() and url.origin() != self._origin:
            raise UpstreamUnavailable(
                API, f"refusing to follow a link to another host ({url.origin()})"
            )
        return href
