"""The ChatKitty simulator's request schemas and wire helpers.

Requests are checked as the OpenAPI document (2.58.3) defines them:
``CreateMessageResource`` with its ``TEXT``/``FILE`` variants,
``CreateExternalFileProperties``, ``ChatUserReference`` and ``JsonMergePatch``.

The document names fields in snake_case while every example and the 2.4.0 SDK send
camelCase; the two fields where that matters (``groupTag``, ``file.contentType``) are
read in either spelling. A key the schema does not define is a 400 naming it: a simulator
that silently dropped ``group_tg`` would hide the client's mistake.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from typing import Any

import yarl
from aiohttp import web

from listingbot.sim._http import JsonDict, json_response

MESSAGE_KEYS = frozenset({"type", "body", "file", "properties", "user", "groupTag", "group_tag"})
FILE_KEYS = frozenset({"url", "name", "contentType", "content_type", "size"})
PATCH_KEYS = frozenset({"body", "properties"})
USER_KEYS = frozenset({"id", "username"})
MAX_INT64 = 2**63 - 1


class ApiProblem(Exception):
    """An answer other than 200, raised from deep inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _unknown(body: JsonDict, allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiProblem(400, f"Unknown property '{where}{extra[0][:40]}'")


def _either(body: JsonDict, camel: str, snake: str, where: str) -> Any:
    if camel in body and snake in body:
        raise ApiProblem(400, f"Both '{where}{camel}' and '{where}{snake}' given")
    return body.get(camel, body.get(snake))


def create_message(body: JsonDict) -> JsonDict:
    """Check a CreateMessageResource; returns the fields to store (``type`` is the stored
    type: TEXT/FILE on behalf of a user, SYSTEM_TEXT/SYSTEM_FILE without one). 400
    otherwise."""
    kind = body.get("type")
    if kind not in ("TEXT", "FILE"):
        raise ApiProblem(
            400,
            f"Invalid message type {str(kind)[:40]!r}: expected TEXT or FILE"
            if "type" in body
            else "Missing required property 'type'",
        )
    _unknown(body, MESSAGE_KEYS, "")
    result: JsonDict = {}
    user = body.get("user")
    if user is not None:
        result["user"] = user_reference(user)
    if kind == "TEXT":
        if "file" in body:
            raise ApiProblem(400, "Property 'file' belongs to a FILE message")
        text = body.get("body")
        if text is None:
            raise ApiProblem(400, "Missing required property 'body' for a TEXT message")
        if not isinstance(text, str):
            raise ApiProblem(400, "Property 'body' must be a string")
        if not text.strip():
            raise ApiProblem(400, "Property 'body' must not be blank")
        result["body"] = text
        result["type"] = "TEXT" if user is not None else "SYSTEM_TEXT"
    else:
        if "body" in body:
            raise ApiProblem(400, "Property 'body' belongs to a TEXT message")
        result["file"] = external_file(body.get("file"))
        result["type"] = "FILE" if user is not None else "SYSTEM_FILE"
    if body.get("properties") is not None:
        if not isinstance(body["properties"], dict):
            raise ApiProblem(400, "Property 'properties' must be a JSON object")
        result["properties"] = body["properties"]
    group_tag = _either(body, "groupTag", "group_tag", "")
    if group_tag is not None:
        if not isinstance(group_tag, str) or not group_tag:
            raise ApiProblem(400, "Property 'groupTag' must be a non-empty string")
        result["groupTag"] = group_tag
    return result


def external_file(file: Any) -> JsonDict:
    """Check a CreateExternalFileProperties (url, name, content type, size: all required);
    returns the stored FileProperties."""
    if not isinstance(file, dict):
        raise ApiProblem(400, "Missing required property 'file' for a FILE message")
    _unknown(file, FILE_KEYS, "file.")
    content_type = _either(file, "contentType", "content_type", "file.")
    for key, value in (("url", file.get("url")), ("name", file.get("name"))):
        if not isinstance(value, str) or not value.strip():
            raise ApiProblem(400, f"Property 'file.{key}' must be a non-empty string")
    if not isinstance(content_type, str) or "/" not in content_type:
        raise ApiProblem(400, "Property 'file.contentType' must be a MIME type")
    url = yarl.URL(file["url"])
    if url.scheme not in ("http", "https") or not url.host:
        raise ApiProblem(400, "Property 'file.url' must be an absolute http(s) URL")
    size = file.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_INT64:
        raise ApiProblem(400, "Property 'file.size' must be a non-negative integer")
    return {
        "type": "EXTERNAL",
        "url": file["url"],
        "name": file["name"],
        "contentType": content_type,
        "size": size,
    }


def user_reference(user: Any) -> JsonDict:
    """Check a ChatUserReference (by username or by id); returns ChatUserProperties."""
    if not isinstance(user, dict):
        raise ApiProblem(400, "Property 'user' must be an object with an id or a username")
    _unknown(user, USER_KEYS, "user.")
    if isinstance(user.get("username"), str) and user["username"]:
        return user_properties(user["username"])
    if isinstance(user.get("id"), int) and not isinstance(user["id"], bool):
        return user_properties(f"user-{user['id']}", user_id=user["id"])
    raise ApiProblem(400, "Property 'user' must have an id or a username")


def user_properties(username: str, *, user_id: int | None = None) -> JsonDict:
    """A ChatUserProperties for ``username`` (a stable id derived from the name)."""
    return {
        "id": zlib.crc32(username.encode()) % 100_000 if user_id is None else user_id,
        "type": "PERSON",
        "name": username,
        "displayName": username,
        "displayPictureUrl": f"https://api.chatkitty.com/v1/picture/{yarl.URL.build(path=username)}",
        "isGuest": False,
        "presence": {"status": "UNAVAILABLE", "online": False},
        "properties": {},
    }


def message_patch(patch: JsonDict, message: JsonDict) -> None:
    """Check a JsonMergePatch of a message (``body`` of a text message, ``properties``)."""
    _unknown(patch, PATCH_KEYS, "")
    if "body" in patch:
        if message["type"] not in ("TEXT", "SYSTEM_TEXT"):
            raise ApiProblem(400, "Only text messages have a body")
        if not isinstance(patch["body"], str) or not patch["body"].strip():
            raise ApiProblem(400, "Property 'body' must be a non-blank string")
    if "properties" in patch and not isinstance(patch["properties"], dict | None):
        raise ApiProblem(400, "Property 'properties' must be a JSON object")


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


# ----------------------------------------------------------------- wire helpers


def numbered_page(
    resources: list[JsonDict], name: str, href: str, page: int, size: int
) -> JsonDict:
    """A Spring HATEOAS page (zero-based numbers) of ``resources``, embedded as ``name``."""
    total = len(resources)
    total_pages = math.ceil(total / size)
    chunk = resources[page * size : (page + 1) * size]

    def link(number: int) -> JsonDict:
        return {"href": f"{href}?page={number}&size={size}"}

    # first/last only when there is somewhere to go.
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
        body["_embedded"] = {name: chunk}
    body["_links"] = links
    body["page"] = {
        "size": size,
        "totalElements": total,
        "totalPages": total_pages,
        "number": page,
    }
    return body


def auth_error(status: int, error: str, description: str) -> web.Response:
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


def int_id(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiProblem(400, f"Invalid {what} ID: {raw[:40]!r} is not a number") from None


def query_int(request: web.Request, name: str, default: int, *, minimum: int) -> int:
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


async def json_object(request: web.Request, *, check_type: bool = True) -> JsonDict:
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


def text_contains(message: JsonDict, text: str) -> bool:
    if message["type"] not in ("TEXT", "SYSTEM_TEXT"):
        return False
    return text.lower() in str(message.get("body", "")).lower()
