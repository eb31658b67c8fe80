"""A listing's primary photo as a ChatKitty external file: its size and type from a HEAD
request, its file name made safe.

``CreateExternalFileProperties`` requires the size; the listing APIs never give it. A
photo whose size or image type cannot be had is left out (the text goes anyway).
"""

from __future__ import annotations

import re
import unicodedata

import aiohttp
import structlog
import yarl

from listingbot.clients.chatkitty import ExternalFile

log = structlog.get_logger("listingbot.photos")

MAX_NAME_CHARS = 80
MAX_PHOTO_BYTES = 50 * 1024 * 1024  # a "photo" larger than this is not one
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


def photo_name(url: str, listing_id: str, content_type: str) -> str:
    """A file name for the photo: the URL's last path segment, reduced to letters, digits,
    ``.``, ``_`` and ``-`` (no path, no control or bidi characters, no mention syntax),
    prefixed by the listing id, with an extension that fits the content type."""
    try:
        segment = yarl.URL(url).name
    except ValueError:
        segment = ""
    stem = _safe(f"{listing_id}-{segment}" if segment else listing_id)
    extension = _EXTENSIONS.get(content_type, "")
    fits = stem.lower().endswith(extension) or (extension == ".jpg" and stem.endswith(".jpeg"))
    if extension and not fits:
        stem = f"{stem[: MAX_NAME_CHARS - len(extension)]}{extension}"
    return stem[:MAX_NAME_CHARS] or f"photo{extension}"


def _safe(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"-{2,}", "-", _UNSAFE.sub("-", ascii_text)).strip(".-_")
    return re.sub(r"\.{2,}", ".", cleaned)


class PhotoProbe:
    """HEAD requests for photo sizes. ``None`` from :meth:`probe` means: leave it out."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout_s: float = 10.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def probe(self, url: str, listing_id: str) -> ExternalFile | None:
        """The photo as an external file, or None (with the reason logged) when it is not
        an http(s) URL, does not answer 200, is not an image or has no usable size."""
        try:
            target = yarl.URL(url)
        except ValueError:
            log.info("photo_left_out", reason="not a URL")
            return None
        found, reason = await self._head(target, listing_id)
        if found is None:
            shown = target.with_query(None).with_fragment(None)
            log.info("photo_left_out", url=str(shown)[:200], reason=reason)
        return found

    async def _head(self, target: yarl.URL, listing_id: str) -> tuple[ExternalFile | None, str]:
        url = str(target)
        if target.scheme not in ("http", "https") or not target.host:
            return None, "not an http(s) URL"
        try:
            async with self._session.head(
                target, timeout=self._timeout, allow_redirects=True
            ) as response:
                status = response.status
                content_type = response.content_type
                length = response.content_length
        except (aiohttp.ClientError, TimeoutError) as err:
            return None, f"HEAD failed ({type(err).__name__})"
        if status != 200:
            return None, f"HEAD answered {status}"
        if not content_type.startswith("image/"):
            return None, f"not an image ({content_type[:40]})"
        if length is None or not 0 < length <= MAX_PHOTO_BYTES:
            return None, "no usable Content-Length"
        name = photo_name(url, listing_id, content_type)
        return ExternalFile(url=str(target), name=name, content_type=content_type, size=length), ""
