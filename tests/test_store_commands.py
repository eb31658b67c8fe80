"""The state file's chat-command part: chat subscriptions, command cursors, outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from listingbot.clock import FakeClock
from listingbot.store import (
    COMMAND_DONE,
    COMMAND_SKIPPED,
    ChatChange,
    ChatSubscriptionRow,
    HandledCommand,
    Store,
)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "state.sqlite3", clock.now)
    yield s
    await s.close()


def row(clock: FakeClock, name: str = "city", channel: int = 702) -> ChatSubscriptionRow:
    return ChatSubscriptionRow(
        name=name,
        channel_id=channel,
        source="kato",
        filters={"postcode_prefixes": ["EC2"]},
        first_run="baseline",
        state="active",
        created_by="ana",
        created_at=clock.now(),
        command_id=11,
    )


def handled(message_id: int, answer: str | None = "ok", channel: int = 702) -> HandledCommand:
    return HandledCommand(message_id, channel, "ana", "subscribe", COMMAND_DONE, answer)


async def test_a_channel_is_enabled_from_the_moment_it_joins(
    store: Store, clock: FakeClock
) -> None:
    """A newly enabled channel gets enabled_at = now and no cursor; an old one keeps its."""
    first = await store.command_channels([702])
    clock.advance(60)
    again = await store.command_channels([702, 703])
    assert again[702] == first[702]
    assert again[703].enabled_at == clock.now()
    assert again[703].last_message_id is None


async def test_a_channel_that_leaves_starts_over_when_enabled_again(
    store: Store, clock: FakeClock
) -> None:
    """Disabling forgets the cursor: commands posted meanwhile are older than re-enabling."""
    await store.command_channels([702])
    await store.record_command(handled(5), None)
    await store.command_channels([])
    clock.advance(60)
    back = await store.command_channels([702])
    assert back[702].enabled_at == clock.now()
    assert back[702].last_message_id is None


async def test_effect_outcome_and_cursor_are_written_together(
    store: Store, clock: FakeClock
) -> None:
    """Recording a subscribe inserts the subscription, the outcome and moves the cursor."""
    await store.command_channels([702])
    assert await store.record_command(handled(11), ChatChange("add", "city", row(clock)))
    assert [r.name for r in await store.chat_subscriptions()] == ["city"]
    assert (await store.command_channels([702]))[702].last_message_id == 11
    assert [a.message_id for a in await store.pending_answers()] == [11]


async def test_a_command_is_recorded_once(store: Store, clock: FakeClock) -> None:
    """The same message handled twice is refused the second time and changes nothing."""
    await store.command_channels([702])
    assert await store.record_command(handled(11), ChatChange("add", "city", row(clock)))
    assert not await store.record_command(handled(11), ChatChange("remove", "city"))
    assert [r.name for r in await store.chat_subscriptions()] == ["city"]


async def test_a_failed_effect_writes_nothing(store: Store, clock: FakeClock) -> None:
    """A subscribe whose insert fails (name taken) leaves no outcome and no cursor move."""
    await store.command_channels([702])
    await store.record_command(handled(11), ChatChange("add", "city", row(clock)))
    with pytest.raises(Exception, match="UNIQUE"):
        await store.record_command(handled(12), ChatChange("add", "city", row(clock)))
    assert (await store.command_channels([702]))[702].last_message_id == 11
    assert [a.message_id for a in await store.pending_answers()] == [11]


async def test_answered_commands_leave_the_pending_list(store: Store, clock: FakeClock) -> None:
    """mark_answered takes a command off the answers to post; unanswered ones need none."""
    await store.command_channels([702])
    await store.record_command(handled(11), None)
    await store.record_command(HandledCommand(12, 702, "ana", "list", COMMAND_SKIPPED, None), None)
    await store.mark_answered(11, 900)
    assert await store.pending_answers() == []


async def test_pause_resume_and_remove(store: Store, clock: FakeClock) -> None:
    """Pause and resume flip the state (resume re-baselines); remove deletes the row."""
    await store.command_channels([702])
    await store.record_command(handled(11), ChatChange("add", "city", row(clock)))
    await store.sync_subscriptions([("city", "kato", "h")])
    await store.record_command(handled(12), ChatChange("pause", "city"))
    assert (await store.chat_subscriptions())[0].state == "paused"
    await store.record_command(handled(13), ChatChange("resume", "city"))
    assert (await store.chat_subscriptions())[0].state == "active"
    assert await store.needs_baseline([("city", "kato", "h")]) == {"city"}
    await store.record_command(handled(14), ChatChange("remove", "city"))
    assert await store.chat_subscriptions() == []


async def test_recent_commands_counts_one_user_in_one_channel(
    store: Store, clock: FakeClock
) -> None:
    """The flood counter counts a user's handled commands in the window, skipped ones not."""
    await store.command_channels([702])
    await store.record_command(handled(1), None)
    clock.advance(30)
    await store.record_command(handled(2), None)
    await store.record_command(HandledCommand(3, 702, "ana", "list", COMMAND_SKIPPED, None), None)
    await store.record_command(HandledCommand(4, 702, "bo", "list", COMMAND_DONE, "x"), None)
    since = clock.now() - timedelta(seconds=10)
    assert await store.recent_commands(702, "ana", since) == 1


async def test_chat_subscriptions_survive_a_reopen(tmp_path: Path, clock: FakeClock) -> None:
    """Chat subscriptions live in the state file: a restart finds them."""
    path = tmp_path / "s.sqlite3"
    s = await Store.open(path, clock.now)
    await s.command_channels([702])
    await s.record_command(handled(11), ChatChange("add", "city", row(clock)))
    await s.close()
    s = await Store.open(path, clock.now)
    try:
        rows = await s.chat_subscriptions()
    finally:
        await s.close()
    assert rows == [row(clock)]


async def test_old_answered_commands_are_forgotten(store: Store, clock: FakeClock) -> None:
    """prune_commands drops answered commands handled before the cutoff, never unanswered."""
    await store.command_channels([702])
    await store.record_command(handled(1), None)
    await store.record_command(handled(2, answer=None), None)
    await store.mark_answered(1, 90)
    clock.advance(3600)
    await store.record_command(handled(3, answer=None), None)
    assert await store.prune_commands(clock.now() - timedelta(minutes=1)) == 2
    assert store.command_counts_sync() == {"done": 1, "unanswered": 0}
    assert (await store.command_channels([702]))[702].last_message_id == 3
