"""ChatKitty Platform API simulator: client-credentials tokens, HAL channel pages, channel
messages with cursor pages, message patches and thread replies.

Shapes follow ChatKitty's OpenAPI document (2.58.3) as the service puts them on the wire:
camelCase keys, ``_links`` as an object keyed by rel, ``_embedded`` left out of an empty
page. Auth failures answer ``{"error", "error_description"}``; everything else
``{"error", "message", "timestamp"}``. The token endpoint hands back the client's current
token while it is still valid, with ``expires_in`` counting down, as Spring's token
services do (the reference's example shows 42892 s left of 43200).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from listingbot.clock import Clock, SystemClock
from listingbot.sim._http import (
    JsonDict,
    RequestLog,
    base_url,
    copy_record,
    current_note,
    iso_ms,
    iso_us,
    json_errors_middleware,
    json_response,
    request_log_middleware,
)
from listingbot.sim.faults import Faults, FaultTarget, bearer_token

DEFAULT_CLIENTS: Mapping[str, str] = {"test-ck-id": "test-ck-secret"}
DEFAULT_CHANNELS: tuple[tuple[int, str, str], ...] = ((702, "nyc-homes", "NYC homes"),)
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
TOKEN_SCOPE = "org:1:app"  # noqa: S105 - an OAuth scope, not a secret
DEFAULT_CHANNEL_PAGE = 25
MAX_CHANNEL_PAGE = 2000  # Spring Data's default cap on a page size
DEFAULT_MESSAGE_PAGE = 25
MAX_MESSAGE_PAGE = 100
FIRST_MESSAGE_ID = 44_901
MERGE_PATCH_TYPES = frozenset({"application/json+merge-patch", "application/merge-patch+json"})
ERROR_NAMES = {
    400: "ClientError",
    404: "ResourceNotFoundError",
    405: "MethodNotAllowedError",
    406: "NotAcceptableError",
    410: "GoneError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
    429: "TooManyRequestsError",
    500: "ServerError",
    503: "ServiceUnavailableError",
}
FULL_AUTH = "Full authentication is required to access this resource"


@dataclass
class _Token:
    client_id: str
    expires_at: float  # clock.monotonic() seconds


class ApiProblem(Exception):
    """An answer other than 200, raised from deep inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ChatKittySim:
    """The ChatKitty Platform API, in memory.

    ``messages`` holds each channel's top-level messages oldest first, ``replies`` each
    thread's replies (keyed by the parent message id), both as stored (no ``_links``).
    Channels in ``denied_channels`` answer 403 access_denied, as a channel the
    application's token may not use would. ``tokens_issued`` counts successful token
    requests (a reused token counts too).
    """

    def __init__(
        self,
        *,
        clients: Mapping[str, str] = DEFAULT_CLIENTS,
        channels: Sequence[tuple[int, str, str]] = DEFAULT_CHANNELS,
        prefix: str = "/v1",
        token_lifetime_s: int = 43200,
        clock: Clock | None = None,
        faults: Faults | None = None,
        reuse_tokens: bool = True,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError("prefix must be empty or start with '/' and not end with '/'")
        self.clients = dict(clients)
        self.prefix = prefix
        self.token_lifetime_s = token_lifetime_s
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.faults = faults if faults is not None else Faults()
        self.reuse_tokens = reuse_tokens
        self.requests: list[RequestLog] = []
        self.tokens_issued = 0
        self.messages: dict[int, list[JsonDict]] = {}
        self.replies: dict[int, list[JsonDict]] = {}
        self.channels: dict[int, JsonDict] = {}
        self.denied_channels: set[int] = set()
        self._tokens: dict[str, _Token] = {}
        self._current: dict[str, str] = {}  # client id -> its latest token
        self._by_id: dict[int, JsonDict] = {}
        self._next_id = FIRST_MESSAGE_ID
        for channel_id, name, display_name in channels:
            self.add_channel(channel_id, name, display_name)

    # ----------------------------------------------------------------- test hooks

    def add_channel(self, id: int, name: str, display_name: str) -> None:
        """Create (or rename) a public channel."""
        existing = self.channels.get(id)
        self.channels[id] = {
            "id": id,
            "type": "PUBLIC",
            "name": name,
            "displayName": display_name,
            "properties": {} if existing is None else existing["properties"],
            "createdTime": iso_ms(self.clock.now())
            if existing is None
            else existing["createdTime"],
        }
        self.messages.setdefault(id, [])

    def post_as(self, channel_id: int, username: str, body: str) -> JsonDict:
        """A person (not the application) posts a text message in a channel, as
        ``POST /channels/{id}/messages`` with a ``user`` does. Returns it as stored."""
        return self._store(
            {"type": "TEXT", "body": body, "user": {"username": username}}, channel_id, parent=None
        )

    def remove_channel(self, id: int) -> None:
        """Delete a channel: later calls about it get 404. Its messages stay inspectable."""
        self.channels.pop(id, None)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        for token in self._tokens.values():
            token.expires_at = -math.inf

    def all_messages(self) -> list[JsonDict]:
        """Every stored message and reply, in the order they were stored."""
        return list(self._by_id.values())

    def _expire_token(self, token: str) -> None:
        if token in self._tokens:
            self._tokens[token].expires_at = -math.inf

    # ----------------------------------------------------------------- app

    def app(self) -> web.Application:
        target = FaultTarget(
            name="chatkitty",
            error_body=lambda status: self._api_error(status, _FAULT_MESSAGES[status]),
            expire_token=self._expire_token,
            token_paths=frozenset({TOKEN_PATH}),
        )
        app = web.Application(
            middlewares=[
                request_log_middleware(self.requests),
                self.faults.middleware(target),
                json_errors_middleware(self._api_error),
            ]
        )
        p = self.prefix
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get(f"{p}/channels", self._guard(self._list_channels))
        app.router.add_get(f"{p}/channels/{{id}}", self._guard(self._get_channel))
        app.router.add_get(f"{p}/channels/{{id}}/messages", self._guard(self._list_messages))
        app.router.add_post(f"{p}/channels/{{id}}/messages", self._guard(self._send))
        app.router.add_get(f"{p}/messages/{{id}}", self._guard(self._get_message))
        app.router.add_patch(f"{p}/messages/{{id}}", self._guard(self._patch_message))
        app.router.add_get(f"{p}/threads/{{id}}/messages", self._guard(self._list_replies))
        app.router.add_post(f"{p}/threads/{{id}}/messages", self._guard(self._reply))
        return app

    def _api_error(self, status: int, message: str) -> JsonDict:
        return {
            "error": ERROR_NAMES.get(status, "ClientError" if status < 500 else "ServerError"),
            "message": message,
            "timestamp": iso_us(self.clock.now()),
        }

    def _problem(self, status: int, message: str) -> web.Response:
        return json_response(self._api_error(status, message), status=status)

    def _guard(self, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
        """Bearer auth in front of a handler, and ``ApiProblem`` turned into a response."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            token = bearer_token(request)
            if token is None:
                return _auth_error(401, "unauthorized", FULL_AUTH)
            known = self._tokens.get(token)
            if known is None:
                return _auth_error(401, "unauthorized", "Invalid access token")
            if self.clock.monotonic() >= known.expires_at:
                return _auth_error(401, "unauthorized", "Access token expired")
            try:
                return await handler(request)
            except _Denied:
                return _auth_error(403, "access_denied", "Access is denied")
            except ApiProblem as problem:
                return self._problem(problem.status, problem.message)

        return guarded

    # ----------------------------------------------------------------- auth

    async def _token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        if header is None:
            return _auth_error(401, "unauthorized", FULL_AUTH)
        credentials = basic_credentials(header)
        if credentials is None:
            return _auth_error(401, "unauthorized", FULL_AUTH)
        client_id, client_secret = credentials
        expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(
            expected.encode(), client_secret.encode()
        ):
            return _auth_error(401, "unauthorized", "Bad credentials")
        form = await request.post()
        grant_type = form.get("grant_type") or request.query.get("grant_type")
        if not grant_type:
            return json_response(
                {"error": "invalid_request", "error_description": "Missing grant type"},
                status=400,
            )
        if grant_type != "client_credentials":
            return json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Unsupported grant type: {str(grant_type)[:40]}",
                },
                status=400,
            )
        now = self.clock.monotonic()
        token = self._current.get(client_id)
        current = None if token is None else self._tokens.get(token)
        if token is None or current is None or not self.reuse_tokens or current.expires_at <= now:
            token = str(uuid.uuid4())
            current = _Token(client_id, now + self.token_lifetime_s)
            self._tokens[token] = current
            self._current[client_id] = token
        self.tokens_issued += 1
        return json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": max(0, math.floor(current.expires_at - now)),
                "scope": TOKEN_SCOPE,
            }
        )

    # ----------------------------------------------------------------- channels

    def _links_base(self, request: web.Request) -> str:
        return f"{base_url(request)}{self.prefix}"

    def _channel_resource(self, request: web.Request, channel: JsonDict) -> JsonDict:
        base = f"{self._links_base(request)}/channels/{channel['id']}"
        resource = copy_record(channel)
        resource["_links"] = {
            "self": {"href": base},
            "participants": {"href": f"{base}/participants"},
            "messages": {"href": f"{base}/messages"},
            "events": {"href": f"{base}/events"},
            "memberships": {"href": f"{base}/memberships"},
            "members": {"href": f"{base}/members"},
            "moderators": {"href": f"{base}/moderators"},
        }
        return resource

    def _channel(self, raw_id: str) -> JsonDict:
        channel_id = _int_id(raw_id, "channel")
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiProblem(404, "Resource not found")
        if channel_id in self.denied_channels:
            raise _Denied()
        return channel

    async def _list_channels(self, request: web.Request) -> web.Response:
        page = _query_int(request, "page", 0, minimum=0)
        size = min(_query_int(request, "size", DEFAULT_CHANNEL_PAGE, minimum=1), MAX_CHANNEL_PAGE)
        wanted_type = request.query.get("type")
        if wanted_type is not None and wanted_type not in ("DIRECT", "PUBLIC", "PRIVATE"):
            raise ApiProblem(400, f"Invalid channel type: {wanted_type[:40]}")
        channels = [
            c for c in self.channels.values() if wanted_type is None or c["type"] == wanted_type
        ]
        total = len(channels)
        total_pages = math.ceil(total / size)
        chunk = channels[page * size : (page + 1) * size]
        href = f"{self._links_base(request)}/channels"

        def link(number: int) -> JsonDict:
            return {"href": f"{href}?page={number}&size={size}"}

        # Spring HATEOAS: first/last only when there is somewhere to go.
        has_previous, has_next = page > 0, page + 1 < total_pages
        links: JsonDict = {}
        if has_previous or has_next:
            links["first"] = link(0)
        if has_previous:
            links["prev"] = link(page - 1)
        links["self"] = link(page)
        if has_next:
            links["next"] = link(page + 1)
        if has_previous or has_next:
            links["last"] = link(max(0, total_pages - 1))
        body: JsonDict = {}
        if chunk:
            body["_embedded"] = {"channels": [self._channel_resource(request, c) for c in chunk]}
        body["_links"] = links
        body["page"] = {
            "size": size,
            "totalElements": total,
            "totalPages": total_pages,
            "number": page,
        }
        return json_response(body)

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel_resource(request, self._channel(_id(request))))

    # ----------------------------------------------------------------- messages

    def _message_resource(self, request: web.Request, message: JsonDict) -> JsonDict:
        base = self._links_base(request)
        resource = copy_record(message)
        resource["_links"] = {
            "self": {"href": f"{base}/messages/{message['id']}"},
            "channel": {"href": f"{base}/channels/{message['channelId']}"},
        }
        if message.get("nestedLevel", 0) == 0:
            resource["_links"]["replies"] = {"href": f"{base}/threads/{message['id']}/messages"}
        return resource

    async def _send(self, request: web.Request) -> web.Response:
        channel = self._channel(_id(request))
        message = self._store(await _json_object(request), channel["id"], parent=None)
        return json_response(self._message_resource(request, message))

    async def _reply(self, request: web.Request) -> web.Response:
        parent = self._message(_id(request))
        channel = self._channel(str(parent["channelId"]))
        message = self._store(await _json_object(request), channel["id"], parent=parent)
        return json_response(self._message_resource(request, message))

    def _store(self, body: JsonDict, channel_id: int, *, parent: JsonDict | None) -> JsonDict:
        message = self._validate(body)
        message_id = self._next_id
        self._next_id += 1
        stored: JsonDict = {
            "id": message_id,
            "type": message["type"],
            "channelId": channel_id,
        }
        if "user" in message:
            stored["user"] = message["user"]
        stored.update({k: v for k, v in message.items() if k in ("body", "file")})
        stored["properties"] = message.get("properties", {})
        stored["createdTime"] = iso_ms(self.clock.now())
        stored["nestedLevel"] = 0 if parent is None else parent["nestedLevel"] + 1
        stored["repliesCount"] = 0
        if "groupTag" in message:
            stored["groupTag"] = message["groupTag"]
        if parent is None:
            self.messages.setdefault(channel_id, []).append(stored)
        else:
            self.replies.setdefault(parent["id"], []).append(stored)
            parent["repliesCount"] += 1
        self._by_id[message_id] = stored
        # From here on the message exists whatever happens to the response.
        current_note().commit_point = True
        return stored

    def _validate(self, body: JsonDict) -> JsonDict:
        """Check a CreateMessageResource; returns the fields to store. 400 otherwise."""
        kind = body.get("type")
        if kind not in ("TEXT", "FILE"):
            raise ApiProblem(
                400,
                f"Invalid message type {str(kind)[:40]!r}: expected TEXT or FILE"
                if "type" in body
                else "Missing required property 'type'",
            )
        result: JsonDict = {}
        user = body.get("user")
        if user is not None:
            result["user"] = _user(user)
        if kind == "TEXT":
            text = body.get("body")
            if "body" not in body or text is None:
                raise ApiProblem(400, "Missing required property 'body' for a TEXT message")
            if not isinstance(text, str):
                raise ApiProblem(400, "Property 'body' must be a string")
            if not text.strip():
                raise ApiProblem(400, "Property 'body' must not be blank")
            result["body"] = text
            result["type"] = "TEXT" if user is not None else "SYSTEM_TEXT"
        else:
            result["file"] = _file(body.get("file"))
            result["type"] = "FILE" if user is not None else "SYSTEM_FILE"
        if "properties" in body and body["properties"] is not None:
            if not isinstance(body["properties"], dict):
                raise ApiProblem(400, "Property 'properties' must be a JSON object")
            result["properties"] = body["properties"]
        if body.get("groupTag") is not None:
            if not isinstance(body["groupTag"], str):
                raise ApiProblem(400, "Property 'groupTag' must be a string")
            result["groupTag"] = body["groupTag"]
        return result

    def _message(self, raw_id: str) -> JsonDict:
        message = self._by_id.get(_int_id(raw_id, "message"))
        if message is None:
            raise ApiProblem(404, "Resource not found")
        return message

    async def _get_message(self, request: web.Request) -> web.Response:
        return json_response(self._message_resource(request, self._message(_id(request))))

    async def _patch_message(self, request: web.Request) -> web.Response:
        message = self._message(_id(request))
        if request.content_type not in MERGE_PATCH_TYPES:
            raise ApiProblem(
                415,
                f"Content type '{request.content_type}' not supported: use "
                "application/json+merge-patch",
            )
        patch = await _json_object(request, check_type=False)
        if "body" in patch:
            if message["type"] not in ("TEXT", "SYSTEM_TEXT"):
                raise ApiProblem(400, "Only text messages have a body")
            if not isinstance(patch["body"], str) or not patch["body"].strip():
                raise ApiProblem(400, "Property 'body' must be a non-blank string")
        if "properties" in patch and not isinstance(patch["properties"], dict | None):
            raise ApiProblem(400, "Property 'properties' must be a JSON object")
        if "body" in patch:
            message["body"] = patch["body"]
        if "properties" in patch:
            merged = merge_patch(message["properties"], patch["properties"])
            message["properties"] = merged if isinstance(merged, dict) else {}
        message["lastEditedTime"] = iso_ms(self.clock.now())
        return json_response(self._message_resource(request, message))

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(_id(request))
        path = f"{self._links_base(request)}/channels/{channel['id']}/messages"
        return self._cursor_page(request, self.messages.get(channel["id"], []), path)

    async def _list_replies(self, request: web.Request) -> web.Response:
        parent = self._message(_id(request))
        path = f"{self._links_base(request)}/threads/{parent['id']}/messages"
        return self._cursor_page(request, self.replies.get(parent["id"], []), path)

    def _cursor_page(self, request: web.Request, stored: list[JsonDict], path: str) -> web.Response:
        """Newest first. ``start`` pins the newest message of the first page, so a page
        walk is not disturbed by new arrivals; ``next`` is the exclusive upper bound of
        the next (older) page."""
        size = min(_query_int(request, "size", DEFAULT_MESSAGE_PAGE, minimum=1), MAX_MESSAGE_PAGE)
        relation = request.query.get("relation", "SELF" if "next" in request.query else None)
        if relation is not None and relation not in ("SELF", "PREVIOUS", "NEXT"):
            raise ApiProblem(400, f"Invalid relation: {relation[:40]}")
        newest = stored[-1]["id"] if stored else None
        start = _query_int(request, "start", newest if newest is not None else 0, minimum=0)
        cursor = _query_int(request, "next", 0, minimum=0) if "next" in request.query else None
        text = request.query.get("query")
        pool = [
            m
            for m in stored
            if m["id"] <= start and (text is None or text.lower() in str(m.get("body", "")).lower())
        ]
        if cursor is None:
            window = pool[::-1][:size]
        elif relation == "PREVIOUS":
            window = [m for m in pool if m["id"] > cursor][:size][::-1]
        else:
            window = [m for m in pool if m["id"] < cursor][::-1][:size]
        older = bool(window) and any(m["id"] < window[-1]["id"] for m in pool)

        def href(next_cursor: int | None, rel: str) -> str:
            parts = [] if not stored else [f"start={start}"]
            if next_cursor is not None:
                parts.append(f"next={next_cursor}")
            parts += [f"size={size}", f"relation={rel}"]
            return f"{path}?{'&'.join(parts)}"

        body: JsonDict = {}
        if window:
            body["_embedded"] = {"messages": [self._message_resource(request, m) for m in window]}
        page: JsonDict = {"size": size}
        if stored:
            page["start"] = str(start)
        links: JsonDict = {"self": {"href": href(cursor, "SELF")}}
        if older:
            page["next"] = str(window[-1]["id"])
            links["next"] = {"href": href(window[-1]["id"], "NEXT")}
        body["page"] = page
        body["_links"] = links
        return json_response(body)


class _Denied(ApiProblem):
    def __init__(self) -> None:
        super().__init__(403, "Access is denied")


_FAULT_MESSAGES = {
    429: "Too many requests, slow down",
    500: "An internal server error occurred",
    503: "The service is temporarily unavailable",
}


def _auth_error(status: int, error: str, description: str) -> web.Response:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="oauth2-resource", error="{error}"'

    return json_response(
        {"error": error, "error_description": description}, status=status, headers=headers
    )


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(id, secret)`` from an HTTP Basic ``Authorization`` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _int_id(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiProblem(400, f"Invalid {what} ID: {raw[:40]!r} is not a number") from None


def _query_int(request: web.Request, name: str, default: int, *, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ApiProblem(400, f"Parameter '{name}' must be an integer") from None
    if number < minimum:
        raise ApiProblem(400, f"Parameter '{name}' must be at least {minimum}")
    return number


async def _json_object(request: web.Request, *, check_type: bool = True) -> JsonDict:
    if check_type and request.content_type != "application/json":
        raise ApiProblem(
            415, f"Content type '{request.content_type}' not supported: use application/json"
        )
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiProblem(400, "JSON parse error: the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "JSON parse error: the request body must be a JSON object")
    return body


def _user(user: Any) -> JsonDict:
    if not isinstance(user, dict):
        raise ApiProblem(400, "Property 'user' must be an object with an id or a username")
    if isinstance(user.get("username"), str) and user["username"]:
        name = user["username"]
        user_id = zlib.crc32(name.encode()) % 100_000
        return {"id": user_id, "type": "PERSON", "name": name, "displayName": name}
    if isinstance(user.get("id"), int) and not isinstance(user["id"], bool):
        return {
            "id": user["id"],
            "type": "PERSON",
            "name": f"user-{user['id']}",
            "displayName": f"user-{user['id']}",
        }
    raise ApiProblem(400, "Property 'user' must have an id or a username")


def _file(file: Any) -> JsonDict:
    if not isinstance(file, dict):
        raise ApiProblem(400, "Missing required property 'file' for a FILE message")
    for key in ("url", "name", "contentType"):
        if not isinstance(file.get(key), str) or not file[key]:
            raise ApiProblem(400, f"Property 'file.{key}' must be a non-empty string")
    size = file.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ApiProblem(400, "Property 'file.size' must be a non-negative integer")
    return {
        "type": "EXTERNAL",
        "url": file["url"],
        "name": file["name"],
        "contentType": file["contentType"],
        "size": size,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
