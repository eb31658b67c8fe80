"""Every exception listingbot raises on purpose.

::

    ListingBotError
    ├── ConfigError              bad configuration or usage (exit code 2)
    ├── StoreError               the state file cannot be opened, migrated or written
    │   └── StateLocked          another process holds the state file (exit code 2)
    └── UpstreamError            a remote API failed (carries the API's name)
        ├── UpstreamUnavailable  retryable: 5xx, 429, timeout, connection error
        ├── UpstreamAuthError    credentials refused (401 after one refresh, 403)
        └── UpstreamRejected     4xx that retrying cannot fix (carries status and hint)
            └── NotFound         404: the resource does not exist

No third-party exception crosses a module boundary: clients translate aiohttp's
errors into these, always with ``raise ... from err``. Messages never contain secrets:
URLs are redacted before they are put into an error.
"""

from __future__ import annotations


class ListingBotError(Exception):
    """Base of every error listingbot raises on purpose."""


class ConfigError(ListingBotError):
    """The configuration (or the command line) is wrong; the message names the key."""


class StoreError(ListingBotError):
    """The SQLite state file cannot be opened, migrated or written."""


class StateLocked(StoreError):
    """Another process holds the state file's lock; the message names it and since when."""


class UpstreamError(ListingBotError):
    """A remote API call failed."""

    def __init__(self, api: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{api}: {message}")
        self.api = api
        self.status = status
        self.detail = message


class UpstreamUnavailable(UpstreamError):
    """Retryable failure: 5xx, 429, timeout or connection error.

    ``retry_after_s`` is the server's ``Retry-After`` in seconds, when it sent one.
    ``ambiguous`` is true when the request may have reached the server (a timeout or a
    connection dropped after sending), so a non-idempotent call may have taken effect.
    """

    def __init__(
        self,
        api: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(api, message, status=status)
        self.retry_after_s = retry_after_s
        self.ambiguous = ambiguous


class UpstreamAuthError(UpstreamError):
    """Credentials were refused (401 after one token refresh, or 403)."""


class UpstreamRejected(UpstreamError):
    """A 4xx answer that retrying will not fix; ``hint`` is the server's explanation."""

    def __init__(self, api: str, message: str, *, status: int, hint: str = "") -> None:
        super().__init__(api, message, status=status)
        self.hint = hint


class NotFound(UpstreamRejected):
    """404: the channel, message or listing does not exist."""
