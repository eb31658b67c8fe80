"""Scenario 8: the running service's delivery rate, from outside.

A state file holds a backlog of 5,000 messages over 20 channels (real renders of real
listings, committed through the store's own ``record_poll`` as a poll commits them).
``listingbot run`` (the installed console script, the real process, its scheduler,
delivery worker and channel watcher; Kato polled too) starts on it and drains the backlog
into the ChatKitty simulator, which runs in a process of its own and notes when it
stored each message. The rate is messages per second between the first and the last
stored message; then the service is stopped with SIGTERM (it must exit 0) and the
simulator is asked what it holds: every message once, each channel in outbox order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import workload
from benchmarks.delivery import outbox_messages
from benchmarks.report import Figure, Row
from benchmarks.servers import ChatKittyServer, KatoServer, kato_config, listingbot
from listingbot.clock import SystemClock
from listingbot.store import PollRecord, Store

MESSAGES = 5_000
CHANNELS = 20
TARGET_PER_S = 500.0
KATO_RECORDS = 200  # the service polls too, as it does when it runs
DRAIN_TIMEOUT_S = 300.0


@dataclass
class Drained:
    per_s: float
    stored: int
    first_after_s: float  # from the process start to the first stored message
    in_order: bool
    duplicates: int
    missing: int
    exit_code: int


async def _backlog(state: Path, seed: int) -> list[str]:
    """Commit the backlog to a new state file; the keys in outbox order."""
    messages = outbox_messages(MESSAGES, workload.channel_ids(CHANNELS), seed)
    store = await Store.open(state, SystemClock().now)
    try:
        await store.record_poll(PollRecord("kato", messages=messages))
    finally:
        await store.close()
    return [m.key for m in messages]


async def measure(seed: int) -> Drained:
    channels = workload.channel_ids(CHANNELS)
    async with KatoServer(KATO_RECORDS, seed) as kato, ChatKittyServer(channels) as chatkitty:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "state.sqlite3"
            keys = await _backlog(state, seed)
            # Every channel of the backlog is some subscription's: nothing is held back.
            subs = [
                {
                    "name": f"sub-{channel}",
                    "source": "kato",
                    "channel": channel,
                    "filters": {"postcode_prefixes": ["EC2M"]},
                }
                for channel in channels
            ]
            data = kato_config(subs, state, kato, chatkitty)
            config = workload.write_config(data, state.with_suffix(".yaml"))
            argv = [*listingbot(), "run", "--config", str(config)]
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **workload.ENV},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                count = await _wait_for(chatkitty, proc)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                code = await proc.wait()
            received = await chatkitty.stored()
    order = {key: i for i, key in enumerate(keys)}
    seen: set[str] = set()
    duplicates = 0
    in_order = True
    for got in received.values():
        duplicates += sum(1 for key in got if key in seen) + len(got) - len(set(got))
        seen.update(got)
        positions = [order.get(key, -1) for key in got]
        in_order = in_order and positions == sorted(positions) and -1 not in positions
    span = count["last"] - count["first"]
    return Drained(
        (count["count"] - 1) / span if span > 0 else 0.0,
        int(count["count"]),
        count["first"] - started,
        in_order,
        duplicates,
        len(order.keys() - seen),
        code,
    )


async def _wait_for(
    chatkitty: ChatKittyServer, proc: asyncio.subprocess.Process
) -> dict[str, float]:
    """Until the simulator holds the whole backlog (or the service died, or time ran out)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        count: dict[str, float] = await chatkitty.ask("count")
        if count["count"] >= MESSAGES or proc.returncode is not None:
            return count
        if time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.1)


async def run(runs: int = 3) -> list[Row]:
    drains = [await measure(seed) for seed in range(1, runs + 1)]
    rate = Figure([d.per_s for d in drains])
    correct = all(
        d.in_order and not d.duplicates and not d.missing and d.exit_code == 0 for d in drains
    )
    case = f"`listingbot run`, backlog of {MESSAGES:,} msgs / {CHANNELS} channels"
    details = {"drains": [d.__dict__ for d in drains]}
    return [
        Row(
            "8 service",
            case,
            "delivery rate, first to last stored",
            rate,
            "msg/s",
            target=f">= {TARGET_PER_S:.0f} msg/s",
            met=rate.median >= TARGET_PER_S,
            digits=0,
            details=details,
        ),
        Row(
            "8 service",
            case,
            "delivered in per-channel outbox order, once each; exit 0 on SIGTERM",
            Figure([float(d.stored) for d in drains]),
            "msgs",
            target="all, in order, no duplicates",
            met=correct,
            correctness=True,
            digits=0,
        ),
        Row(
            "8 service",
            case,
            "process start -> first message stored",
            Figure([d.first_after_s for d in drains]),
            "s",
            digits=2,
        ),
    ]
