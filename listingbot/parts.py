"""What the process builds once from a ``Config``: the state file, the HTTP session, the
ChatKitty client, the deliverer, housekeeping and the chat commands (:class:`Parts`), and
each configured source's poller.

Separate from ``app.py`` so the composition root reads as what it runs (start, polls,
delivery, the schedule, shutdown, reload) rather than how each part is wired. Nothing
here starts work: building a part never talks to an upstream.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from listingbot import sources
from listingbot.clients.base import RequestObserver, new_session
from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clock import Clock
from listingbot.commands.service import ChatCommands, PollerCatalog
from listingbot.config import ChatKittyConfig, Config
from listingbot.delivery import Deliverer
from listingbot.metrics import Metrics
from listingbot.models import Source
from listingbot.photos import PhotoProbe
from listingbot.polling import ExistenceCheck, Housekeeping, Poller
from listingbot.sources.base import SourceSettings
from listingbot.store import Store


@dataclass(frozen=True)
class Parts:
    """What :meth:`App.start` builds, all at once, for the life of the process."""

    store: Store
    session: aiohttp.ClientSession
    chatkitty: ChatKittyClient
    deliverer: Deliverer
    housekeeping: Housekeeping  # one per state file, shared by every source's poller
    commands: ChatCommands  # the chat's subscriptions and the command reader (issue 14)


async def build_parts(
    config: Config,
    *,
    clock: Clock,
    metrics: Metrics,
    rng: random.Random,
    exclusive: bool,
    wait_lock_s: float,
    pollers: Callable[[], Mapping[Source, Poller]],
    on_chat_change: Callable[[], Awaitable[None]],
) -> Parts:
    """Open the state file (holding its lock when ``exclusive``) and build the parts.

    ``pollers`` is how the chat commands find the current pollers (they change on
    reload); ``on_chat_change`` is called after a command changed the chat's
    subscriptions."""
    store = await Store.open(
        config.state.path,
        clock.now,
        exclusive=exclusive,
        wait_lock_s=wait_lock_s,
        sleep=clock.sleep,
    )
    session = new_session()
    chatkitty = chatkitty_client(config.chatkitty, session=session, clock=clock, observer=metrics)
    parts = Parts(
        store=store,
        session=session,
        chatkitty=chatkitty,
        deliverer=Deliverer(
            store,
            chatkitty,
            clock,
            metrics,
            config.delivery,
            rng=rng,
            photos=PhotoProbe(session),
        ),
        housekeeping=Housekeeping(store, clock, config.state.retention),
        commands=ChatCommands(
            config,
            store=store,
            client=chatkitty,
            catalog=PollerCatalog(pollers),
            now=clock.now,
            on_change=on_chat_change,
            metrics=metrics,
        ),
    )
    await parts.commands.load()
    return parts


def configured_sources(config: Config) -> list[Source]:
    """The sources ``config`` has a section for, in the registry's order."""
    return [s.name for s in sources.ALL if s.settings(config) is not None]


def source_settings(config: Config, source: Source) -> SourceSettings:
    settings = sources.get(source).settings(config)
    assert settings is not None, f"{source} is not configured"
    return settings


def new_poller(
    source: Source, config: Config, parts: Parts, *, clock: Clock, metrics: Metrics
) -> Poller:
    """``source``'s poller: its fetcher (and so its client) built from ``config``."""
    fetcher = sources.get(source).fetcher(
        config, session=parts.session, clock=clock, metrics=metrics
    )
    return Poller(
        source,
        fetcher,
        parts.store,
        clock,
        metrics,
        channels={},
        retention=config.state.retention,
        housekeeping=parts.housekeeping,
        checker=fetcher if isinstance(fetcher, ExistenceCheck) else None,
        gone_checks=config.state.gone_checks_per_poll,
        gone_after_sweeps=config.state.gone_after_sweeps,
    )


def chatkitty_client(
    config: ChatKittyConfig,
    *,
    session: aiohttp.ClientSession,
    clock: Clock,
    observer: RequestObserver | None = None,
) -> ChatKittyClient:
    """The ChatKitty client ``config`` describes (``run``, ``once`` and ``--online``)."""
    return ChatKittyClient(
        api_url=config.api_url,
        path_prefix=config.path_prefix,
        token_url=config.token_url,
        client_id=config.client_id,
        client_secret=config.client_secret,
        session=session,
        clock=clock,
        timeout_s=config.timeout_s,
        observer=observer,
    )
