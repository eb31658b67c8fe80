"""The ChatKitty simulator in a process of its own, for scenario 3.

``python -m benchmarks.chatkitty_server CHANNEL...`` serves the simulator on a free
loopback port and prints ``{"url": ...}``; on any line from stdin it prints, per channel,
the delivery keys of the messages it stored, in the order it stored them, and exits.
Out of the service's process, the simulator does not compete with it for a core, as
ChatKitty itself would not.
"""

from __future__ import annotations

import asyncio
import json
import sys

from listingbot.clock import SystemClock
from listingbot.sim._http import start_app
from listingbot.sim.chatkitty import ChatKittySim


async def main(channels: list[int]) -> None:
    sim = ChatKittySim(
        channels=[(c, f"ch-{c}", f"Channel {c}") for c in channels], clock=SystemClock()
    )
    runner, url = await start_app(sim.app(), "127.0.0.1", 0)
    print(json.dumps({"url": url}), flush=True)
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    try:
        await stdin.readline()
        stored = {
            str(c): [m["properties"]["listingbot"]["key"] for m in sim.messages.get(c, [])]
            for c in channels
        }
        print(json.dumps(stored), flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main([int(c) for c in sys.argv[1:]]))
