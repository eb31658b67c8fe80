"""ChatKitty Platform API simulator: client-credentials tokens, HAL channel pages, channel
messages with cursor pages, the application-wide message list, moderators, message
patches, FILE messages and thread replies.

Shapes follow ChatKitty's OpenAPI document (2.58.3) as the service puts them on the wire:
camelCase keys, ``_links`` as an object keyed by rel, ``_embedded`` left out of an empty
page. Auth failures answer ``{"error", "error_description"}``; everything else
``{"error", "message", "timestamp"}``. The token endpoint hands back the client's current
token while it is still valid, with ``expires_in`` counting down, as Spring's token
services do (the reference's example shows 42892 s left of 43200). Request bodies are
checked against the document's schemas in :mod:`listingbot.sim.chatkitty_schemas`.

A message's reply thread has the message's id (the document's only evidence: its example
replies to ``/v1/threads/44902/messages``, 44902 being its example message).

Why one class of this size: its routes are views over one in-memory application (users,
channels, messages, threads, tokens) and the fault switches cut across all of them (a
rate limit or an outage applies to every route), so the state and the switches stay
together. What is only data, the OpenAPI request schemas, is in its own module.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from listingbot.clock import Clock, SystemClock
from listingbot.sim._http import (
    JsonDict,
    RequestLog,
    base_url,
    copy_record,
    current_note,
    drop_connection,
    iso_ms,
    iso_us,
    json_errors_middleware,
    json_response,
    request_log_middleware,
)
from listingbot.sim.chatkitty_schemas import (
    ApiProblem,
    auth_error,
    basic_credentials,
    create_message,
    int_id,
    json_object,
    merge_patch,
    message_patch,
    numbered_page,
    query_int,
    text_contains,
    user_properties,
)
from listingbot.sim.faults import Faults, FaultTarget, bearer_token

__all__ = ["ApiProblem", "ChatKittySim", "basic_credentials", "merge_patch"]

DEFAULT_CLIENTS: Mapping[str, str] = {"test-ck-id": "test-ck-secret"}
DEFAULT_CHANNELS: tuple[tuple[int, str, str], ...] = ((702, "nyc-homes", "NYC homes"),)
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
TOKEN_SCOPE = "org:1:app"  # noqa: S105 - an OAuth scope, not a secret
DEFAULT_CHANNEL_PAGE = 25
MAX_CHANNEL_PAGE = 2000  # Spring Data's default cap on a page size
DEFAULT_MESSAGE_PAGE = 25
DEFAULT_USER_PAGE = 25
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


class ChatKittySim:
    """The ChatKitty Platform API, in memory.

    ``messages`` holds each channel's top-level messages oldest first, ``replies`` each
    thread's replies (keyed by the parent message id), both as stored (no ``_links``).
    ``moderators`` maps a channel id to its moderators' usernames (:meth:`set_moderators`).
    ``tokens_issued`` counts successful token requests (a reused token counts too).

    Fault switches, beside the shared :class:`Faults`: channels in ``denied_channels``
    answer 403 access_denied, as a channel the application's token may not use would;
    ``refuse_files_with`` (an HTTP status) refuses every FILE message, as a service that
    cannot fetch or will not take the external file would; ``threads_unavailable`` makes
    every ``/threads/{id}…`` route answer 404 (a service whose threads are not the
    messages' ids); :meth:`delete_message` removes a message (a moderator deleting it).
    ``app_wide_list_status`` (an HTTP status, e.g. 404 or 501) is the answer of the
    application-wide ``GET /messages`` while channel pages still work, as a deployment
    that does not serve it would give; ``refuse_posts_with`` (a status) refuses every new
    message, channel or thread, storing nothing; ``lose_posts`` stores that many next new
    messages and then drops the connection, so the poster never learns they exist.
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
        self.moderators: dict[int, list[str]] = {}
        self.refuse_files_with: int | None = None
        self.threads_unavailable = False
        self.app_wide_list_status: int | None = None
        self.refuse_posts_with: int | None = None
        self.lose_posts = 0
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

    def post_as(
        self,
        channel_id: int,
        username: str,
        body: str,
        *,
        thread_of: int | None = None,
        properties: JsonDict | None = None,
    ) -> JsonDict:
        """A person (not the application) posts a TEXT message in a channel, or in the
        thread of message ``thread_of``, as ``POST …/messages`` with a ``user`` does.
        Returns it as stored; the body is checked like a request's (ApiProblem)."""
        request: JsonDict = {"type": "TEXT", "body": body, "user": {"username": username}}
        if properties is not None:
            request["properties"] = properties
        return self._post(request, channel_id, thread_of)

    def post_system(
        self,
        channel_id: int,
        body: str,
        *,
        thread_of: int | None = None,
        properties: JsonDict | None = None,
    ) -> JsonDict:
        """Someone else's integration posts a SYSTEM_TEXT message (no user), as listingbot
        itself would. Returns it as stored."""
        request: JsonDict = {"type": "TEXT", "body": body}
        if properties is not None:
            request["properties"] = properties
        return self._post(request, channel_id, thread_of)

    def _post(self, request: JsonDict, channel_id: int, thread_of: int | None) -> JsonDict:
        if channel_id not in self.channels:
            raise ApiProblem(404, "Resource not found")
        if thread_of is None:
            return self._store(request, channel_id, parent=None)
        parent = self._message(str(thread_of))
        if parent["channelId"] != channel_id:
            raise ApiProblem(400, f"message {thread_of} is not in channel {channel_id}")
        return self._store(request, channel_id, parent=parent)

    def set_moderators(self, channel_id: int, usernames: Iterable[str]) -> None:
        """Make exactly these users the channel's moderators."""
        if channel_id not in self.channels:
            raise KeyError(channel_id)
        self.moderators[channel_id] = list(dict.fromkeys(usernames))

    def delete_message(self, message_id: int) -> None:
        """Delete a message (and with it its thread): later calls about it get 404."""
        message = self._by_id.pop(message_id, None)
        if message is None:
            raise KeyError(message_id)
        if message["nestedLevel"] == 0:
            stored = self.messages.get(message["channelId"], [])
        else:
            stored = next((r for r in self.replies.values() if message in r), [])
        if message in stored:
            stored.remove(message)
        for reply in self.replies.pop(message_id, []):
            self._by_id.pop(reply["id"], None)

    def thread(self, message_id: int) -> list[JsonDict]:
        """The replies in message ``message_id``'s thread, oldest first."""
        return list(self.replies.get(message_id, []))

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
        app.router.add_get(f"{p}/channels/{{id}}/moderators", self._guard(self._list_moderators))
        app.router.add_get(f"{p}/messages", self._guard(self._list_all_messages))
        app.router.add_get(f"{p}/messages/{{id}}", self._guard(self._get_message))
        app.router.add_patch(f"{p}/messages/{{id}}", self._guard(self._patch_message))
        app.router.add_delete(f"{p}/messages/{{id}}", self._guard(self._delete_message))
        app.router.add_get(f"{p}/threads/{{id}}", self._guard(self._get_thread))
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
                return auth_error(401, "unauthorized", FULL_AUTH)
            known = self._tokens.get(token)
            if known is None:
                return auth_error(401, "unauthorized", "Invalid access token")
            if self.clock.monotonic() >= known.expires_at:
                return auth_error(401, "unauthorized", "Access token expired")
            try:
                return await handler(request)
            except _Denied:
                return auth_error(403, "access_denied", "Access is denied")
            except ApiProblem as problem:
                return self._problem(problem.status, problem.message)

        return guarded

    # ----------------------------------------------------------------- auth

    async def _token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        if header is None:
            return auth_error(401, "unauthorized", FULL_AUTH)
        credentials = basic_credentials(header)
        if credentials is None:
            return auth_error(401, "unauthorized", FULL_AUTH)
        client_id, client_secret = credentials
        expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(
            expected.encode(), client_secret.encode()
        ):
            return auth_error(401, "unauthorized", "Bad credentials")
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
        channel_id = int_id(raw_id, "channel")
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiProblem(404, "Resource not found")
        if channel_id in self.denied_channels:
            raise _Denied()
        return channel

    async def _list_channels(self, request: web.Request) -> web.Response:
        page = query_int(request, "page", 0, minimum=0)
        size = min(query_int(request, "size", DEFAULT_CHANNEL_PAGE, minimum=1), MAX_CHANNEL_PAGE)
        wanted_type = request.query.get("type")
        if wanted_type is not None and wanted_type not in ("DIRECT", "PUBLIC", "PRIVATE"):
            raise ApiProblem(400, f"Invalid channel type: {wanted_type[:40]}")
        channels = [
            self._channel_resource(request, c)
            for c in self.channels.values()
            if wanted_type is None or c["type"] == wanted_type
        ]
        href = f"{self._links_base(request)}/channels"
        return json_response(numbered_page(channels, "channels", href, page, size))

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel_resource(request, self._channel(_id(request))))

    async def _list_moderators(self, request: web.Request) -> web.Response:
        """A PagedModelChatUserResource of the channel's moderators, by username."""
        channel = self._channel(_id(request))
        page = query_int(request, "page", 0, minimum=0)
        size = min(query_int(request, "size", DEFAULT_USER_PAGE, minimum=1), MAX_CHANNEL_PAGE)
        base = self._links_base(request)
        users = []
        for name in self.moderators.get(channel["id"], []):
            user = user_properties(name)
            href = f"{base}/users/{user['id']}"
            user["_links"] = {
                "self": {"href": href},
                "channels": {"href": f"{href}/channels"},
                "notifications": {"href": f"{href}/notifications"},
                "displayPicture": {"href": f"{href}/display-picture"},
            }
            users.append(user)
        href = f"{base}/channels/{channel['id']}/moderators"
        return json_response(numbered_page(users, "users", href, page, size))

    # ----------------------------------------------------------------- messages

    def _message_resource(self, request: web.Request, message: JsonDict) -> JsonDict:
        base = self._links_base(request)
        resource = copy_record(message)
        links: JsonDict = {"self": {"href": f"{base}/messages/{message['id']}"}}
        if "user" in message:
            links["user"] = {"href": f"{base}/users/{message['user']['id']}"}
        links["channel"] = {"href": f"{base}/channels/{message['channelId']}"}
        resource["_links"] = links
        return resource

    async def _send(self, request: web.Request) -> web.Response:
        channel = self._channel(_id(request))
        message = self._store(await json_object(request), channel["id"], parent=None)
        return self._stored_response(request, message)

    async def _reply(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(_id(request))
        channel = self._channel(str(parent["channelId"]))
        message = self._store(await json_object(request), channel["id"], parent=parent)
        return self._stored_response(request, message)

    def _stored_response(self, request: web.Request, message: JsonDict) -> web.Response:
        if self.lose_posts > 0:
            self.lose_posts -= 1
            return drop_connection(request)
        return json_response(self._message_resource(request, message))

    def _store(self, body: JsonDict, channel_id: int, *, parent: JsonDict | None) -> JsonDict:
        message = create_message(body)
        if self.refuse_posts_with is not None:
            status = self.refuse_posts_with
            raise ApiProblem(status, _FAULT_MESSAGES.get(status, "The message was not accepted"))
        if message["type"] in ("FILE", "SYSTEM_FILE") and self.refuse_files_with is not None:
            raise ApiProblem(self.refuse_files_with, "External files are not accepted")
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

    def _message(self, raw_id: str) -> JsonDict:
        message = self._by_id.get(int_id(raw_id, "message"))
        if message is None:
            raise ApiProblem(404, "Resource not found")
        return message

    def _thread_parent(self, raw_id: str) -> JsonDict:
        if self.threads_unavailable:
            raise ApiProblem(404, "Resource not found")
        return self._message(raw_id)

    async def _get_message(self, request: web.Request) -> web.Response:
        return json_response(self._message_resource(request, self._message(_id(request))))

    async def _delete_message(self, request: web.Request) -> web.Response:
        """Answers the deleted message's ReplyThreadResource, as the document says."""
        message = self._message(_id(request))
        self._channel(str(message["channelId"]))
        thread = self._thread_resource(request, message)
        self.delete_message(message["id"])
        return json_response(thread)

    async def _patch_message(self, request: web.Request) -> web.Response:
        message = self._message(_id(request))
        self._channel(str(message["channelId"]))
        if request.content_type not in MERGE_PATCH_TYPES:
            raise ApiProblem(
                415,
                f"Content type '{request.content_type}' not supported: use "
                "application/json+merge-patch",
            )
        patch = await json_object(request, check_type=False)
        message_patch(patch, message)
        if "body" in patch:
            message["body"] = patch["body"]
        if "properties" in patch:
            merged = merge_patch(message["properties"], patch["properties"])
            message["properties"] = merged if isinstance(merged, dict) else {}
        message["lastEditedTime"] = iso_ms(self.clock.now())
        # From here on the patch is applied whatever happens to the response.
        current_note().commit_point = True
        return json_response(self._message_resource(request, message))

    def _thread_resource(self, request: web.Request, message: JsonDict) -> JsonDict:
        base = self._links_base(request)
        return {
            "id": message["id"],
            "type": "MESSAGE",
            "properties": {},
            "createdTime": message["createdTime"],
            "_links": {
                "self": {"href": f"{base}/threads/{message['id']}"},
                "channel": {"href": f"{base}/channels/{message['channelId']}"},
            },
        }

    async def _get_thread(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(_id(request))
        self._channel(str(parent["channelId"]))
        return json_response(self._thread_resource(request, parent))

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(_id(request))
        path = f"{self._links_base(request)}/channels/{channel['id']}/messages"
        return self._cursor_page(request, self.messages.get(channel["id"], []), path)

    async def _list_replies(self, request: web.Request) -> web.Response:
        parent = self._thread_parent(_id(request))
        self._channel(str(parent["channelId"]))
        path = f"{self._links_base(request)}/threads/{parent['id']}/messages"
        return self._cursor_page(request, self.replies.get(parent["id"], []), path)

    async def _list_all_messages(self, request: web.Request) -> web.Response:
        """Every message of the application, thread replies included, in the channels its
        token may use."""
        if self.app_wide_list_status is not None:
            status = self.app_wide_list_status
            raise ApiProblem(status, "Resource not found" if status == 404 else "Not supported")
        stored = [
            message
            for channel_id in self.channels
            if channel_id not in self.denied_channels
            for message in self.messages.get(channel_id, [])
        ]
        stored += [reply for parent in stored for reply in self.replies.get(parent["id"], [])]
        stored.sort(key=lambda m: int(m["id"]))
        return self._cursor_page(request, stored, f"{self._links_base(request)}/messages")

    def _cursor_page(self, request: web.Request, stored: list[JsonDict], path: str) -> web.Response:
        """Newest first. ``start`` pins the newest message of the first page, so a page
        walk is not disturbed by new arrivals; ``next`` is the exclusive upper bound of
        the next (older) page. ``query`` keeps the text messages whose body contains it
        (case-insensitive), ``username`` the messages that user sent; both carry over
        into the page links."""
        size = min(query_int(request, "size", DEFAULT_MESSAGE_PAGE, minimum=1), MAX_MESSAGE_PAGE)
        relation = request.query.get("relation", "SELF" if "next" in request.query else None)
        if relation is not None and relation not in ("SELF", "PREVIOUS", "NEXT"):
            raise ApiProblem(400, f"Invalid relation: {relation[:40]}")
        newest = stored[-1]["id"] if stored else None
        start = query_int(request, "start", newest if newest is not None else 0, minimum=0)
        cursor = query_int(request, "next", 0, minimum=0) if "next" in request.query else None
        text = request.query.get("query")
        username = request.query.get("username")
        pool = [
            m
            for m in stored
            if m["id"] <= start
            and (text is None or text_contains(m, text))
            and (username is None or m.get("user", {}).get("name") == username)
        ]
        if cursor is None:
            window = pool[::-1][:size]
        elif relation == "PREVIOUS":
            window = [m for m in pool if m["id"] > cursor][:size][::-1]
        else:
            window = [m for m in pool if m["id"] < cursor][::-1][:size]
        older = bool(window) and any(m["id"] < window[-1]["id"] for m in pool)
        filters = [(k, v) for k, v in (("username", username), ("query", text)) if v is not None]

        def href(next_cursor: int | None, rel: str) -> str:
            params: list[tuple[str, object]] = [] if not stored else [("start", start)]
            if next_cursor is not None:
                params.append(("next", next_cursor))
            params += [("size", size), ("relation", rel), *filters]
            return f"{path}?{urlencode(params)}"

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


def _id(request: web.Request) -> str:
    return request.match_info["id"]
