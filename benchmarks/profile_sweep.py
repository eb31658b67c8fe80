"""Profile one Kato sweep of the real app in this process (what scenario 6 measures).

    python -m benchmarks.profile_sweep [--records N] [--subs N] [--steady] [--memory]

Serves a Kato account of ``--records`` records (pages of 50) and ChatKitty from processes
of their own, starts the real ``App`` on a new state file and profiles its first sweep
(``--steady``: its second sweep, after 100 records changed) with cProfile, printing the
top functions by cumulative and by own time. ``--memory`` traces allocations instead and
prints the peak and the lines that held the most at that peak.
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
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.servers import ChatKittyServer, KatoServer, kato_config
from listingbot.app import App
from listingbot.cli import settle_gc
from listingbot.logs import configure_logging


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_sweep")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--subs", type=int, default=100)
    parser.add_argument("--steady", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    configure_logging(level="error", fmt="json", stream=sys.stderr)
    channels = workload.channel_ids(20)
    subs = workload.subscriptions(args.subs, seed=3, sources=("kato",), channels=20)
    async with KatoServer(args.records, 5) as kato, ChatKittyServer(channels) as chatkitty:
        with tempfile.TemporaryDirectory() as tmp:
            data = kato_config(subs, Path(tmp) / "state.sqlite3", kato, chatkitty)
            app = App(workload.parse(data))
            await app.start()
            settle_gc()  # as `listingbot once` does after start-up
            try:
                if args.steady:
                    await app.poll("kato")
                    await kato.change(100)
                gc.collect()
                profile = cProfile.Profile()
                if args.memory:
                    tracemalloc.start(8)
                else:
                    profile.enable()
                started = time.perf_counter()
                sampler = asyncio.ensure_future(_biggest_snapshot()) if args.memory else None
                outcome = await app.poll("kato")
                seconds = time.perf_counter() - started
                profile.disable()
                print(f"sweep: {seconds:.3f} s, {outcome.listings} listings")
                print(f"stages: {outcome.stages}")
                if args.memory:
                    _, peak = tracemalloc.get_traced_memory()
                    print(f"peak traced: {peak / 1e6:.1f} MB")
                    assert sampler is not None
                    sampler.cancel()
                    snapshot = _BIGGEST[1] or tracemalloc.take_snapshot()
                    tracemalloc.stop()
                    print(f"largest sampled: {_BIGGEST[0] / 1e6:.1f} MB; held then:")
                    for stat in snapshot.statistics("lineno")[: args.top]:
                        print(stat)
                else:
                    stats = pstats.Stats(profile)
                    stats.sort_stats("cumulative").print_stats(args.top)
                    stats.sort_stats("tottime").print_stats(args.top)
            finally:
                await app.close()


_BIGGEST: list[Any] = [0, None]


async def _biggest_snapshot() -> None:
    """Every few tenths of a second while the sweep awaits: keep the fullest snapshot."""
    while True:
        await asyncio.sleep(0.3)
        current, _ = tracemalloc.get_traced_memory()
        if current > _BIGGEST[0]:
            _BIGGEST[:] = [current, tracemalloc.take_snapshot()]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
