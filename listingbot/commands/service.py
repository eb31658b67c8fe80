"""Chat commands as the app runs them: the chat subscriptions it polls, the reader job,
and the catalog that counts what a new subscription matches now.

The app owns one :class:`ChatCommands`. It asks it for :meth:`subscriptions` whenever it
plans polls (the chat's join the YAML's in the same Plan, so equal queries are fetched
once), runs :meth:`run_once` every ``commands.poll_interval``, and re-plans when a
command changed something (``on_change``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.commands.executor import Settings, chat_subscription
from listingbot.commands.reader import CommandReader, PassOutcome, ReaderSettings
from listingbot.config import CommandsConfig, Config, Subscription
from listingbot.errors import ListingBotError, UpstreamError
from listingbot.matching import local_match
from listingbot.metrics import Metrics
from listingbot.models import Listing, Source
from listingbot.polling import Poller, Reader, observations, plan
from listingbot.records import PageMark
from listingbot.sources import ReadPage
from listingbot.store import ChatSubscriptionRow, Store

__all__ = ["ChatCommands", "PollerCatalog", "enabled_channel_ids"]

log = structlog.get_logger("listingbot.commands")

PRUNE_EVERY = timedelta(hours=6)  # handled commands older than state.retention are forgotten
NAMES_RECHECK_S = 300.0  # a channel name not found is looked up again after this long


class PollerCatalog:
    """Current listings of a subscription through its source's poller's fetcher (one
    first-run fetch of the subscription's own query, then its local filters)."""

    def __init__(self, pollers: Callable[[], Mapping[Source, Poller]]) -> None:
        self._pollers = pollers

    async def current(self, subscription: Subscription) -> Sequence[Listing]:
        poller = self._pollers().get(subscription.source)
        if poller is None:
            raise UpstreamError(subscription.source, "the source is not configured")
        query = plan(subscription.source, [subscription])[0]
        reader = Reader(subscription.source, poller.fetcher.normalize)

        async def read(records: Sequence[Any], page: PageMark | None = None) -> ReadPage:
            del page  # nothing is recorded here: every page is read
            return ReadPage(*reader.read(records))

        fetched = await poller.fetcher.fetch(query, None, read)
        found: list[Listing] = []
        # A Kato sweep comes page by page: only the matches are kept.
        async for page in observations(fetched):
            found.extend(o.listing for o in page if local_match(subscription.local, o.listing))
        return found


def enabled_channel_ids(
    config: CommandsConfig, by_name: Mapping[str, int]
) -> tuple[list[int], list[str]]:
    """The ids of ``commands.enabled_channels`` and the names that resolve to none."""
    ids: list[int] = []
    missing: list[str] = []
    for ref in config.enabled_channels:
        if isinstance(ref, int):
            ids.append(ref)
        elif ref in by_name:
            ids.append(by_name[ref])
        else:
            missing.append(ref)
    return sorted(set(ids)), missing


class ChatCommands:
    """The chat-made subscriptions and the command reader of one running app."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        client: ChatKittyClient,
        catalog: PollerCatalog,
        now: Callable[[], datetime],
        on_change: Callable[[], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self.config = config
        self.store = store
        self.rows: list[ChatSubscriptionRow] = []
        self._subs: dict[str, Subscription] = {}
        self._on_change = on_change
        self.reader = CommandReader(
            client=client,
            store=store,
            now=now,
            settings=_settings(config),
            catalog=catalog,
            configured=lambda: self.config.subscriptions,
            on_change=self._changed,
        )
        self.last_pass: PassOutcome | None = None
        self._client = client
        self._now = now
        self._names: dict[str, int] = {}
        self._names_at: datetime | None = None
        self._pruned_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.commands.enabled_channels)

    def configure(self, config: Config) -> None:
        """A reload: new switches, the same state."""
        self.config = config
        self.reader.settings = _settings(config)

    async def load(self) -> None:
        """Read the chat subscriptions from the state file (start-up, after a command)."""
        self.rows = await self.store.chat_subscriptions()
        yaml_names = {s.name for s in self.config.subscriptions}
        subs: dict[str, Subscription] = {}
        for row in self.rows:
            if row.name in yaml_names:
                log.warning("chat_subscription_shadowed", subscription=row.name)
                continue
            if row.source not in self.config.sources.configured():
                # Kept (the source may come back with a reload), not polled meanwhile.
                log.warning(
                    "chat_subscription_source_not_configured",
                    subscription=row.name,
                    source=row.source,
                )
            try:
                subs[row.name] = chat_subscription(row)
            except ValidationError as err:
                # Valid when it was made; a later listingbot may validate more strictly.
                log.error(
                    "chat_subscription_invalid", subscription=row.name, errors=err.error_count()
                )
        self._subs = subs

    def subscriptions(self) -> list[Subscription]:
        """The active chat subscriptions, as the poller takes them."""
        active = {r.name for r in self.rows if r.state == "active"}
        return [s for name, s in self._subs.items() if name in active]

    def paused(self) -> list[str]:
        return [r.name for r in self.rows if r.state == "paused"]

    async def channel_ids(self) -> list[int]:
        """``commands.enabled_channels`` as ids. Names are looked up in ChatKitty's channel
        list, again when one is missing (at most every NAMES_RECHECK_S)."""
        refs = self.config.commands.enabled_channels
        if not any(isinstance(r, str) for r in refs):
            return sorted({r for r in refs if isinstance(r, int)})
        now = self._now()
        stale = self._names_at is None or (now - self._names_at).total_seconds() > NAMES_RECHECK_S
        ids, missing = enabled_channel_ids(self.config.commands, self._names)
        if missing and stale:
            listing = await self._client.list_channels()
            self._names = {c.name: c.id for c in listing}
            self._names_at = now
            ids, missing = enabled_channel_ids(self.config.commands, self._names)
            for name in missing:
                log.warning("commands_channel_unknown", channel=name)
        return ids

    async def run_once(self) -> PassOutcome:
        """One pass of the reader over the enabled channels."""
        try:
            channel_ids = await self.channel_ids()
        except ListingBotError as err:
            log.warning("commands_channels_unresolved", error=str(err))
            outcome = PassOutcome(errors=[str(err)])
            self.last_pass = outcome
            return outcome
        now = self._now()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self.store.prune_commands(now - self.config.state.retention)
        outcome = await self.reader.run_once(channel_ids)
        self.last_pass = outcome
        if self._metrics is not None:
            for kind, count in (
                ("done", outcome.handled),
                ("refused", outcome.refused),
                ("skipped", outcome.skipped),
            ):
                if count:
                    self._metrics.commands.labels(kind).inc(count)
        if outcome.handled or outcome.refused or outcome.errors:
            log.info(
                "commands_pass",
                handled=outcome.handled,
                refused=outcome.refused,
                skipped=outcome.skipped,
                answered=outcome.answered,
                errors=len(outcome.errors),
            )
        return outcome

    async def _changed(self) -> None:
        await self.load()
        if self._on_change is not None:
            await self._on_change()


def _settings(config: Config) -> ReaderSettings:
    commands = config.commands
    return ReaderSettings(
        executor=Settings(
            allow=commands.allow,
            max_per_channel=commands.max_subscriptions_per_channel,
            first_run=commands.first_run,
            sources=config.sources.configured(),
        ),
        per_user_per_minute=commands.per_user_per_minute,
    )
