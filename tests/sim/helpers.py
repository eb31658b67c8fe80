"""Small helpers shared by the simulator tests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web

Serve = Callable[[web.Application], AbstractAsyncContextManager[str]]


def basic(client_id: str, secret: str) -> str:
    """An HTTP Basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
