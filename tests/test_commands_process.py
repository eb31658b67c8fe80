"""Chat commands across a real process kill: `listingbot run` as a child, SIGKILLed
between carrying a command out and knowing its answer was posted, then started again on
the same state file (as tests/test_reliability.py does for listings)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from listingbot.store import Store
from tests.harness import SECRETS, config_text, make_sims, zips
from tests.reliability.service import Service, wait_for

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

CHANNEL = 702


def rows(state: Path, sql: str) -> int:
    """A count from the state file while the service holds it (WAL lets readers in)."""
    if not state.exists():
        return 0
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not migrated yet
    finally:
        conn.close()


async def test_a_process_killed_before_it_knows_its_answer_was_posted_answers_once(
    tmp_path: Path,
) -> None:
    """The answer's POST is stored but its response lost, and the process is SIGKILLed:
    the next process finds that answer (by the command id it carries) instead of posting
    a second one, and the subscribe took effect exactly once."""
    async with make_sims(channels=((CHANNEL, "nyc-homes", "NYC"),)) as sims:
        sims.chatkitty.set_moderators(CHANNEL, ["mod"])
        state = tmp_path / "state.sqlite3"
        subs = f"- name: ny\n  source: kotohomes\n  channel: {CHANNEL}\n"
        subs += f"  filters: {{zip_codes: {zips('NY')}}}\n"
        yaml_text = config_text(
            sims,
            subs,
            state_path=state,
            sources=("kotohomes",),
            extra="commands:\n  enabled_channels: [nyc-homes]\n  poll_interval: 0.1s\n",
        )
        config = tmp_path / "listingbot.yaml"
        config.write_text(yaml_text)
        service = Service(config, SECRETS, tmp_path)
        await service.start()
        try:
            await wait_for(
                lambda: rows(state, "SELECT COUNT(*) FROM command_channels") == 1,
                timeout_s=30,
                what="commands to be enabled in the channel",
            )
            sims.faults.enabled_for = {"chatkitty"}
            sims.faults.set(rate_commit_then_fail=1.0)
            text = "/listings subscribe kotohomes zip=10001 name=mine"
            command = sims.chatkitty.post_as(CHANNEL, "mod", text)
            await wait_for(
                lambda: service.count("command_answer_failed") >= 1,
                timeout_s=30,
                what="the answer's POST to fail after it was stored",
            )
            await service.kill()
            sims.faults.clear()
            assert len(sims.chatkitty.thread(int(command["id"]))) == 1
            await service.start()
            await wait_for(
                lambda: service.count("command_answer_found") >= 1,
                timeout_s=30,
                what="the next process to find the answer",
            )
            passes = service.count("command_handled")
            await wait_for(
                lambda: rows(state, "SELECT COUNT(*) FROM commands WHERE answered_at IS NULL") == 0,
                timeout_s=30,
                what="the answer to be marked posted",
            )
            assert await service.stop() == 0
        finally:
            if service.running:
                await service.kill()
    assert len(sims.chatkitty.thread(int(command["id"]))) == 1
    assert passes == 1  # carried out by the first process only
    store = Store.open_sync(state, lambda: datetime.now(UTC))
    try:
        assert [r.name for r in store.chat_subscriptions_sync()] == ["mine"]
    finally:
        store.close_sync()
