"""``listingbot check-config --online``: ask every configured API whether it accepts the
credentials, and ChatKitty whether every subscription's channel exists.

One request (or token fetch) per API, no retries beyond the clients' own: the point is a
quick, clear answer before ``run``, not a poll.
"""

from __future__ import annotations

from listingbot import sources
from listingbot.app import chatkitty_client
from listingbot.channels import match_channels
from listingbot.clients.base import new_session
from listingbot.clock import SystemClock
from listingbot.config import Config
from listingbot.errors import ListingBotError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
    if missing:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK
