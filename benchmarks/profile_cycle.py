"""Profile one timed cycle of scenario 2 in this process (what ``benchmarks.cycle`` times).

    python -m benchmarks.profile_cycle [--subs N] [--top N]

Builds scenario 2's market (10,000 Kato listings, half changed) and ``--subs``
subscriptions, baselines a state file, replays the previous sweep untimed and profiles the
half-changed poll with cProfile, printing the top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import cycle
from listingbot.clock import FakeClock
from listingbot.store import Store


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_cycle")
    parser.add_argument("--subs", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    prepared = await cycle.prepare(5)
    subs = cycle.subscriptions(args.subs)
    with tempfile.TemporaryDirectory() as tmp:
        base, _, _ = await cycle.baseline_state(Path(tmp), prepared, subs)
        clock = FakeClock(datetime(2026, 1, 1, 12, 10, tzinfo=UTC))
        store = await Store.open(base, clock.now)
        try:
            recorded = cycle.RecordedKato(prepared.before)
            poller = cycle.make_poller(store, clock, recorded, subs)
            await poller.poll()
            recorded.bodies = prepared.after
            gc.collect()
            profile = cProfile.Profile()
            started, cpu = time.perf_counter(), time.process_time()
            profile.enable()
            outcome = await poller.poll()
            profile.disable()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            await store.close()
    print(f"cycle (profiled): {seconds:.3f} s wall, {cpu:.3f} s CPU")
    print(f"events {outcome.events}, messages {outcome.queued}, stages {outcome.stages}")
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
