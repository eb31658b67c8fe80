"""``listingbot check-config --online``: ask every configured API whether it accepts the
credentials, and ChatKitty whether every subscription's channel exists.

One request (or token fetch) per API, no retries beyond the clients' own: the point is a
quick, clear answer before ``run``, not a poll.
"""

from __future__ import annotations

import aiohttp
import yarl

from listingbot.app import match_channels
from listingbot.clients.auth import ClientCredentialsAuth
from listingbot.clients.base import PreparedRequest
from listingbot.clients.chatkitty import ChatKittyClient
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
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
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
            auth = ClientCredentialsAuth(
                api="kato",
                token_url=c.api_url.rstrip("/") + "/" + c.token_path.lstrip("/"),
                client_id=c.client_id,
                client_secret=c.client_secret,
                session=session,
                clock=clock,
                style="form_body",
                scope=c.scope,
                default_lifetime_s=3600,
                timeout_s=c.timeout_s,
            )
            try:
                await auth.apply(PreparedRequest("GET", yarl.URL(c.api_url)))
            except ListingBotError as err:
                failed = True
                print(f"kato: FAILED: {err}")
            else:
                print("kato: ok (client credentials accepted)")
        ck = config.chatkitty
        chat = ChatKittyClient(
            api_url=ck.api_url,
            path_prefix=ck.path_prefix,
            token_url=ck.token_url,
            client_id=ck.client_id,
            client_secret=ck.client_secret,
            session=session,
            clock=clock,
            timeout_s=ck.timeout_s,
        )
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
