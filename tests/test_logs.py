"""Specification of listingbot's logging setup (listingbot.logs)."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from listingbot.errors import ConfigError
from listingbot.logs import REDACTED, configure_logging, redact, register_secret


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_global_logging() -> Iterator[None]:
    """Logging is process-global: give every test a clean slate and put things back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def new_secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def fail(exc: Exception) -> None:
    raise exc


def without_colors(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- shape ---------------------------------------------------------------------------


def test_json_line_has_event_level_timestamp_and_fields(stream: io.StringIO) -> None:
    """Each event is one JSON object with event, level, ISO UTC timestamp and its fields."""
    configure_logging(stream=stream)
    structlog.get_logger().info("poll_finished", source="kato", listings=3)
    [record] = records(stream)
    assert record["event"] == "poll_finished"
    assert record["level"] == "info"
    assert record["source"] == "kato"
    assert record["listings"] == 3
    assert datetime.fromisoformat(record["timestamp"]).utcoffset() == UTC.utcoffset(None)


def test_auto_format_is_json_when_stream_is_not_a_terminal(stream: io.StringIO) -> None:
    """Redirected output (files, containers) gets JSON lines."""
    configure_logging(fmt="auto", stream=stream)
    structlog.get_logger().info("started")
    assert records(stream)[0]["event"] == "started"


def test_auto_format_is_console_on_a_terminal() -> None:
    """A terminal gets the human-readable console renderer, not JSON."""
    terminal = FakeTerminal()
    configure_logging(fmt="auto", stream=terminal)
    structlog.get_logger().info("started", source="kato")
    line = without_colors(terminal.getvalue())
    assert "started" in line
    assert "source=kato" in line
    assert not line.startswith("{")


def test_json_format_is_forced_on_a_terminal() -> None:
    """fmt="json" gives JSON even on a terminal."""
    terminal = FakeTerminal()
    configure_logging(fmt="json", stream=terminal)
    structlog.get_logger().info("started")
    assert json.loads(terminal.getvalue())["event"] == "started"


def test_contextvars_are_merged(stream: io.StringIO) -> None:
    """Context bound with structlog.contextvars appears in every event."""
    configure_logging(stream=stream)
    structlog.contextvars.bind_contextvars(poll_id="p-1")
    structlog.get_logger().info("poll_started")
    assert records(stream)[0]["poll_id"] == "p-1"


def test_exception_is_rendered_as_text_without_locals(stream: io.StringIO) -> None:
    """A logged exception becomes a plain-text traceback; frame locals are not shown."""
    configure_logging(stream=stream)
    hidden_local = "value-of-a-local-variable"
    try:
        fail(ValueError("broken record"))
    except ValueError:
        structlog.get_logger().exception("record_skipped")
    [record] = records(stream)
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: broken record" in record["exception"]
    assert hidden_local not in stream.getvalue()


# --- levels --------------------------------------------------------------------------


def test_events_below_the_level_are_dropped(stream: io.StringIO) -> None:
    """With level=warning, info and debug events are not written."""
    configure_logging(level="warning", stream=stream)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert [r["event"] for r in records(stream)] == ["w"]


def test_level_name_is_case_insensitive(stream: io.StringIO) -> None:
    """ "DEBUG" and "debug" are the same level."""
    configure_logging(level="DEBUG", stream=stream)
    structlog.get_logger().debug("d")
    assert [r["event"] for r in records(stream)] == ["d"]


def test_unknown_level_is_a_config_error() -> None:
    """A typo in the level is reported as a configuration error."""
    with pytest.raises(ConfigError, match="verbose"):
        configure_logging(level="verbose")


def test_stdlib_warnings_are_rendered_as_json(stream: io.StringIO) -> None:
    """Library warnings (aiohttp, APScheduler) come out in the same JSON shape."""
    configure_logging(stream=stream)
    logging.getLogger("aiohttp.client").warning("connection %s reset", "pool-1")
    [record] = records(stream)
    assert record["event"] == "connection pool-1 reset"
    assert record["level"] == "warning"
    assert record["logger"] == "aiohttp.client"
    assert "timestamp" in record


def test_stdlib_info_is_dropped(stream: io.StringIO) -> None:
    """Library chatter below WARNING is not written, even when listingbot logs at debug."""
    configure_logging(level="debug", stream=stream)
    logging.getLogger("apscheduler.executors").info("Job executed")
    assert stream.getvalue() == ""


# --- idempotence ---------------------------------------------------------------------


def test_configuring_twice_does_not_duplicate_output(stream: io.StringIO) -> None:
    """A second call replaces the first setup: every event is still written once."""
    configure_logging(stream=stream)
    configure_logging(stream=stream)
    structlog.get_logger().info("one")
    logging.getLogger("aiohttp").warning("two")
    assert [r["event"] for r in records(stream)] == ["one", "two"]


def test_reconfiguring_changes_the_level_of_existing_loggers(stream: io.StringIO) -> None:
    """A logger obtained before a reload follows the new level."""
    configure_logging(level="info", stream=stream)
    log = structlog.get_logger()
    log.debug("hidden")
    configure_logging(level="debug", stream=stream)
    log.debug("shown")
    assert [r["event"] for r in records(stream)] == ["shown"]


def test_reconfiguring_moves_output_to_the_new_stream() -> None:
    """After a reload, nothing is written to the old stream any more."""
    old, new = io.StringIO(), io.StringIO()
    configure_logging(stream=old)
    configure_logging(stream=new)
    structlog.get_logger().info("a")
    logging.getLogger("aiohttp").warning("b")
    assert old.getvalue() == ""
    assert [r["event"] for r in records(new)] == ["a", "b"]


# --- secrets -------------------------------------------------------------------------


def test_registered_secret_is_redacted_from_event_fields(stream: io.StringIO) -> None:
    """A secret in any string field, nested or not, is replaced."""
    secret = new_secret()
    register_secret(secret)
    configure_logging(stream=stream)
    structlog.get_logger().info(
        f"token {secret}", header=f"Bearer {secret}", nested={"list": [secret]}
    )
    out = stream.getvalue()
    assert secret not in out
    [record] = records(stream)
    assert record["header"] == f"Bearer {REDACTED}"
    assert record["nested"] == {"list": [REDACTED]}
    assert record["event"] == f"token {REDACTED}"


def test_registered_secret_is_redacted_from_exception_text(stream: io.StringIO) -> None:
    """An exception message carrying a secret is redacted in the rendered traceback."""
    secret = new_secret()
    register_secret(secret)
    configure_logging(stream=stream)
    try:
        fail(RuntimeError(f"auth failed for {secret}"))
    except RuntimeError:
        structlog.get_logger().exception("auth_failed")
    assert secret not in stream.getvalue()
    assert f"auth failed for {REDACTED}" in records(stream)[0]["exception"]


def test_registered_secret_is_redacted_from_stdlib_records(stream: io.StringIO) -> None:
    """Library log lines go through the same redaction."""
    secret = new_secret()
    register_secret(secret)
    configure_logging(stream=stream)
    logging.getLogger("aiohttp.client").warning("GET https://api.example?key=%s", secret)
    assert secret not in stream.getvalue()


def test_url_encoded_secret_is_redacted(stream: io.StringIO) -> None:
    """A secret sent in a query string is also redacted in its percent-encoded form."""
    secret = f"{new_secret()}/+="
    register_secret(secret)
    configure_logging(stream=stream)
    structlog.get_logger().info(
        "request", url="https://x.example/?key=" + secret[:-3] + "%2F%2B%3D"
    )
    assert records(stream)[0]["url"] == f"https://x.example/?key={REDACTED}"


def test_secret_inside_an_object_repr_is_redacted(stream: io.StringIO) -> None:
    """A non-string value whose printed form holds a secret is printed redacted."""

    class Holder:
        def __repr__(self) -> str:
            return f"Holder({secret})"

    secret = new_secret()
    register_secret(secret)
    configure_logging(stream=stream)
    structlog.get_logger().info("built", client=Holder())
    assert records(stream)[0]["client"] == f"Holder({REDACTED})"


def test_short_values_are_not_registered() -> None:
    """Values shorter than six characters would redact common words, so they are ignored."""
    register_secret("admin")
    assert redact("admin logged in") == "admin logged in"


def test_redact_replaces_registered_secrets_in_any_text() -> None:
    """redact() is available for text that does not go through a logger."""
    secret = new_secret()
    register_secret(secret)
    assert redact(f"error: {secret}!") == f"error: {REDACTED}!"
