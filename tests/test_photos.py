"""Photos as external files: the size and type from a HEAD request against a loopback
server, and file names made safe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from listingbot.clients.chatkitty import ExternalFile
from listingbot.photos import MAX_NAME_CHARS, PhotoProbe, photo_name
from listingbot.sim._http import start_app

JPEG = b"\xff\xd8" + b"x" * 998


async def _photo(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "photo.jpg":
        return web.Response(body=JPEG, content_type="image/jpeg")
    if name == "page.jpg":
        return web.Response(text="<html>not a photo</html>", content_type="text/html")
    if name == "stream.jpg":
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(JPEG)
        return response
    return web.Response(status=404)


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/p/{name}", _photo)
    runner, url = await start_app(app, "127.0.0.1", 0)
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest.fixture
async def probe() -> AsyncIterator[PhotoProbe]:
    async with aiohttp.ClientSession() as session:
        yield PhotoProbe(session, timeout_s=5.0)


async def test_a_photo_gets_its_size_and_type_from_head(base: str, probe: PhotoProbe) -> None:
    """HEAD gives Content-Length and Content-Type: an ExternalFile the schema accepts."""
    found = await probe.probe(f"{base}/p/photo.jpg", "li_1")
    assert found == ExternalFile(
        url=f"{base}/p/photo.jpg", name="li_1-photo.jpg", content_type="image/jpeg", size=1000
    )


@pytest.mark.parametrize("name", ["page.jpg", "missing.jpg", "stream.jpg"])
async def test_a_photo_without_a_usable_answer_is_left_out(
    base: str, probe: PhotoProbe, name: str
) -> None:
    """Not an image, not found, or no Content-Length: None (leave the photo out)."""
    assert await probe.probe(f"{base}/p/{name}", "li_1") is None


@pytest.mark.parametrize("url", ["ftp://x.test/a.jpg", "/relative.jpg", "http://[bad"])
async def test_a_photo_that_is_not_an_http_url_is_left_out(probe: PhotoProbe, url: str) -> None:
    """Only absolute http(s) URLs are asked for."""
    assert await probe.probe(url, "li_1") is None


async def test_an_unreachable_photo_host_is_left_out(probe: PhotoProbe) -> None:
    """A refused connection is no photo, not an error."""
    assert await probe.probe("http://127.0.0.1:9/p.jpg", "li_1") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.test/li/0_large.jpg", "li_1-0_large.jpg"),
        ("https://x.test/a/<@here>%20ph%E2%80%AEoto.JPG?s=1", "li_1-here-photo.JPG"),
        ("https://x.test/dir/..%2F..%2Fetc%2Fpasswd", "li_1-.-.-etc-passwd.jpg"),
        ("https://x.test/", "li_1.jpg"),
        ("https://x.test/caf%C3%A9.jpeg", "li_1-cafe.jpeg"),
    ],
)
def test_photo_names_are_sanitized(url: str, expected: str) -> None:
    """Letters, digits, '.', '_' and '-' only: no path, mention, control or bidi text."""
    assert photo_name(url, "li_1", "image/jpeg") == expected


def test_a_long_photo_name_is_capped_keeping_its_extension() -> None:
    """Names are at most MAX_NAME_CHARS and still end in the type's extension."""
    name = photo_name("https://x.test/" + "a" * 300, "li_1", "image/png")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith(".png")
