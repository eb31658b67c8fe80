"""``listingbot check-config --online``: ask every configured API whether it accepts the
credentials, and ChatKitty whether every subscription's channel exists.

One request (or token fetch) per API, no retries beyond the clients' own: the point is a
quick, clear answer before ``run``, not a poll.
"""

from __future__ import annotations

from listingbot.app import chatkitty_client
from listingbot.channels import match_channels
from listingbot.clients.base import new_session
from listingbot.clients.kato import KatoClient
from listingbot.clients.kotohomes import KotohomesClient
from listingbot.clock import SystemClock
from listingbot.config import Config
from listingbot.errors import ListingBotError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# A listing id no one has: Kotohomes answers 404 (key accepted) or 401/403 (refused).
PROBE_LISTING_ID = "listingbot-credentials-check"


async def check_online(config: Config) -> int:
    """Print one line per check; 0 all good, 1 an API failed, 2 a channel is missing."""
    clock = SystemClock()
    failed = False
    missing = False
    async with new_session() as session:
        k = config.sources.kotohomes
        if k is not None:
            client = KotohomesClient(
                base_url=k.api_url,
                key=k.key,
                session=session,
                clock=clock,
                array_style=k.array_style,
                timeout_s=k.timeout_s,
            )
            try:
                await client.get(PROBE_LISTING_ID)
            except ListingBotError as err:
                failed = True
                print(f"kotohomes: FAILED: {err}")
            else:
                print("kotohomes: ok (API key accepted)")
        c = config.sources.kato
        if c is not None:
            kato = KatoClient(
                base_url=c.api_url,
                api_version=c.api_version,
                client_id=c.client_id,
                client_secret=c.client_secret,
                session=session,
                clock=clock,
                scope=c.scope,
                token_path=c.token_path,
                timeout_s=c.timeout_s,
            )
            try:
                await kato.check_credentials()
            except ListingBotError as err:
                failed = True
                print(f"kato: FAILED: {err}")
            else:
                print("kato: ok (client credentials accepted)")
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
