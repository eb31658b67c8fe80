"""Process-wide logging: structlog for listingbot, stdlib logging routed through it.

One call to :func:`configure_logging` sets everything up; calling it again (on a config
reload) replaces the previous setup instead of stacking a second one. Output is one JSON
object per line when the stream is not a terminal, and structlog's console renderer when
it is. Every event passes through a redaction step that replaces registered secrets.

The secret registry is module-level on purpose: logging is process-global, and a secret
must be redacted from every log line whichever component emits it, including third-party
libraries logging through stdlib ``logging``. The CLI registers every secret of the
configuration (:func:`register_secret`) right after loading it and after each reload;
the components that hold a secret do not register it themselves.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from listingbot.errors import ConfigError
from listingbot.redact import Redactor

__all__ = ["REDACTED", "Throttle", "configure_logging", "redact", "register_secret"]

REDACTED: Final = "[redacted]"
# Shorter values are too likely to be ordinary words or numbers: redacting them would
# garble every log line while protecting nothing worth protecting.
MIN_SECRET_LEN: Final = 6
# Third-party libraries are chatty at INFO (aiohttp access logs, APScheduler's "job
# executed" lines); their warnings and errors are what an operator needs.
STDLIB_MIN_LEVEL: Final = logging.WARNING

# Third-party warnings that are routine here, logged at debug instead. APScheduler warns
# when a job is still running at its next fire time; a poll that outlasts its interval is
# already visible in poll_finished's duration_s, and the run is simply skipped.
DEMOTED: Final[tuple[tuple[str, str], ...]] = (
    ("apscheduler", "maximum number of running instances reached"),
)

_LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Process-wide on purpose, see the module doc.
_redactor = Redactor(mask=REDACTED, min_len=MIN_SECRET_LEN)


def register_secret(value: str) -> None:
    """Redact ``value`` (and its URL-encoded forms) from every log event from now on.

    Values shorter than ``MIN_SECRET_LEN`` characters are ignored.
    """
    _redactor.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``REDACTED``."""
    return _redactor.redact(text)


def _redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_redact_value(k, pattern): _redact_value(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, pattern) for v in value]
    # Renderers fall back to repr() for other objects (URLs, exceptions, models): check
    # what would be printed, and print the redacted form only when it differs.
    text = repr(value)
    redacted = pattern.sub(REDACTED, text)
    return value if redacted == text else redacted


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact registered secrets from every value of the event."""
    pattern = _redactor.pattern
    if pattern is None:
        return event_dict
    return {
        _redact_value(key, pattern): _redact_value(value, pattern)
        for key, value in event_dict.items()
    }


class Throttle:
    """Says yes to a key at most once per ``every_s`` (for repeated warnings: the caller
    still counts every occurrence in a metric). Remembers at most ``max_keys`` keys."""

    def __init__(self, every_s: float, now: Callable[[], float], *, max_keys: int = 10_000) -> None:
        self.every_s = every_s
        self._now = now
        self._max_keys = max_keys
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def allow(self, key: Hashable) -> bool:
        now = self._now()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        return True


class _Demote(logging.Filter):
    """Turns the routine third-party warnings in ``DEMOTED`` into debug lines."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and any(
            record.name.startswith(logger) and text in record.getMessage()
            for logger, text in DEMOTED
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


class _ListingbotHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler this module installs; its type tells a re-configuration which
    handler to replace, leaving handlers others installed (pytest's, for one) alone."""


def _parse_level(level: str) -> int:
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        names = ", ".join(_LEVELS)
        raise ConfigError(f"log level: {level!r} is not one of {names}") from None


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:  # a closed stream is no terminal
        return False


def _use_json(fmt: str, stream: TextIO) -> bool:
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    if fmt != "auto":
        raise ConfigError(f"log format: {fmt!r} is not one of auto, json, console")
    return not _isatty(stream)


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging for the whole process.

    ``level`` filters listingbot's own events; stdlib loggers (aiohttp, APScheduler) pass
    from WARNING up, or from ``level`` if that is higher. ``stream`` defaults to the
    current ``sys.stdout``. Safe to call again: the previous configuration is replaced.
    Raises ``ConfigError`` for an unknown level or format.
    """
    numeric_level = _parse_level(level)
    out = sys.stdout if stream is None else stream
    renderer: Processor
    if _use_json(fmt, out):
        renderer = structlog.processors.JSONRenderer()
    else:
        # Exceptions are already text by then (format_exc_info), so they were redacted
        # and no pretty traceback with local variables (which may hold secrets) is shown.
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Plain text tracebacks: no frame locals, and redactable as a string.
    final: list[Processor] = [structlog.processors.format_exc_info, redact_secrets, renderer]

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *final],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: module-level loggers created before a reload must pick up the new
        # level and stream on their next call.
        cache_logger_on_first_use=False,
    )

    handler = _ListingbotHandler(out)
    handler.addFilter(_Demote(numeric_level))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    _replace_handlers(root, handler)
    root.setLevel(max(STDLIB_MIN_LEVEL, numeric_level))


def _replace_handlers(root: logging.Logger, handler: logging.Handler) -> None:
    stale: Iterable[logging.Handler] = [
        h for h in root.handlers if isinstance(h, _ListingbotHandler)
    ]
    for old in stale:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
