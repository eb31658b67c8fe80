"""`listingbot status` and `listingbot outbox retry-failed`: answers from the state file alone,
while the service that owns the file is running (SQLite WAL lets a reader beside it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from listingbot import cli
from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.sim import SimStack
from tests.harness import (
    CHANNELS,
    SECRETS,
    config_text,
    load,
    messages,
    meta,
    running,
    write_config,
    zips,
)

pytestmark = pytest.mark.usefixtures("no_secret_leaks", "secrets_env")

SUBS = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
  first_run: post
- name: ca-homes
  source: kotohomes
  channel: 703
  filters: {{states: [CA], zip_codes: {zips("CA")}}}
- name: uk-all
  source: kato
  channel: 704
  filters: {{}}
"""
WEST_COAST = next(c for c in CHANNELS if c[0] == 703)


@pytest.fixture
def clock() -> FakeClock:
    """Fake time that starts at the real time: status and retry-failed read the real clock."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


def shown(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+[smhd] ago\)"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the config interpolates, as the operator's shell would have them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@dataclass
class Running:
    app: App
    config_path: Path
    ca_listing: str
    started: datetime


@pytest.fixture
async def service(sims: SimStack, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    """A running app whose state holds sent messages, one failed message (its channel was
    deleted), a Kotohomes success and a Kato success followed by a failure."""
    text = config_text(sims, SUBS, state_path=tmp_path / "state.sqlite3")
    path = write_config(tmp_path, text)
    started = clock.now()
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()  # ny-homes posts what matches; the others baseline
        sims.chatkitty.remove_channel(703)
        ca = sims.market.add_kotohomes(state="CA", price=700_000)
        clock.advance(60)
        sims.faults.enabled_for = {"kato"}
        sims.faults.set(rate_500=1.0)
        assert not await app.once()
        sims.faults.clear()
        yield Running(app, path, ca["id"], started)


def status(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["status", "--config", str(path)]) == 0
    return capsys.readouterr().out


async def test_status_shows_each_source_last_success_and_last_failure_with_reason(
    service: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per source: last success, last failure, and the reason while it is failing."""
    out = status(service.config_path, capsys)
    section = out.split("\nsources:\n")[1].split("\n\n")[0]
    lines = section.splitlines()
    assert re.fullmatch(f"  kotohomes  last success {STAMP}", lines[0])
    assert lines[1] == "             last failure never"
    assert lines[2] == "             last successful poll: 19 listings, 1 events"
    assert lines[3].startswith(f"  kato       last success {shown(service.started)} (")
    assert re.fullmatch(f"             last failure {STAMP}", lines[4])
    assert lines[5].startswith("             failing (1x): kato: GET ")
    assert "HTTP 500" in lines[5]
    assert "[subscriptions: uk-all]" in lines[5]


async def test_status_shows_each_subscription_matches_and_last_message(
    service: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per subscription: how many listings match and when it last got a message."""
    out = status(service.config_path, capsys)
    section = out.split("\nsubscriptions:\n")[1].split("\n\n")[0]
    ca, ny, uk = section.splitlines()  # the state file's order: by name
    assert ny.startswith(
        f"  ny-homes (kotohomes, active): 5 matches, last message {shown(service.started)} ("
    )
    assert ca == "  ca-homes (kotohomes, active): 14 matches, last message never"
    assert uk == "  uk-all (kato, active): 24 matches, last message never"


async def test_status_shows_the_outbox_by_state_with_the_reasons_of_failed_rows(
    service: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outbox by state, and each failed row with its channel, key and reason."""
    out = status(service.config_path, capsys)
    section = out.split("\noutbox:\n")[1]
    lines = section.splitlines()
    assert lines[:4] == ["  pending  0", "  sending  0", "  sent     5", "  failed   1"]
    (failed,) = [line for line in lines if line.startswith("  failed #")]
    assert " channel 703 " in failed
    assert "404" in failed


async def test_status_reads_the_state_while_the_app_keeps_writing_it(
    service: Running, capsys: pytest.CaptureFixture[str], sims: SimStack
) -> None:
    """Status beside a running app neither blocks it nor sees a half-written poll."""
    status(service.config_path, capsys)
    sims.market.add_kotohomes(state="NY")
    await service.app.once()
    assert len(messages(sims, 702)) == 6
    out = status(service.config_path, capsys)
    assert "  sent     6" in out


async def test_retry_failed_requeues_failed_rows_for_the_running_app(
    service: Running, capsys: pytest.CaptureFixture[str], sims: SimStack
) -> None:
    """`outbox retry-failed` puts failed rows back in the queue; the running app sends them."""
    assert cli.main(["outbox", "retry-failed", "--config", str(service.config_path)]) == 0
    assert capsys.readouterr().out == "1 failed message(s) put back in the queue\n"
    sims.chatkitty.add_channel(*WEST_COAST)
    delivered = await service.app.deliver()
    assert delivered.sent == 1
    assert [meta(m)["listing_id"] for m in messages(sims, 703)] == [service.ca_listing]
    out = status(service.config_path, capsys)
    assert "  failed   0" in out
    assert "failed #" not in out


async def test_status_without_a_state_file_exits_1_saying_so(
    sims: SimStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status before the service ever ran exits 1 with a clear message, creating nothing."""
    path = write_config(tmp_path, config_text(sims, SUBS, state_path=tmp_path / "none.sqlite3"))
    assert cli.main(["status", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"listingbot: state file error: no state file at {tmp_path / 'none.sqlite3'} "
        "(has listingbot run yet?)\n"
    )
    assert not (tmp_path / "none.sqlite3").exists()
