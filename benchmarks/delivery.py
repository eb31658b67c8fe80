"""Scenario 3: draining a full outbox into the ChatKitty simulator, in order.

5,000 messages over 20 channels (real renders of real listings, with their properties)
are committed to the outbox the way a poll commits them, then the service's
``Deliverer`` drains them over loopback into the ChatKitty simulator, pass after pass,
until nothing is pending. The simulator runs in a process of its own (ChatKitty is not
in the service's process either); a second figure has it in-process, sharing the core.
Throughput is messages per second of that drain; order is checked message by message:
within each channel, the simulator must hold the messages in the order of their outbox
sequence (the order their events were detected).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks import workload
from benchmarks.report import Figure, Row
from listingbot.clients.chatkitty import ChatKittyClient
from listingbot.clock import SystemClock
from listingbot.config import DeliveryConfig
from listingbot.delivery import Deliverer
from listingbot.messages import render
from listingbot.metrics import Metrics
from listingbot.models import EventType, Listing
from listingbot.outbox import delivery_key
from listingbot.records import OutgoingMessage
from listingbot.sim import SimStack
from listingbot.sim.market import Market
from listingbot.sources.kato import normalize_kato
from listingbot.sources.kotohomes import normalize_kotohomes
from listingbot.store import PollRecord, Store

MESSAGES = 5_000
CHANNELS = 20
ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_S = 500.0
LATENCY_MESSAGES = 1_000
LATENCY_S = 0.02


def outbox_messages(count: int, channels: list[int], seed: int) -> list[OutgoingMessage]:
    """``count`` messages about real listings, spread over ``channels``, in event order."""
    rng = random.Random(seed)
    market = Market(seed, kotohomes_count=count // 2, kato_count=count - count // 2)
    listings: list[Listing] = [normalize_kotohomes(r) for r in market.kotohomes_records()]
    listings += [normalize_kato(r) for r in market.kato_records()]
    rng.shuffle(listings)
    out: list[OutgoingMessage] = []
    for index in range(count):
        listing = listings[index % len(listings)]
        channel = rng.choice(channels)
        event = EventType.NEW
        subs = (f"sub-{rng.randrange(500):05d}",)
        key = delivery_key(channel, listing.source, listing.id, event)
        out.append(
            OutgoingMessage(
                key=key,
                channel_id=channel,
                source=listing.source,
                listing_id=listing.id,
                event=event.value,
                subscriptions=subs,
                body=render(listing, event, subs),
                properties={
                    "listingbot": {
                        "key": key,
                        "event": event.value,
                        "source": listing.source,
                        "listing_id": listing.id,
                        "subscriptions": list(subs),
                    },
                    "listing": listing.model_dump(mode="json", exclude_none=True),
                },
            )
        )
    return out


@dataclass
class Drain:
    seconds: float
    sent: int
    passes: int
    in_order: bool
    duplicates: int
    missing: int

    @property
    def per_s(self) -> float:
        return self.sent / self.seconds


async def measure(
    concurrency: int,
    seed: int,
    count: int = MESSAGES,
    latency_s: float = 0.0,
    *,
    own_process: bool = True,
) -> Drain:
    """Drain ``count`` queued messages into the ChatKitty simulator; check what it stored.

    ``own_process``: the simulator runs in a process of its own (as ChatKitty is not in
    the service's process); otherwise in this one, competing for the same core.
    """
    channels = workload.channel_ids(CHANNELS)
    messages = outbox_messages(count, channels, seed)
    async with _chatkitty(channels, own_process, latency_s) as (url, stored):
        seconds, sent, passes = await _drain(url, messages, concurrency, seed)
        received = await stored()
    order = {m.key: i for i, m in enumerate(messages)}
    in_order = True
    seen: set[str] = set()
    duplicates = 0
    for keys in received.values():
        duplicates += sum(1 for key in keys if key in seen) + len(keys) - len(set(keys))
        seen.update(keys)
        positions = [order[key] for key in keys]
        in_order = in_order and positions == sorted(positions)
    return Drain(seconds, sent, passes, in_order, duplicates, len(order.keys() - seen))


async def _drain(
    url: str, messages: list[OutgoingMessage], concurrency: int, seed: int
) -> tuple[float, int, int]:
    """Commit the messages to a fresh outbox, then run delivery passes until none is left."""
    clock = SystemClock()
    async with aiohttp.ClientSession() as session:
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(Path(tmp) / "state.sqlite3", clock.now)
            try:
                await store.record_poll(PollRecord("kotohomes", messages=messages))
                chatkitty = ChatKittyClient(
                    api_url=url,
                    path_prefix="/v1",
                    token_url=f"{url}/oauth/token",
                    client_id=workload.secret("CHATKITTY_CLIENT_ID"),
                    client_secret=workload.secret("CHATKITTY_CLIENT_SECRET"),
                    session=session,
                    clock=clock,
                )
                deliverer = Deliverer(
                    store,
                    chatkitty,
                    clock,
                    Metrics(),
                    DeliveryConfig(concurrency=concurrency),
                    rng=random.Random(seed),
                )
                await chatkitty.list_channels()  # the token, as a running service has it
                started = time.perf_counter()
                passes = sent = 0
                while True:
                    outcome = await deliverer.run_pass()
                    passes += 1
                    sent += outcome.sent
                    if outcome.pending == 0 or passes > len(messages):
                        break
                return time.perf_counter() - started, sent, passes
            finally:
                await store.close()


Stored = Callable[[], Awaitable[dict[int, list[str]]]]


@contextlib.asynccontextmanager
async def _chatkitty(
    channels: list[int], own_process: bool, latency_s: float
) -> AsyncIterator[tuple[str, Stored]]:
    """The simulator's URL, and how to ask it for the keys it stored per channel."""
    if not own_process:
        sims = SimStack(channels=[(c, f"ch-{c}", f"Channel {c}") for c in channels])
        if latency_s:
            sims.faults.enabled_for = {"chatkitty"}
            sims.faults.set(rate_slow=1.0, slow_s=latency_s)

        async def stored_here() -> dict[int, list[str]]:
            return {
                c: [m["properties"]["listingbot"]["key"] for m in sims.chatkitty.messages[c]]
                for c in channels
            }

        async with sims:
            yield sims.chatkitty_url, stored_here
        return
    if latency_s:
        raise ValueError("latency is simulated in-process only")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.chatkitty_server",
        *map(str, channels),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        limit=1 << 24,  # the final dump is one long line
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    try:
        url = json.loads(await stdout.readline())["url"]

        async def stored_there() -> dict[int, list[str]]:
            stdin.write(b"dump\n")
            await stdin.drain()
            got = json.loads(await stdout.readline())
            return {int(c): keys for c, keys in got.items()}

        yield url, stored_there
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def run(runs: int = 3, concurrencies: tuple[int, ...] = (4, 20)) -> list[Row]:
    rows: list[Row] = []
    for concurrency in concurrencies:
        drains = [await measure(concurrency, seed) for seed in range(1, runs + 1)]
        correct = all(d.in_order and not d.duplicates and not d.missing for d in drains)
        default = concurrency == DeliveryConfig().concurrency
        case = f"{MESSAGES:,} msgs / {CHANNELS} channels, concurrency {concurrency}"
        if default:
            case += " (default)"
        rate = Figure([d.per_s for d in drains])
        rows.append(
            Row(
                "3 delivery",
                case,
                "throughput",
                rate,
                "msg/s",
                target=f">= {TARGET_PER_S:.0f} msg/s" if default else "",
                met=rate.median >= TARGET_PER_S if default else None,
                digits=0,
                details={"drains": [d.__dict__ for d in drains], "default_concurrency": default},
            )
        )
        rows.append(
            Row(
                "3 delivery",
                case,
                "delivered in per-channel event order, once each",
                Figure([float(d.sent) for d in drains]),
                "msgs",
                target="all, in order, no duplicates",
                met=correct,
                correctness=True,
                digits=0,
            )
        )
    drains = [await measure(4, seed, own_process=False) for seed in range(1, runs + 1)]
    rows.append(
        Row(
            "3 delivery",
            f"{MESSAGES:,} msgs / {CHANNELS} channels, concurrency 4, simulator in-process",
            "throughput",
            Figure([d.per_s for d in drains]),
            "msg/s",
            digits=0,
            details={"drains": [d.__dict__ for d in drains]},
        )
    )
    # Over a network each send waits for its answer, and a channel's messages go one at a
    # time (their order is the point): throughput is bounded by concurrency / latency.
    for concurrency in concurrencies:
        drains = [
            await measure(concurrency, seed, LATENCY_MESSAGES, LATENCY_S, own_process=False)
            for seed in range(1, runs + 1)
        ]
        rows.append(
            Row(
                "3 delivery",
                f"{LATENCY_MESSAGES:,} msgs, {LATENCY_S * 1000:.0f} ms per ChatKitty answer, "
                f"concurrency {concurrency}",
                "throughput",
                Figure([d.per_s for d in drains]),
                "msg/s",
                target=f"(bound: {concurrency / LATENCY_S:,.0f} msg/s)",
                digits=0,
                details={"drains": [d.__dict__ for d in drains]},
            )
        )
    return rows
