"""The instructions one first sweep costs, counted by valgrind: a figure the machine's
speed does not move.

    python -m benchmarks.instructions [--records N] [--subs N]

On this kind of shared machine the wall time of the same sweep ranges over 2x within
minutes (scenario 6 keeps its ratio to a floor measured in the same minutes for that
reason), so a change worth 2 % cannot be seen in it. The instructions executed can: this
runs the real ``App``'s first sweep on a new state file in a process of its own under
``valgrind --tool=cachegrind`` twice, once with one sweep and once with three, and
reports the difference over two: the instructions of one sweep, both threads (poll and
store), without start-up. Two runs of the same tree agree within about 0.3 %. The Kato
account and ChatKitty are served from processes of their own, not counted.

Compare two trees by running it in each (``git worktree add``). Instructions are not time:
a cache miss costs hundreds of them, and valgrind hides instruction-set extensions (the
SHA instructions OpenSSL uses, for one), so a change that trades software work for such
an instruction reads wrong here; measure that one by time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import workload
from benchmarks.servers import ChatKittyServer, KatoServer, kato_config
from listingbot.app import App
from listingbot.cli import settle_gc
from listingbot.logs import configure_logging

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


async def sweeps(count: int, records: int, subs: int) -> None:
    """``count`` first sweeps, each of a new App on a new state file (the child's work)."""
    configure_logging(level="error", fmt="json", stream=sys.stderr)
    channels = workload.channel_ids(20)
    subscriptions = workload.subscriptions(subs, seed=3, sources=("kato",), channels=20)
    async with KatoServer(records, 5) as kato, ChatKittyServer(channels) as chatkitty:
        for _ in range(count):
            with tempfile.TemporaryDirectory() as tmp:
                data = kato_config(subscriptions, Path(tmp) / "state.sqlite3", kato, chatkitty)
                app = App(workload.parse(data))
                await app.start()
                settle_gc()  # as `listingbot once` does after start-up
                try:
                    gc.collect()
                    outcome = await app.poll("kato")
                    if outcome.listings != records:
                        raise RuntimeError(f"the sweep read {outcome.listings} listings")
                finally:
                    await app.close()


def _counted(count: int, records: int, subs: int) -> subprocess.Popen[str]:
    argv = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        str(count),
        "--records",
        str(records),
        "--subs",
        str(subs),
    ]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _refs(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate()
    found = _REFS.search(err)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed ({proc.returncode}): {err[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--subs", type=int, default=100)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(sweeps(args.child, args.records, args.subs))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    # Both at once: two cores, and each mostly waits on its own valgrind.
    one, three = (_counted(n, args.records, args.subs) for n in (1, 3))
    once, thrice = _refs(one), _refs(three)
    per_sweep = (thrice - once) / 2
    print(
        f"first sweep, {args.records:,} Kato records, {args.subs} subscriptions:"
        f" {per_sweep / 1e9:.3f} G instructions"
        f" (start-up and one sweep {once / 1e9:.3f} G; {os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
