"""Keep secrets out of everything listingbot prints.

Kotohomes puts its API key in the query string, so every URL is a potential leak; tokens and
client secrets can come back inside an upstream error body. Two tools cover both cases:
``redact_url`` blanks the values of credential-bearing query parameters, ``redact_text``
removes known secret values (and their URL-encoded forms) from any text.
"""

from __future__ import annotations

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


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (plain or URL-encoded) replaced by ``***``.

    Every non-empty secret is removed, however short: a garbled message is a cosmetic
    problem, a leaked credential is not.
    """
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants.update((secret, quote(secret, safe=""), quote_plus(secret)))
    # Longest first, so that a secret containing another one is masked whole.
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, MASK)
    return text
