"""Keep secrets out of everything listingbot prints.

Kotohomes puts its API key in the query string, so every URL is a potential leak; tokens and
client secrets can come back inside an upstream error body. Two tools cover both cases:
``redact_url`` blanks the values of credential-bearing query parameters, ``redact_text``
removes known secret values (and their URL-encoded forms) from any text. Both rest on
one :class:`Redactor`, which the log processor (``logs.py``) and config error messages use
too: there is one way secrets are masked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable
from urllib.parse import quote, quote_plus, unquote_plus

import yarl

MASK = "***"

# Query parameters that carry credentials in the APIs listingbot talks to (Kotohomes: `key`)
# or that an OAuth server may echo back; matched case-insensitively.
SECRET_PARAMS: frozenset[str] = frozenset(
    {"key", "api_key", "apikey", "access_token", "token", "client_secret", "password"}
)


def redact_url(url: str | yarl.URL, params: Collection[str] = SECRET_PARAMS) -> str:
    """The URL as text with the values of ``params`` (and any userinfo password) masked.

    Works on the raw query string so that the rest of the URL is shown exactly as sent.
    """
    text = str(url)
    base, sep_fragment, fragment = text.partition("#")
    base, sep_query, query = base.partition("?")
    base = _mask_userinfo(base)
    if sep_query:
        wanted = {name.lower() for name in params}
        parts = []
        for part in query.split("&"):
            name, eq, _value = part.partition("=")
            if eq and unquote_plus(name).removesuffix("[]").lower() in wanted:
                parts.append(f"{name}={MASK}")
            else:
                parts.append(part)
        base = f"{base}?{'&'.join(parts)}"
    return f"{base}{sep_fragment}{fragment}"


def _mask_userinfo(base: str) -> str:
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return base
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{host}{slash}{path}"


class Redactor:
    """Secret values, each with its URL-encoded forms, masked in one pass, longest first
    (so a secret containing another one is masked whole).

    Secrets shorter than ``min_len`` are not taken: where the text is everyday output
    (log lines), a short value is too likely an ordinary word to be worth garbling every
    line for. ``add`` is thread-safe; ``redact`` reads one immutable pattern.
    """

    def __init__(self, secrets: Iterable[str] = (), *, mask: str = MASK, min_len: int = 1) -> None:
        self.mask = mask
        self.min_len = max(1, min_len)
        self._variants: set[str] = set()
        self._lock = threading.Lock()
        self.pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Mask ``secret`` (and its URL-encoded forms) from now on."""
        if len(secret) < self.min_len:
            return
        # A key sent in a query string shows up percent-encoded in logged URLs.
        variants = {secret, quote(secret, safe=""), quote_plus(secret)}
        with self._lock:
            if variants <= self._variants:
                return
            self._variants |= variants
            ordered = sorted(self._variants, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by the mask."""
        pattern = self.pattern
        return text if pattern is None else pattern.sub(self.mask, text)


def redact_text(text: str, secrets: Iterable[str], *, min_len: int = 1) -> str:
    """``text`` with every occurrence of each secret (plain or URL-encoded) replaced by ``***``.

    Every non-empty secret is removed, however short (unless ``min_len`` says otherwise): a
    garbled message is a cosmetic problem, a leaked credential is not.
    """
    return Redactor(secrets, min_len=min_len).redact(text)
