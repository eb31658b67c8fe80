"""``python -m benchmarks`` (``make bench``): every scenario, one table, two result files.

    python -m benchmarks                 # all eight scenarios, 3 runs each (start-up: 7)
    python -m benchmarks --only 1 3      # some of them
    python -m benchmarks --runs 5        # more runs per figure

Everything runs against the in-package simulators on loopback; nothing leaves the machine.
Writes ``benchmarks/results/latest.json`` (git-ignored) and ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from benchmarks import cycle, delivery, memory, service, startup, sweep, upstream
from benchmarks.report import Row, command_line, table, write
from listingbot.logs import configure_logging

ANALYSIS = """
## Where targets are missed, and why

See README.md, "Performance": the analysis of every missed target, with its profile
(`python -m benchmarks.profile_sweep`) and what would close it, is kept there, next to the
figures it explains.
"""

Scenario = Callable[[int], Awaitable[tuple[list[Row], list[str]]]]


async def _upstream(runs: int) -> tuple[list[Row], list[str]]:
    return await upstream.run(seeds=tuple(range(1, runs + 1))), []


async def _cycle(runs: int) -> tuple[list[Row], list[str]]:
    return await cycle.run(runs)


async def _delivery(runs: int) -> tuple[list[Row], list[str]]:
    return await delivery.run(runs), []


async def _memory(runs: int) -> tuple[list[Row], list[str]]:
    return await memory.run(runs)


async def _startup(runs: int) -> tuple[list[Row], list[str]]:
    return await startup.run(max(runs, 7)), []


async def _sweep(runs: int) -> tuple[list[Row], list[str]]:
    return await sweep.run(runs)


async def _sweep_memory(runs: int) -> tuple[list[Row], list[str]]:
    del runs  # one sweep per size: the curve, not the spread, is the figure
    return await sweep.run_memory()


async def _service(runs: int) -> tuple[list[Row], list[str]]:
    return await service.run(runs), []


SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "1": ("upstream requests per cycle", _upstream),
    "2": ("poll-cycle CPU against the floor", _cycle),
    "3": ("delivery throughput and order", _delivery),
    "4": ("memory, state size, retention", _memory),
    "5": ("start-up", _startup),
    "6": ("a Kato sweep from outside: first and steady, against the floor", _sweep),
    "7": ("peak RSS of a first sweep at 10k / 50k / 100k records", _sweep_memory),
    "8": ("the running service's delivery rate", _service),
}


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    args = parser.parse_args(argv)
    # Warnings and errors only, on stderr: the table is the output.
    configure_logging(level="error", fmt="json", stream=sys.stderr)
    rows: list[Row] = []
    notes: list[str] = []
    for key in args.only:
        name, scenario = SCENARIOS[key]
        started = time.perf_counter()
        print(f"[{key}] {name} ...", file=sys.stderr, flush=True)
        got, extra = await scenario(args.runs)
        rows.extend(got)
        notes.extend(extra)
        print(f"[{key}] done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    if notes:
        print()
        for note in notes:
            print(f"- {note}")
    latest, md = write(rows, notes, ANALYSIS, command=command_line())
    print(f"\nwritten: {latest}, {md}")
    # Slow is reported in the table; wrong (requests, order, duplicates) fails the run.
    return 0 if all(r.met is not False for r in rows if r.correctness) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
