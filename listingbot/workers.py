"""The two long-lived loops that ``run`` starts beside the scheduled jobs.

- :class:`DeliveryWorker` runs a delivery pass when woken: by a poll that queued messages,
  by the delivery interval job, by the channels becoming deliverable, at start-up for
  rows an earlier run left. Wake-ups during a pass make one more pass, never a queue of
  them, and no pass starts before the channels are checked.
- :class:`ChannelWatcher` checks the subscriptions' channels until ChatKitty answers,
  backing off from 1 s to 60 s, then every 5 minutes, and at once when asked (a reload
  that could not ask ChatKitty itself).

Both stop when the scheduler begins its shutdown, and neither ever raises: a failure is
logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from listingbot.channels import Channels
from listingbot.errors import ListingBotError

log = structlog.get_logger("listingbot.app")

# Retry an unreachable ChatKitty from 1 s, doubling up to 60 s; once the channels are
# checked, check again every 5 minutes.
CHANNEL_RETRY_MIN_S = 1.0
CHANNEL_RETRY_MAX_S = 60.0
CHANNEL_RECHECK_S = 300.0

Stopping = Callable[[], bool]


class DeliveryWorker:
    """Delivery passes on demand, one at a time."""

    def __init__(
        self, deliver: Callable[[], Awaitable[object]], channels: Channels, stopping: Stopping
    ) -> None:
        self._deliver = deliver
        self._channels = channels
        self._stopping = stopping
        self._wanted = asyncio.Event()

    def wake(self) -> None:
        """Ask for a pass (cheap; many requests during a pass make one more)."""
        self._wanted.set()

    async def run(self) -> None:
        while not self._stopping():
            await self._wanted.wait()
            self._wanted.clear()
            if self._stopping():
                return
            if not self._channels.deliverable:
                log.debug("delivery_deferred", reason="ChatKitty channels not checked yet")
                continue
            try:
                await self._deliver()
            except Exception:
                log.exception("delivery_crashed")


class ChannelWatcher:
    """Keeps the subscriptions' channels checked against ChatKitty."""

    def __init__(
        self,
        check: Callable[[], Awaitable[None]],
        channels: Channels,
        stopping: Stopping,
        *,
        on_deliverable: Callable[[], None],
    ) -> None:
        self._check = check
        self._channels = channels
        self._stopping = stopping
        self._on_deliverable = on_deliverable
        self._asked = asyncio.Event()

    def recheck(self) -> None:
        """Check at once instead of at the next scheduled time."""
        self._asked.set()

    async def run(self) -> None:
        delay = CHANNEL_RETRY_MIN_S
        wait = 0.0 if self._channels.checked_at is None else CHANNEL_RECHECK_S
        while not self._stopping():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), wait)
            self._asked.clear()
            if self._stopping():
                return
            was_deliverable = self._channels.deliverable
            try:
                await self._check()
            except ListingBotError as err:
                log.warning("channel_check_failed", error=str(err), retry_in_s=delay)
                wait, delay = delay, min(CHANNEL_RETRY_MAX_S, delay * 2)
                continue
            except Exception:
                log.exception("channel_check_crashed")
                wait, delay = delay, min(CHANNEL_RETRY_MAX_S, delay * 2)
                continue
            delay, wait = CHANNEL_RETRY_MIN_S, CHANNEL_RECHECK_S
            if not was_deliverable:
                self._on_deliverable()
