"""Operator polish: what the command line and the logs tell an operator. Dry runs report
failures as `once` does, repeated warnings are said once, routine lines stay quiet."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from listingbot import cli
from listingbot.clock import FakeClock
from listingbot.logs import configure_logging
from listingbot.sim import SimStack
from tests.harness import SECRETS, LogCapture, config_text, load, running, sample, write_config

UK_BASE = """\
- name: uk-base
  source: kato
  channel: 704
  filters: {}
"""
# Today's Kotohomes refuses a search by states alone (HTTP 400).
CA_STATES_ONLY = """\
- name: ca-states
  source: kotohomes
  channel: 703
  filters: {states: [CA]}
"""


def cfg(sims: SimStack, tmp_path: Path, subs: str, sources: tuple[str, ...] = ("kato",)) -> str:
    return config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=sources)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


@pytest.mark.usefixtures("no_secret_leaks")
async def test_dry_run_reports_a_refused_query_as_once_does_and_what_a_first_run_records(
    sims: SimStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`once --dry-run` exits 1 with the same error lines as `once` when a source refuses a
    subscription's query, and says what a baselining subscription would record."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = write_config(
        tmp_path, cfg(sims, tmp_path, UK_BASE + CA_STATES_ONLY, sources=("kotohomes", "kato"))
    )
    capsys.readouterr()
    dry = await asyncio.to_thread(cli.main, ["once", "--dry-run", "--config", str(path)])
    dry_out = capsys.readouterr().out
    real = await asyncio.to_thread(cli.main, ["--config", str(path), "once"])
    real_out = capsys.readouterr().out
    assert (dry, real) == (1, 1)

    def errors(text: str) -> list[tuple[Any, ...]]:
        return [
            (e["event"], e.get("subscription"), e.get("error"))
            for e in json_lines(text)
            if e.get("level") == "error"
        ]

    assert errors(dry_out) == errors(real_out)
    assert [e[:2] for e in errors(dry_out)] == [("subscription_failing", "ca-states")]
    total = len(sims.market.kato_records())
    assert f"--- would record {total} current matches for uk-base, post nothing" in dry_out
    assert "would record" not in real_out


async def test_a_bad_record_is_warned_about_once_an_hour_and_counted_every_time(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """The same malformed record in every poll: one `record_skipped` warning per record id
    per hour, while listingbot_records_skipped counts it in every poll."""
    sims.faults.enabled_for = {"kato"}
    sims.faults.set(rate_malformed=0.3)
    async with running(load(tmp_path, cfg(sims, tmp_path, UK_BASE)), clock) as app:
        counted = []
        for advance in (0, 600, 3000):  # two polls within the hour, one after it
            clock.advance(advance)
            await app.once()
            counted.append(sample(app, "listingbot_records_skipped_total", source="kato"))
    warned = Counter(
        e["record_id"] for e in json_lines(logs.getvalue()) if e["event"] == "record_skipped"
    )
    per_poll = counted[0]
    assert per_poll > 0
    assert counted == [per_poll, 2 * per_poll, 3 * per_poll]
    assert sum(warned.values()) == 2 * per_poll  # polls 1 and 3; poll 2 was within the hour
    assert set(warned.values()) == {2}


async def test_an_idle_delivery_pass_logs_at_debug_only(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """A delivery pass with nothing to do logs `delivery_finished` at debug, not info."""
    async with running(load(tmp_path, cfg(sims, tmp_path, UK_BASE)), clock) as app:
        await app.deliver()
    (line,) = [e for e in json_lines(logs.getvalue()) if e["event"] == "delivery_finished"]
    assert line["level"] == "debug"


@pytest.mark.parametrize("level", ["info", "debug"])
def test_apscheduler_skipped_run_warnings_become_debug_lines(level: str) -> None:
    """APScheduler's "maximum number of running instances reached" is a debug line: absent
    at info, at debug level when debug is on. Other third-party warnings stay warnings."""
    stream = io.StringIO()
    configure_logging(level=level, fmt="json", stream=stream)
    try:
        scheduler = logging.getLogger("apscheduler.scheduler")
        scheduler.warning(
            'Execution of job "poll-kato" skipped: maximum number of running instances reached (1)'
        )
        scheduler.warning("something else")
    finally:
        configure_logging(level="info", fmt="json")
    lines = json_lines(stream.getvalue())
    skipped = [e for e in lines if "maximum number of running instances" in e["event"]]
    assert [e["level"] for e in skipped] == ([] if level == "info" else ["debug"])
    assert [e["level"] for e in lines if e["event"] == "something else"] == ["warning"]


def test_top_level_help_is_written_for_users(capsys: Any) -> None:
    """`listingbot --help` says what listingbot does and how to get started, in a user's
    words, and shows --config at the top level."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("usage: listingbot [-h] [--version] [--config CONFIG]")
    assert "each new listing, price change and status change" in out
    assert "ChatKitty channels" in out
    for command in ("demo", "check-config --online", "once --dry-run", "run", "status"):
        assert f"listingbot {command}" in out
    assert "composition" not in out  # no developer vocabulary
