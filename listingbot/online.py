"""``listingbot check-config --online``: ask every configured API whether it accepts the
credentials, and ChatKitty whether every subscription's channel exists.

One request (or token fetch) per API, no retries beyond the clients' own: the point is a
quick, clear answer before ``run``, not a poll.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from listingbot import sources
from listingbot.channels import match_channels
from listingbot.clients.base import new_session
from listingbot.clients.chatkitty import Channel
from listingbot.clock import SystemClock
from listingbot.commands.executor import chat_subscription
from listingbot.config import Config
from listingbot.errors import ListingBotError
from listingbot.parts import chatkitty_client
from listingbot.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _check_commands(config: Config, listing: list[Channel]) -> bool:
    """The chat command channels and the chat-made subscriptions; True when one is missing."""
    missing = False
    ids = {c.id for c in listing}
    names = {c.name for c in listing}
    refs = config.commands.enabled_channels
    for index, ref in enumerate(refs):
        if (ref not in ids) if isinstance(ref, int) else (ref not in names):
            missing = True
            print(f"commands.enabled_channels[{index}]: no channel {ref!r} in ChatKitty")
    if refs and not missing:
        print(f"commands: ok (enabled in {len(refs)} channel(s), allow: {config.commands.allow})")
    if not config.state.path.exists():
        return missing
    store = Store.open_sync(config.state.path, lambda: datetime.now(UTC))
    try:
        rows = store.chat_subscriptions_sync()
    finally:
        store.close_sync()
    yaml_names = {s.name for s in config.subscriptions}
    bad = False
    for row in rows:
        problem = None
        if row.channel_id not in ids:
            problem = f"channel {row.channel_id} does not exist in ChatKitty"
        elif row.name in yaml_names:
            problem = "shadowed by the config's subscription of the same name"
        elif row.source not in config.sources.configured():
            problem = f"its source {row.source} is not configured under sources (not polled)"
        else:
            try:
                chat_subscription(row)
            except ValidationError as err:
                problem = f"its filters no longer validate ({err.error_count()} problem(s))"
        if problem is not None:
            bad = True
            print(
                f"chat subscription {row.name} ({row.source}, channel {row.channel_id}): {problem}"
            )
    if rows and not bad:
        paused = sum(r.state == "paused" for r in rows)
        print(f"chat subscriptions: ok ({len(rows)} in the state file, {paused} paused)")
    return missing or bad


async def check_online(config: Config) -> int:
    """Print one line per check; 0 all good, 1 an API failed, 2 a channel is missing."""
    clock = SystemClock()
    failed = False
    missing = False
    async with new_session() as session:
        for source in sources.ALL:
            if source.settings(config) is None:
                continue
            try:
                accepted = await source.check_credentials(config, session=session, clock=clock)
            except ListingBotError as err:
                failed = True
                print(f"{source.name}: FAILED: {err}")
            else:
                print(f"{source.name}: ok ({accepted})")
        chat = chatkitty_client(config.chatkitty, session=session, clock=clock)
        try:
            listing = await chat.list_channels()
        except ListingBotError as err:
            failed = True
            print(f"chatkitty: FAILED: {err}")
        else:
            print(f"chatkitty: ok (credentials accepted, {len(listing)} channel(s))")
            _channels, held, _ = match_channels(config.subscriptions, listing, {})
            for index, sub in enumerate(config.subscriptions):
                if sub.name in held:
                    missing = True
                    print(f"subscriptions[{index}].channel ({sub.name}): {held[sub.name]}")
            if not missing:
                print(f"channels: ok (all {len(config.subscriptions)} subscription(s))")
            missing = _check_commands(config, listing) or missing
    if missing:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK
