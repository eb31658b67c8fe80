"""Scenario 1: upstream requests per poll cycle as subscriptions grow 1,000x.

The real service (``App``) polls both simulators on loopback with 10, 1,000 and 10,000
subscriptions drawn from ``workload``; the simulators' request logs count what was
actually sent. The target is exact: two Kotohomes searches per distinct Kotohomes query
(newest created, newest updated) plus one page request per Kato page of each distinct
Kato query - whatever the number of subscriptions sharing them.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.report import Figure, Row
from listingbot.app import App
from listingbot.config import Subscription
from listingbot.sim import SimStack

SIZES = (10, 1_000, 10_000)
CHANNELS = 20
KOTOHOMES_LISTINGS = 300
KATO_LISTINGS = 120
KATO_PAGE_SIZE = 50  # the configured default
LATENCY_S = 0.05


@dataclass
class Cycle:
    subscriptions: int
    kotohomes_subscriptions: int
    kotohomes_queries: int
    kato_queries: int
    kato_pages: int
    kotohomes_requests: int
    kato_requests: int
    seconds: float

    @property
    def requests(self) -> int:
        return self.kotohomes_requests + self.kato_requests

    @property
    def expected(self) -> int:
        return 2 * self.kotohomes_queries + self.kato_queries * self.kato_pages

    @property
    def naive(self) -> int:
        """Requests if every subscription were polled on its own."""
        kato_subs = self.subscriptions - self.kotohomes_subscriptions
        return 2 * self.kotohomes_subscriptions + kato_subs * self.kato_pages


def expected_kato_pages(records: int, page_size: int = KATO_PAGE_SIZE) -> int:
    return max(1, math.ceil(records / page_size))


async def measure(size: int, seed: int, *, cycles: int = 2, latency_s: float = 0.0) -> list[Cycle]:
    """``cycles`` consecutive poll cycles of one workload; one ``Cycle`` each.

    ``latency_s`` delays every Kotohomes and Kato answer (the simulators' ``slow`` fault),
    as a real network would.
    """
    raw = workload.subscriptions(size, seed=seed, channels=CHANNELS)
    subs = workload.validated(raw)
    channels = [(c, f"ch-{c}", f"Channel {c}") for c in workload.channel_ids(CHANNELS)]
    out: list[Cycle] = []
    async with SimStack(
        seed=seed,
        channels=channels,
        kotohomes_count=KOTOHOMES_LISTINGS,
        kato_count=KATO_LISTINGS,
    ) as sims:
        with tempfile.TemporaryDirectory() as tmp:
            config = workload.parse(
                workload.config_data(
                    raw,
                    state_path=Path(tmp) / "state.sqlite3",
                    kotohomes_url=sims.kotohomes_url,
                    kato_url=sims.kato_url,
                    chatkitty_url=sims.chatkitty_url,
                    chatkitty_token_url=sims.chatkitty_token_url,
                    kato_page_size=KATO_PAGE_SIZE,
                )
            )
            app = App(config)
            await app.start()
            if latency_s:
                sims.faults.enabled_for = {"kotohomes", "kato"}
                sims.faults.set(rate_slow=1.0, slow_s=latency_s)
            try:
                for _ in range(cycles):
                    out.append(await _cycle(app, sims, subs))
            finally:
                await app.close()
    return out


async def _cycle(app: App, sims: SimStack, subs: list[Subscription]) -> Cycle:
    koto_before = len(sims.kotohomes.requests)
    kato_before = len(sims.kato.requests)
    started = time.perf_counter()
    for source in list(app.pollers):
        outcome = await app.poll(source)
        if not outcome.ok:
            raise RuntimeError(f"{source} poll failed: {outcome.error}")
    seconds = time.perf_counter() - started
    koto = [r for r in sims.kotohomes.requests[koto_before:] if r.path.startswith("/v1/listings")]
    kato = [r for r in sims.kato.requests[kato_before:] if "/availability" in r.path]
    return Cycle(
        subscriptions=len(subs),
        kotohomes_subscriptions=sum(1 for s in subs if s.source == "kotohomes"),
        kotohomes_queries=workload.distinct_queries(subs, "kotohomes"),
        kato_queries=workload.distinct_queries(subs, "kato"),
        kato_pages=expected_kato_pages(len(sims.market.ids("kato"))),
        kotohomes_requests=len(koto),
        kato_requests=len(kato),
        seconds=seconds,
    )


async def run(sizes: tuple[int, ...] = SIZES, seeds: tuple[int, ...] = (1, 2, 3)) -> list[Row]:
    rows: list[Row] = []
    for size in sizes:
        cycles: list[Cycle] = []
        for seed in seeds:
            cycles.extend(await measure(size, seed))
        exact = all(c.requests == c.expected for c in cycles)
        per_sub = Figure([c.requests / c.subscriptions for c in cycles])
        details: dict[str, Any] = {
            "cycles": [c.__dict__ | {"expected": c.expected, "naive": c.naive} for c in cycles],
        }
        case = f"{size:,} subs"
        rows.append(
            Row(
                "1 upstream",
                case,
                "requests / cycle",
                Figure([float(c.requests) for c in cycles]),
                "",
                target="= 2 x Kotohomes queries + Kato pages",
                met=exact,
                correctness=True,
                digits=0,
                details=details,
            )
        )
        rows.append(
            Row(
                "1 upstream",
                case,
                "distinct queries (Kotohomes + Kato)",
                Figure([float(c.kotohomes_queries + c.kato_queries) for c in cycles]),
                "",
                digits=0,
            )
        )
        rows.append(
            Row(
                "1 upstream",
                case,
                "ratio to one request per subscription",
                per_sub,
                "x",
                digits=3,
            )
        )
        rows.append(
            Row(
                "1 upstream",
                case,
                "cycle wall time (loopback)",
                Figure([c.seconds for c in cycles]),
                "s",
            )
        )
    size = 1_000
    slow = [c for seed in seeds for c in await measure(size, seed, cycles=1, latency_s=LATENCY_S)]
    serial = statistics.median(c.requests for c in slow) * LATENCY_S
    rows.append(
        Row(
            "1 upstream",
            f"{size:,} subs, {LATENCY_S * 1000:.0f} ms per upstream answer",
            "cycle wall time",
            Figure([c.seconds for c in slow]),
            "s",
            target=f"< {serial:.1f} s (requests one at a time)",
            met=statistics.median(c.seconds for c in slow) < serial,
        )
    )
    return rows
