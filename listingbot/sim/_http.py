"""Plumbing shared by the three simulators: request logs, per-request notes, JSON error
pages, time formats and starting an app on a loopback port."""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class RequestLog:
    """One request a simulator answered (or dropped).

    ``query`` keeps the pairs in the order they were sent, secret values replaced by
    ``"***"``. ``status`` is None when no response was sent (an injected connection reset).
    ``fault`` names the fault injected into this request, if any.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    status: int | None
    fault: str | None = None


@dataclass
class RequestNote:
    """What the inner layers of one request tell the outer ones.

    Carried in a context variable rather than in the request's own storage: every
    middleware and the handler run in the same task, and this keeps the simulators
    independent of which aiohttp version introduced typed request keys.
    """

    fault: str | None = None
    dropped: bool = False
    commit_point: bool = False  # the handler stored something a client cannot take back
    extra: dict[str, Any] = field(default_factory=dict)


_NOTE: contextvars.ContextVar[RequestNote | None] = contextvars.ContextVar(
    "listingbot_sim_note", default=None
)


def current_note() -> RequestNote:
    """The note of the request being handled (a throwaway one outside a request)."""
    note = _NOTE.get()
    return note if note is not None else RequestNote()


def request_log_middleware(
    log: list[RequestLog], *, secret_params: Collection[str] = ()
) -> Middleware:
    """Outermost layer: opens the request's note and records the outcome in ``log``."""
    secret = frozenset(secret_params)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        note = RequestNote()
        token = _NOTE.set(note)
        status: int | None = None
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            _NOTE.reset(token)
            query = [(k, "***" if k in secret else v) for k, v in request.query.items()]
            log.append(
                RequestLog(
                    method=request.method,
                    path=request.path,
                    query=query,
                    status=None if note.dropped else status,
                    fault=note.fault,
                )
            )
        return response

    return middleware


def json_errors_middleware(body: Callable[[int, str], JsonDict]) -> Middleware:
    """Answers aiohttp's own errors (unknown route, wrong method, body too large) in the
    API's error shape instead of aiohttp's plain-text pages."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return json_response(body(exc.status, exc.reason), status=exc.status, headers=headers)

    return middleware


def copy_record(record: JsonDict) -> JsonDict:
    """A deep copy of a JSON object (dicts and lists copied, scalars shared)."""
    return {key: _copy_value(value) for key, value in record.items()}


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    return value


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # ensure_ascii (the default) is what lets hostile records carry lone surrogates:
    # they go out as \\udXXX escapes, valid JSON text that decodes to invalid Unicode.
    return web.Response(
        text=json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def drop_connection(request: web.Request) -> web.Response:
    """Abort the TCP connection so the client sees a reset instead of a response."""
    current_note().dropped = True
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp wants a response object; it is never written to the aborted transport.
    return web.Response(status=500)


def iso_ms(moment: datetime) -> str:
    """``2021-04-25T17:35:23.809Z``: UTC, milliseconds, ``Z`` (Kotohomes, ChatKitty)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_us(moment: datetime) -> str:
    """``2021-04-25T17:35:23.809123Z``: UTC, microseconds, ``Z`` (Laravel's format, Kato)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive ones are taken as UTC. Raises ValueError."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def base_url(request: web.Request) -> str:
    """Scheme and host the client used, for absolute links (HAL, Kato pagination)."""
    return f"{request.scheme}://{request.host}"


def retry_after_s(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds - 1e-9)))


async def start_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0 picks a free port); returns the runner and its URL."""
    # A short shutdown grace: a request held by an injected timeout must not keep a test
    # waiting at teardown.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    address = runner.addresses[0]
    bound_host, bound_port = address[0], address[1]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"
