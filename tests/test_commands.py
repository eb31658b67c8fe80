"""End to end: members steer a channel's subscriptions from the chat (issue 14).

Every test posts messages as a user into a simulated ChatKitty channel and runs the real
app (real clients, real state file) against the simulators; a pass of the command reader
is ``app.run_commands()``, as the scheduler runs it every ``commands.poll_interval``.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from listingbot.app import App
from listingbot.cli import main
from listingbot.clock import FakeClock
from listingbot.config import Config, load_config, parse_config
from listingbot.demo import run_demo
from listingbot.sim import SimStack
from listingbot.store import Store
from tests.harness import SECRETS, config_text, load, messages, meta, running, write_config, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

CHANNEL = 702
YAML_SUB = f"""\
- name: ny-homes
  source: kotohomes
  channel: 703
  filters: {{zip_codes: {zips("NY")}}}
"""
COMMANDS = """\
commands:
  enabled_channels: [nyc-homes]
"""


def config(
    sims: SimStack, tmp_path: Path, commands: str = COMMANDS, subs: str = YAML_SUB
) -> Config:
    text = config_text(
        sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",), extra=commands
    )
    return load(tmp_path, text)


def answers(sims: SimStack, command: dict[str, Any]) -> list[str]:
    """The bodies listingbot posted in the thread of ``command``."""
    return [str(m["body"]) for m in sims.chatkitty.thread(int(command["id"]))]


def say(sims: SimStack, body: str, user: str = "mod", channel: int = CHANNEL) -> dict[str, Any]:
    return sims.chatkitty.post_as(channel, user, body)


@pytest.fixture
def moderated(sims: SimStack) -> SimStack:
    sims.chatkitty.set_moderators(CHANNEL, ["mod"])
    return sims


def a_zip(sims: SimStack) -> str:
    """A NY ZIP code of the market that has listings."""
    codes = [str(r["zip_code"]) for r in sims.market.kotohomes_records() if r.get("state") == "NY"]
    return sorted(codes)[0]


async def subscribe(app: App, sims: SimStack, text: str) -> str:
    command = say(sims, text)
    await app.run_commands()
    [answer] = answers(sims, command)
    return answer


async def test_subscribe_answers_then_a_new_listing_is_posted(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A subscribe is answered in its thread with the filters, the name and the current
    matches (recorded, not posted); a listing that appears afterwards is posted."""
    sims = moderated
    code = a_zip(sims)
    current = [r for r in sims.market.kotohomes_records() if str(r.get("zip_code")) == code]
    async with running(config(sims, tmp_path), clock) as app:
        answer = await subscribe(app, sims, f"/listings subscribe kotohomes zip={code} name=mine")
        assert answer.startswith(f"Subscribed as `mine` (kotohomes): zip={code}")
        assert f"{len(current)} current listing" in answer
        assert "recorded, not posted" in answer
        assert await app.once()  # the first poll baselines: nothing posted
        assert [m for m in messages(sims, CHANNEL) if "user" not in m] == []
        record = sims.market.add_kotohomes(state="NY", zip_code=code)
        clock.advance(60)
        assert await app.once()
    posted = [meta(m) for m in messages(sims, CHANNEL) if "listingbot" in m["properties"]]
    assert [(p["listing_id"], p["subscriptions"]) for p in posted] == [(record["id"], ["mine"])]


async def test_pause_stops_posts_and_resume_restarts_them(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A paused subscription posts nothing; resumed, it posts what comes next (what came
    while it was paused is recorded, not posted)."""
    sims = moderated
    code = a_zip(sims)
    async with running(config(sims, tmp_path), clock) as app:
        await subscribe(app, sims, f"/listings subscribe kotohomes zip={code} name=mine")
        assert await app.once()
        assert (await subscribe(app, sims, "/listings pause mine")).startswith("Paused `mine`")
        during = sims.market.add_kotohomes(state="NY", zip_code=code)
        clock.advance(60)
        assert await app.once()
        assert (await subscribe(app, sims, "/listings resume mine")).startswith("Resumed `mine`")
        clock.advance(60)
        assert await app.once()
        after = sims.market.add_kotohomes(state="NY", zip_code=code)
        clock.advance(60)
        assert await app.once()
    posted = [
        meta(m)["listing_id"] for m in messages(sims, CHANNEL) if "listingbot" in m["properties"]
    ]
    assert during["id"] not in posted
    assert posted == [after["id"]]


async def test_unsubscribe_removes_the_subscription(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """After unsubscribe nothing more is posted for it and list no longer shows it."""
    sims = moderated
    code = a_zip(sims)
    async with running(config(sims, tmp_path), clock) as app:
        await subscribe(app, sims, f"/listings subscribe kotohomes zip={code} name=mine")
        assert await app.once()
        assert await subscribe(app, sims, "/listings unsubscribe mine") == "Unsubscribed `mine`."
        sims.market.add_kotohomes(state="NY", zip_code=code)
        clock.advance(60)
        assert await app.once()
        listed = await subscribe(app, sims, "/listings list")
    assert "mine" not in listed
    assert [m for m in messages(sims, CHANNEL) if "listingbot" in m["properties"]
            and "key" in meta(m)] == []  # fmt: skip


async def test_list_shows_chat_and_read_only_yaml_subscriptions(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """list names each subscription of the channel with its filters and state; the YAML's
    are marked read-only, and other channels' are not shown."""
    sims = moderated
    yaml_here = YAML_SUB.replace("channel: 703", f"channel: {CHANNEL}").replace("ny-homes", "ops")
    async with running(config(sims, tmp_path, subs=YAML_SUB + yaml_here), clock) as app:
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10001 beds>=3 name=mine")
        await subscribe(app, sims, "/listings pause mine")
        listed = await subscribe(app, sims, "/listings list")
    assert "- ops (kotohomes, from the config, read-only): zip=" in listed
    assert "- mine (kotohomes, paused, by mod): zip=10001 beds>=3" in listed
    assert "ny-homes" not in listed


async def test_explain_tells_which_filters_pass_and_what_was_posted(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """explain gives a verdict per filter for a listing and what was last posted of it."""
    sims = moderated
    code = a_zip(sims)
    async with running(config(sims, tmp_path), clock) as app:
        await subscribe(app, sims, f"/listings subscribe kotohomes zip={code} price<=1 name=cheap")
        await subscribe(app, sims, f"/listings subscribe kotohomes zip={code} name=all")
        assert await app.once()
        record = sims.market.add_kotohomes(state="NY", zip_code=code, price=500_000)
        clock.advance(60)
        assert await app.once()
        text = await subscribe(app, sims, f"/listings explain {record['id']}")
    assert f"- cheap: fails 1 of 2: zip={code} pass (listing: {code}); price<=1 FAIL" in text
    assert f"- all: passes every filter: zip={code} pass" in text
    assert "Last posted here: new (sent," in text


async def test_a_member_who_is_no_moderator_is_refused(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """With allow: moderators, a member's subscribe is refused and changes nothing; list
    stays open to them."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        command = say(sims, "/listings subscribe kotohomes zip=10001", user="guest")
        listing = say(sims, "/listings list", user="guest")
        await app.run_commands()
        assert app.parts.commands.rows == []
    [refusal] = answers(sims, command)
    assert refusal.startswith("Only moderators of this channel may subscribe")
    assert answers(sims, listing) == ["This channel has no subscriptions yet. Try /listings help."]


async def test_members_may_change_things_when_the_operator_allows_it(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """allow: members lets anyone in the channel subscribe."""
    commands = COMMANDS + "  allow: members\n"
    async with running(config(sims, tmp_path, commands), clock) as app:
        answer = await subscribe(app, sims, "/listings subscribe kotohomes zip=10001")
    assert answer.startswith("Subscribed as `kotohomes-10001`")


async def test_a_reload_changes_the_switches_and_keeps_the_chat_subscriptions(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A reloaded config's allow: members lets a member subscribe without a restart; the
    subscriptions made before the reload are still polled."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10001 name=first")
        refused = say(sims, "/listings subscribe kotohomes zip=10002 name=second", user="guest")
        await app.run_commands()
        await app.reload(config(sims, tmp_path, COMMANDS + "  allow: members\n"))
        allowed = say(sims, "/listings subscribe kotohomes zip=10002 name=second", user="guest")
        await app.run_commands()
        polled = {s.name for p in app.pollers.values() for s in p.subscriptions}
    assert answers(sims, refused)[0].startswith("Only moderators")
    assert answers(sims, allowed)[0].startswith("Subscribed as `second`")
    assert {"first", "second"} <= polled


async def test_a_malformed_command_is_answered_and_nothing_is_applied(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A command with an unknown filter gets a did-you-mean answer and changes nothing."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        answer = await subscribe(app, sims, "/listings subscribe kotohomes zpi=10001 <@here>")
        assert app.parts.commands.rows == []
    assert answer.startswith("Unknown filter `zpi`. Did you mean `zip`?")


async def test_a_source_this_listingbot_does_not_poll_is_refused(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """As in the YAML, a subscription needs a configured source: with only kotohomes
    configured, a kato subscribe is refused and creates nothing."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        answer = await subscribe(app, sims, "/listings subscribe kato postcode=EC2")
        assert app.parts.commands.rows == []
    assert answer == "`kato` is not configured here: this listingbot polls kotohomes."


async def test_help_shows_examples_for_the_configured_sources_only(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """help gives a subscribe example for each source this listingbot polls, no other."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        text = await subscribe(app, sims, "/listings help")
    assert "/listings subscribe kotohomes zip=" in text
    assert "/listings subscribe kato" not in text


async def test_the_cap_and_taken_names_are_refused(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A name in use (the YAML's too) is refused; past the channel's cap, so is any subscribe."""
    sims = moderated
    commands = COMMANDS + "  max_subscriptions_per_channel: 1\n"
    async with running(config(sims, tmp_path, commands), clock) as app:
        taken = await subscribe(app, sims, "/listings subscribe kotohomes zip=10001 name=ny-homes")
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10001")
        capped = await subscribe(app, sims, "/listings subscribe kotohomes zip=10002")
    assert taken.startswith("The name `ny-homes` is taken")
    assert capped.startswith("This channel has reached its cap of 1 chat subscriptions")


def test_the_reader_is_scheduled_only_where_commands_are_enabled(
    sims: SimStack, tmp_path: Path
) -> None:
    """App.jobs() has a `commands` job every commands.poll_interval, first run at once,
    when commands are enabled somewhere, and none when they are not."""
    on = {j.job_id: j for j in App(config(sims, tmp_path)).jobs()}
    off = {j.job_id for j in App(config(sims, tmp_path, commands="")).jobs()}
    assert (on["commands"].interval_s, on["commands"].now) == (15.0, True)
    assert "commands" not in off


async def test_commands_from_before_they_were_enabled_are_never_run(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A command posted before commands were enabled in the channel is not replayed."""
    sims = moderated
    old = say(sims, "/listings subscribe kotohomes zip=10001")
    clock.advance(5)
    async with running(config(sims, tmp_path), clock) as app:
        await app.run_commands()
        assert app.parts.commands.rows == []
    assert answers(sims, old) == []


async def test_own_system_and_other_channels_messages_are_ignored(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """System messages and messages in channels where commands are off are not commands."""
    sims = moderated
    async with running(config(sims, tmp_path), clock) as app:
        await app.run_commands()  # enables the channel from now
        clock.advance(1)
        system = sims.chatkitty.post_system(CHANNEL, "/listings subscribe kotohomes zip=10001")
        elsewhere = say(sims, "/listings list", channel=703)
        await app.run_commands()
    assert answers(sims, system) == []
    assert answers(sims, elsewhere) == []


async def test_a_flood_is_rate_limited_per_user(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Past per_user_per_minute, the first command over is told so and the rest ignored;
    another user is not affected."""
    sims = moderated
    commands = COMMANDS + "  per_user_per_minute: 2\n"
    async with running(config(sims, tmp_path, commands), clock) as app:
        await app.run_commands()
        clock.advance(1)
        flood = [say(sims, "/listings help") for _ in range(5)]
        other = say(sims, "/listings help", user="bo")
        await app.run_commands()
    counts = [len(answers(sims, c)) for c in flood]
    assert counts == [1, 1, 1, 0, 0]
    assert answers(sims, flood[2])[0].startswith("Too many commands")
    assert len(answers(sims, other)) == 1


async def test_a_command_is_run_once_across_restarts(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A restarted service neither re-runs nor re-answers handled commands, and keeps the
    chat subscriptions."""
    sims = moderated
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        command = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        await app.run_commands()
    async with running(cfg, clock) as app:
        await app.run_commands()
        assert [s.name for s in app.parts.commands.subscriptions()] == ["mine"]
        assert "mine" in {s.name for p in app.pollers.values() for s in p.subscriptions}
    assert len(answers(sims, command)) == 1


async def test_a_crash_between_executing_and_answering_answers_once(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The answer's POST is stored but its response is lost, then the process ends: the
    next process finds that answer instead of posting another, and the subscribe took
    effect once."""
    sims = moderated
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        await app.run_commands()
        clock.advance(1)
        command = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        sims.faults.set(rate_commit_then_fail=1.0)
        outcome = await app.run_commands()
        sims.faults.clear()
        assert outcome.errors  # the answer's fate is unknown to this process
    assert len(answers(sims, command)) == 1  # ChatKitty stored it all the same
    async with running(cfg, clock) as app:
        outcome = await app.run_commands()
        assert outcome.answered == 0
    assert len(answers(sims, command)) == 1
    store = Store.open_sync(cfg.state.path, clock.now)
    try:
        assert [r.name for r in store.chat_subscriptions_sync()] == ["mine"]
        assert store.command_counts_sync()["unanswered"] == 0
    finally:
        store.close_sync()


def stored_subscriptions(cfg: Config, clock: FakeClock) -> list[str]:
    """The chat subscriptions in the state file, and no answer left to post."""
    store = Store.open_sync(cfg.state.path, clock.now)
    try:
        assert store.command_counts_sync()["unanswered"] == 0
        return [r.name for r in store.chat_subscriptions_sync()]
    finally:
        store.close_sync()


def gets(sims: SimStack, path: str) -> int:
    """How many GETs of ``path`` ChatKitty answered."""
    return sum(1 for r in sims.chatkitty.requests if r.method == "GET" and r.path == path)


@pytest.mark.parametrize("status", [404, 501])
async def test_without_the_app_wide_list_each_channel_is_read(
    moderated: SimStack, tmp_path: Path, clock: FakeClock, status: int
) -> None:
    """Where ChatKitty does not serve GET /v1/messages (404, 501), the channel's own pages
    are read: each command is carried out once and answered once, pass after pass, and
    the application-wide list is not asked again."""
    sims = moderated
    sims.chatkitty.app_wide_list_status = status
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        await app.run_commands()
        asked = gets(sims, "/v1/messages")  # a 501 after the client's retries of a 5xx
        clock.advance(1)
        first = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        await app.run_commands()
        clock.advance(1)
        second = say(sims, "/listings pause mine")
        await app.run_commands()
        await app.run_commands()
    assert answers(sims, first)[0].startswith("Subscribed as `mine`")
    assert [len(answers(sims, c)) for c in (first, second)] == [1, 1]
    assert answers(sims, second)[0].startswith("Paused `mine`")
    assert stored_subscriptions(cfg, clock) == ["mine"]
    assert asked >= 1
    assert gets(sims, "/v1/messages") == asked
    assert gets(sims, f"/v1/channels/{CHANNEL}/messages") >= 3


async def test_an_answer_chatkitty_refused_is_posted_on_the_next_pass(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The answer's POST is refused (503, nothing stored) while reading works: the
    subscribe has taken effect once, and the next pass posts its one answer."""
    sims = moderated
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        await app.run_commands()
        clock.advance(1)
        command = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        sims.chatkitty.refuse_posts_with = 503
        refused = await app.run_commands()
        assert refused.handled == 1
        assert refused.errors
        assert answers(sims, command) == []
        sims.chatkitty.refuse_posts_with = None
        again = await app.run_commands()
        assert (again.handled, again.answered) == (0, 1)
        await app.run_commands()
    assert len(answers(sims, command)) == 1
    assert stored_subscriptions(cfg, clock) == ["mine"]


async def test_an_answer_whose_response_was_lost_is_found_not_posted_again(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The answer is stored but its response is lost (the connection drops): the next
    pass of the same process finds it in the thread by its command id and posts no
    second one; the subscribe took effect once."""
    sims = moderated
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        await app.run_commands()
        clock.advance(1)
        command = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        sims.chatkitty.lose_posts = 1
        lost = await app.run_commands()
        assert (lost.handled, lost.answered) == (1, 0)
        assert len(answers(sims, command)) == 1  # stored all the same
        again = await app.run_commands()
        assert (again.handled, again.answered) == (0, 0)
    assert len(answers(sims, command)) == 1
    assert stored_subscriptions(cfg, clock) == ["mine"]


async def test_an_answer_chatkitty_keeps_refusing_is_given_up_after_an_hour(
    moderated: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """An answer refused pass after pass (400) is tried until an hour after its command,
    then given up: no more posts, nothing left to answer, and the subscribe stands."""
    sims = moderated
    cfg = config(sims, tmp_path)
    async with running(cfg, clock) as app:
        await app.run_commands()
        clock.advance(1)
        command = say(sims, "/listings subscribe kotohomes zip=10001 name=mine")
        thread = f"/v1/threads/{command['id']}/messages"

        def posts() -> int:
            return sum(1 for r in sims.chatkitty.requests if (r.method, r.path) == ("POST", thread))

        sims.chatkitty.refuse_posts_with = 400
        await app.run_commands()
        clock.advance(59 * 60)
        await app.run_commands()
        assert posts() == 2  # still trying within the hour
        clock.advance(60)
        await app.run_commands()
        given_up = posts()
        sims.chatkitty.refuse_posts_with = None
        clock.advance(60)
        await app.run_commands()
    assert given_up == 3
    assert posts() == given_up
    assert answers(sims, command) == []
    assert stored_subscriptions(cfg, clock) == ["mine"]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets in the environment, as for a user running the CLI."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def config_file(sims: SimStack, tmp_path: Path) -> Path:
    text = config_text(
        sims, YAML_SUB, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",),
        extra=COMMANDS,
    )  # fmt: skip
    return write_config(tmp_path, text)


@pytest.mark.usefixtures("world")
async def test_export_prints_yaml_the_config_accepts(
    moderated: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`subscriptions export` prints the chat's subscriptions as config entries that
    validate to the very subscriptions the service polls; a paused one is commented out."""
    sims = moderated
    path = config_file(sims, tmp_path)
    cfg = load_config(path, env=SECRETS)
    async with running(cfg, clock) as app:
        await subscribe(app, sims, "/listings subscribe kotohomes zip=07030,10001 price<=1.2m")
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10002 name=later")
        await subscribe(app, sims, "/listings pause later")
        polled = app.parts.commands.subscriptions()
    capsys.readouterr()
    assert main(["subscriptions", "export", "--config", str(path)]) == 0
    exported = capsys.readouterr().out
    assert "# - name: later" in exported
    head = config_text(sims, "", state_path=tmp_path / "other.sqlite3", sources=("kotohomes",))
    head = head[: head.index("subscriptions:")]
    again = parse_config(head + exported, env=SECRETS)
    assert list(again.subscriptions) == polled
    assert again.subscriptions[0].filters.zip_codes == ("07030", "10001")


@pytest.mark.usefixtures("world")
async def test_status_and_metrics_count_chat_subscriptions_by_origin(
    moderated: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """status marks chat subscriptions (channel, author, paused); /metrics counts
    subscriptions by origin and state, and commands by outcome."""
    sims = moderated
    path = config_file(sims, tmp_path)
    async with running(load_config(path, env=SECRETS), clock) as app:
        await subscribe(app, sims, f"/listings subscribe kotohomes zip={a_zip(sims)} name=mine")
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10002 name=later")
        await subscribe(app, sims, "/listings pause later")
        await subscribe(app, sims, "/listings subscribe kotohomes zpi=1")
        assert await app.once()
        registry = app.metrics.registry
        value = registry.get_sample_value
        assert value("listingbot_subscriptions", {"origin": "yaml", "state": "active"}) == 1
        assert value("listingbot_subscriptions", {"origin": "chat", "state": "active"}) == 1
        assert value("listingbot_subscriptions", {"origin": "chat", "state": "paused"}) == 1
        assert value("listingbot_commands_total", {"outcome": "done"}) == 3
        assert value("listingbot_commands_total", {"outcome": "refused"}) == 1
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mine (kotohomes, chat: channel 702, by mod, active): " in out
    assert "later (kotohomes, chat: channel 702, by mod, paused)" in out
    assert "chat commands:\n  done 3, refused 1; answers not yet posted: 0" in out


@pytest.mark.usefixtures("world")
async def test_check_config_online_checks_the_chat_subscriptions(
    moderated: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config --online checks the command channels and the state file's chat
    subscriptions: one whose channel is gone is named, and the exit code is 2."""
    sims = moderated
    path = config_file(sims, tmp_path)
    async with running(load_config(path, env=SECRETS), clock) as app:
        await subscribe(app, sims, "/listings subscribe kotohomes zip=10001 name=mine")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["check-config", "--online", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "commands: ok (enabled in 1 channel(s), allow: moderators)" in out
    assert "chat subscriptions: ok (1 in the state file, 0 paused)" in out
    sims.chatkitty.remove_channel(CHANNEL)
    code = await asyncio.to_thread(main, ["check-config", "--online", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 2
    assert "commands.enabled_channels[0]: no channel 'nyc-homes' in ChatKitty" in out
    assert "chat subscription mine (kotohomes, channel 702): channel 702 does not exist" in out


@pytest.mark.usefixtures("world")
async def test_check_config_online_names_a_chat_subscription_whose_source_went(
    moderated: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chat subscription of a source the config no longer configures is not polled:
    check-config --online names it and exits 2."""
    sims = moderated
    state = tmp_path / "state.sqlite3"
    both = config_text(sims, YAML_SUB, state_path=state, extra=COMMANDS)
    async with running(load(tmp_path, both), clock) as app:
        await subscribe(app, sims, "/listings subscribe kato postcode=EC2 name=city")
    only = config_text(sims, YAML_SUB, state_path=state, sources=("kotohomes",), extra=COMMANDS)
    path = write_config(tmp_path, only)
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["check-config", "--online", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "chat subscription city (kato, channel 702): its source kato is not configured" in out


async def test_the_demo_shows_a_member_subscribing_from_the_chat() -> None:
    """`listingbot demo` has a member subscribe in #nyc-homes and prints the answer."""
    out = io.StringIO()
    assert await run_demo(cycles=2, seed=7, out=out, poll_s=0.2) == 0
    text = out.getvalue()
    assert "ana in #nyc-homes:\n    /listings subscribe kotohomes" in text
    assert "listingbot, in the thread:\n    Subscribed as `brooklyn-under-900k` (kotohomes)" in text
