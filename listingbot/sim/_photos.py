"""The listing photos' hosting, as the sources' CDNs would serve them, on loopback.

The market writes photo URLs on the sources' real CDN hosts; a simulator serves its
records with those hosts replaced by its own (``rehost``), and answers ``GET``/``HEAD``
of them (:class:`PhotoHost`): a JPEG of a size fixed by its path, with Content-Length,
as a CDN answers. Fault switches: ``status`` answers every photo with that status (a
photo gone from the CDN); ``omit_length`` leaves Content-Length out (a chunked answer);
``content_type`` serves something else than an image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from listingbot.sim._http import JsonDict, base_url

KOTOHOMES_PHOTO_ORIGIN = "https://photos.kotohomes.com"
KATO_PHOTO_ORIGIN = "https://media.kato.app"
MIN_PHOTO_BYTES = 20_000
PHOTO_BYTES_SPREAD = 180_000
JPEG_START = b"\xff\xd8\xff\xe0"


def photo_size(path: str) -> int:
    """The size of the photo at ``path``: the same for the same path."""
    digest = hashlib.blake2b(path.encode(), digest_size=4).digest()
    return MIN_PHOTO_BYTES + int.from_bytes(digest, "big") % PHOTO_BYTES_SPREAD


class PhotoHost:
    """Photos under ``prefix`` (``/photos``) of a simulator, standing in for ``origin``."""

    def __init__(
        self, origin: str, prefix: str, rehost: Callable[[JsonDict, str, str], JsonDict]
    ) -> None:
        self.origin = origin
        self.prefix = prefix
        self._rehost = rehost
        self.status = 200
        self.omit_length = False
        self.content_type = "image/jpeg"
        self.requests = 0

    def add_routes(self, app: web.Application) -> None:
        """``GET`` (and so ``HEAD``) of every path under the prefix."""
        app.router.add_get(f"{self.prefix}/{{tail:.+}}", self._photo)

    def owns(self, path: str) -> bool:
        return path.startswith(f"{self.prefix}/")

    def rehost(self, request: web.Request, records: list[JsonDict]) -> list[JsonDict]:
        """The records with their photo URLs on this simulator's host."""
        here = base_url(request) + self.prefix
        return [self._rehost(record, self.origin, here) for record in records]

    async def _photo(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.status != 200:
            return web.json_response({"error": "not found"}, status=self.status)
        size = photo_size(request.path)
        body = JPEG_START + bytes(size - len(JPEG_START))
        if self.omit_length:
            response = web.StreamResponse(headers={"Content-Type": self.content_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            if request.method != "HEAD":
                await response.write(body)
            await response.write_eof()
            return response
        return web.Response(body=body, content_type=self.content_type)


def _moved(value: Any, origin: str, here: str) -> Any:
    if isinstance(value, str) and value.startswith(origin + "/"):
        return here + value[len(origin) :]
    return value


def rehost_kotohomes(record: JsonDict, origin: str, here: str) -> JsonDict:
    """``photo_url`` and ``photo_template`` on ``here``."""
    moved = dict(record)
    for name in ("photo_url", "photo_template"):
        if name in moved:
            moved[name] = _moved(moved[name], origin, here)
    return moved


def rehost_kato(record: JsonDict, origin: str, here: str) -> JsonDict:
    """Each ``images[].url`` on ``here``."""
    images = record.get("images")
    if not isinstance(images, list):
        return record
    moved = dict(record)
    moved["images"] = [
        {**image, "url": _moved(image.get("url"), origin, here)}
        if isinstance(image, dict) and "url" in image
        else _moved(image, origin, here)
        for image in images
    ]
    return moved
