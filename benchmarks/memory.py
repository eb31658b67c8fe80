"""Scenario 4: memory with 100,000 tracked listings and 10,000 subscriptions, the state
file's size per tracked listing, and the retention rule keeping the file bounded.

Peak RSS is measured in a child process that runs the real service (``App``: config,
store, clients, two poll cycles of both sources and a delivery pass) against the
simulators served by this process on loopback. Its state file already tracks 100,000
listings (and their match state and a month of sent messages), written through the
store's own ``record_poll`` the way past polls would have. The child reports
``VmHWM`` (peak resident set) from ``/proc/self/status`` and ``ru_maxrss``.

The retention run is the real service on a fake clock, one poll and delivery a day
for ``DAYS`` days, over a Kato market where some listings leave and new ones arrive
every day: the number of tracked listings and the file size level off once listings
older than the retention period start being pruned.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.report import Figure, Row
from listingbot.app import App
from listingbot.clock import FakeClock, SystemClock
from listingbot.config import Subscription
from listingbot.models import SOURCES
from listingbot.polling import plan
from listingbot.records import Facts, MatchState, OutgoingMessage
from listingbot.sim import SimStack
from listingbot.sim.market import Market
from listingbot.store import PollRecord, Store

ROOT = Path(__file__).resolve().parent.parent
TRACKED = 100_000
SUBSCRIPTIONS = 10_000
KOTOHOMES_LISTINGS = 1_500
KATO_LISTINGS = 1_000
CHANNELS = 50
SENT_HISTORY = 10_000  # a month of sent messages kept in the outbox
TARGET_MB = 150.0
RETENTION_DAYS = 30
DAYS = 90
CHURN_PER_DAY = 20
RETENTION_MARKET = 500  # live Kato listings in the retention run


# ------------------------------------------------------------------ the tracked-listings state


async def add_history(path: Path, subs: list[Subscription], listings: int, seed: int) -> None:
    """Listings the subscriptions' queries saw earlier this month (and no longer see), with
    their match state, plus a month of sent messages: what a running service keeps."""
    rng = random.Random(seed)
    clock = FakeClock(datetime.now(UTC) - timedelta(days=10))
    store = await Store.open(path, clock.now)
    try:
        queries = [q for source in SOURCES for q in plan(source, subs)]
        kato = [q for q in queries if q.source == "kato"]
        koto = [q for q in queries if q.source == "kotohomes"]
        # A fifth from Kato's one sweep, the rest spread over the Kotohomes queries.
        per_kato = listings // 5 // max(1, len(kato))
        rest = listings - per_kato * len(kato)
        per_koto, extra = divmod(rest, max(1, len(koto)))
        record = PollRecord("kotohomes")
        for index, query in enumerate([*kato, *koto]):
            count = per_kato if query.source == "kato" else per_koto + (index < extra)
            ids = [_listing_id(rng, query.source) for _ in range(count)]
            record.seen[query.key] = [
                Facts(
                    listing_id,
                    query.source,
                    f"{rng.getrandbits(96):024x}",
                    float(rng.randrange(100_000, 2_000_000, 1000)),
                    rng.choice(("active", "pending", "available", "under_offer")),
                    None,
                    None,
                )
                for listing_id in ids
            ]
            for sub in query.subscriptions:
                for listing_id in rng.sample(ids, min(len(ids), 3)):
                    record.matches.append(
                        MatchState(sub.name, query.source, listing_id, 450_000.0, "active")
                    )
        record.messages = _history(rng, SENT_HISTORY)
        await store.record_poll(record)
        for rows in (await store.due_messages(limit_per_channel=SENT_HISTORY)).values():
            for row in rows:
                await store.mark_sending(row.seq)
                await store.mark_sent(row.seq, row.seq)
    finally:
        await store.close()


def _listing_id(rng: random.Random, source: str) -> str:
    if source == "kato":
        return str(rng.randrange(10**6, 10**7))
    return "li_" + "".join(rng.choice(_BASE62) for _ in range(20))


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _history(rng: random.Random, count: int) -> list[OutgoingMessage]:
    body = (
        "🏠 New listing · sub-00042\n$450,000 · 3 bd · 2 ba · 1,650 sq ft · Single family\n"
        "1234 Maple St, Brooklyn, NY 11215\nSun-filled 3-bedroom single family in Brooklyn. "
        "Hardwood floors throughout. Two-car garage. Schedule a showing today.\n"
        "https://www.kotohomes.com/listings/li_0123456789abcdefghij"
    )
    listing = {
        "source": "kotohomes",
        "id": "li_0123456789abcdefghij",
        "title": "3 bd single family in Brooklyn, NY",
        "summary": body[120:330],
        "address": "1234 Maple St, Brooklyn, NY 11215",
        "country": "US",
        "price": {"amount": 450000.0, "currency": "USD", "unit": "total"},
        "bedrooms": 3.0,
        "status": "active",
    }
    out = []
    for index in range(count):
        key = f"lb1-{rng.getrandbits(128):032x}"
        out.append(
            OutgoingMessage(
                key=key,
                channel_id=workload.FIRST_CHANNEL + index % CHANNELS,
                source="kotohomes",
                listing_id=f"li_hist{index:08d}",
                event="new",
                subscriptions=(f"sub-{index % SUBSCRIPTIONS:05d}",),
                body=body,
                properties={"listingbot": {"key": key, "event": "new"}, "listing": listing},
            )
        )
    return out


# ------------------------------------------------------------------ the measured child


def _sims(seed: int) -> SimStack:
    channels = [(c, f"ch-{c}", f"Channel {c}") for c in workload.channel_ids(CHANNELS)]
    return SimStack(
        seed=seed,
        channels=channels,
        kotohomes_count=KOTOHOMES_LISTINGS,
        kato_count=KATO_LISTINGS,
        kato_rpm=6000,
    )


async def _child(
    sims: SimStack, raw: list[dict[str, Any]], state: Path, cycles: int
) -> dict[str, Any]:
    """Run the service in a child process for ``cycles`` cycles; its report."""
    data = workload.config_data(
        raw,
        state_path=state,
        kotohomes_url=sims.kotohomes_url,
        kato_url=sims.kato_url,
        chatkitty_url=sims.chatkitty_url,
        chatkitty_token_url=sims.chatkitty_token_url,
        kato_rpm=6000,
    )
    config_path = state.with_suffix(".json")
    config_path.write_text(json.dumps(data))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.memory_child",
        str(config_path),
        str(cycles),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    report: dict[str, Any] = {}
    async for line in proc.stdout:
        text = line.decode().strip()
        if text == "cycle-done":
            # An hour of market movement between two cycles.
            sims.market.advance(sims.market.tick_s * 60)
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        elif text.startswith("report "):
            report = json.loads(text.removeprefix("report "))
    if await proc.wait() != 0 or not report:
        raise RuntimeError("the measured service process failed")
    return report


async def peak_rss(workdir: Path, runs: int, seed: int = 1) -> dict[str, Any]:
    """First start (every subscription new) once, then ``runs`` restarts of a service that
    tracks ``TRACKED`` listings, each for two cycles; the child processes' reports."""
    raw = workload.subscriptions(SUBSCRIPTIONS, seed=seed, channels=CHANNELS)
    subs = workload.validated(raw)
    warm = workdir / "warm.sqlite3"
    async with _sims(seed) as sims:
        first = await _child(sims, raw, warm, 1)
    store = Store.open_sync(warm, SystemClock().now)
    current = store.counts_sync()["listings"]
    store.close_sync()
    await add_history(warm, subs, max(0, TRACKED - current), seed)
    store = Store.open_sync(warm, SystemClock().now)
    counts = store.counts_sync()
    store.close_sync()
    state_bytes = _file_bytes(warm)
    restarts = []
    for run in range(runs):
        state = workdir / f"run{run}.sqlite3"
        for part in warm.parent.glob(warm.name + "*"):
            shutil.copyfile(part, state.parent / part.name.replace(warm.name, state.name))
        async with _sims(seed) as sims:
            restarts.append(await _child(sims, raw, state, 2))
        for part in state.parent.glob(state.name + "*"):
            part.unlink()
    return {"first": first, "restarts": restarts, "counts": counts, "state_bytes": state_bytes}


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# ------------------------------------------------------------------ retention


async def retention_run(seed: int, workdir: Path, *, retention: bool) -> list[dict[str, float]]:
    """Tracked listings and file size, day by day, with or without the retention rule."""
    clock = FakeClock(datetime(2026, 1, 1, 12, tzinfo=UTC))
    market = Market(
        seed,
        start=clock.now(),
        kotohomes_count=0,
        kato_count=RETENTION_MARKET,
        tick_s=86_400,
        new_rate=CHURN_PER_DAY,
        removal_rate=CHURN_PER_DAY,
        price_change_rate=20,
        status_change_rate=10,
    )
    subs = workload.subscriptions(300, seed=seed, sources=("kato",), channels=10)
    channels = [(c, f"ch-{c}", f"Channel {c}") for c in workload.channel_ids(10)]
    state = workdir / f"retention-{seed}-{retention}.sqlite3"
    days: list[dict[str, float]] = []
    async with SimStack(clock=clock, market=market, channels=channels, kato_rpm=6000) as sims:
        data = workload.config_data(
            subs,
            state_path=state,
            kotohomes_url=sims.kotohomes_url,
            kato_url=sims.kato_url,
            chatkitty_url=sims.chatkitty_url,
            chatkitty_token_url=sims.chatkitty_token_url,
            kato_rpm=6000,
        )
        data["state"]["retention"] = f"{RETENTION_DAYS}d" if retention else "36500d"
        config = workload.parse(data)
        app = App(config, clock=clock)
        await app.start()
        try:
            for day in range(DAYS + 1):
                outcome = await app.poll("kato")
                if not outcome.ok:
                    raise RuntimeError(f"poll failed: {outcome.error}")
                await app.deliver()
                assert app.store is not None
                counts = app.store.counts_sync()
                days.append(
                    {
                        "day": day,
                        "listings": counts["listings"],
                        "matches": counts["matches"],
                        "outbox": counts["outbox"],
                        "bytes": _file_bytes(state),
                    }
                )
                clock.advance(86_400)
                market.step()
        finally:
            await app.close()
    return days


# ------------------------------------------------------------------ the rows


async def run(runs: int = 3) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        measured = await peak_rss(Path(tmp), runs)
        restarts = measured["restarts"]
        peak = Figure([r["vm_hwm_kb"] / 1024 for r in restarts])
        counts = measured["counts"]
        case = f"{counts['listings']:,} tracked listings, {SUBSCRIPTIONS:,} subs"
        rows.append(
            Row(
                "4 memory",
                case,
                "peak RSS, restart + 2 poll cycles + delivery",
                peak,
                "MB",
                target=f"<= {TARGET_MB:.0f} MB",
                met=peak.median <= TARGET_MB,
                digits=1,
                details=measured,
            )
        )
        rows.append(
            Row(
                "4 memory",
                f"first start, {SUBSCRIPTIONS:,} new subs (all baselining)",
                "peak RSS, 1 poll cycle",
                Figure([measured["first"]["vm_hwm_kb"] / 1024]),
                "MB",
                digits=1,
            )
        )
        rows.append(
            Row(
                "4 memory",
                case,
                "state file bytes per tracked listing",
                Figure([measured["state_bytes"] / counts["listings"]]),
                "B",
                digits=0,
            )
        )
        rss = restarts[0]["rss_kb"]
        notes.append(
            "Scenario 4 RSS of the service process, first run: "
            + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in rss.items() if v)
            + f"; the state held {counts['matches']:,} match rows and "
            f"{counts['outbox']:,} outbox rows ({measured['state_bytes'] / 1e6:.0f} MB)."
        )
        with_rule = await retention_run(1, Path(tmp), retention=True)
        without = await retention_run(1, Path(tmp), retention=False)
    start = 2 * RETENTION_DAYS  # by then every listing older than the retention has gone
    late = [d for d in with_rule if d["day"] >= start]
    grew = late[-1]["bytes"] - late[0]["bytes"]
    case = f"retention {RETENTION_DAYS} d; {CHURN_PER_DAY} new, {CHURN_PER_DAY} gone a day"
    rows.append(
        Row(
            "4 memory",
            case,
            f"tracked listings, day {start} -> day {DAYS}",
            Figure([late[-1]["listings"]]),
            "",
            target="levels off",
            met=abs(late[-1]["listings"] - late[0]["listings"]) <= 2 * CHURN_PER_DAY,
            details={"days": with_rule, "without_retention": without},
            text=f"{late[0]['listings']:,.0f} -> {late[-1]['listings']:,.0f}",
        )
    )
    rows.append(
        Row(
            "4 memory",
            case,
            f"state file size, day {start} -> day {DAYS}",
            Figure([late[-1]["bytes"]]),
            "",
            target="stops growing",
            met=grew <= 0.02 * late[0]["bytes"],
            text=f"{late[0]['bytes'] / 1e6:,.2f} -> {late[-1]['bytes'] / 1e6:,.2f} MB",
        )
    )
    rows.append(
        Row(
            "4 memory",
            "same market, no retention",
            f"tracked listings, day {start} -> day {DAYS}",
            Figure([without[-1]["listings"]]),
            "",
            text=f"{without[start]['listings']:,.0f} -> {without[-1]['listings']:,.0f} "
            f"({without[start]['bytes'] / 1e6:,.2f} -> {without[-1]['bytes'] / 1e6:,.2f} MB)",
        )
    )
    per_listing = with_rule[-1]["bytes"] / with_rule[-1]["listings"]
    notes.append(
        f"Retention run: file {with_rule[-1]['bytes'] / 1e6:.1f} MB for "
        f"{with_rule[-1]['listings']:.0f} tracked listings on day {DAYS} "
        f"({per_listing:,.0f} B each, built by real polls), against "
        f"{without[-1]['bytes'] / 1e6:.1f} MB for {without[-1]['listings']:.0f} without it."
    )
    return rows, notes
