"""The ChatKitty simulator in a process of its own, for scenarios 3, 6 and 8.

``python -m benchmarks.chatkitty_server CHANNEL...`` serves the simulator on a free
loopback port and prints ``{"url": ...}``. Commands, one a line on stdin, each answered
with one JSON line: ``dump`` prints, per channel, the delivery keys of the messages it
stored, in the order it stored them; ``count`` prints how many messages it stored and
when (``time.monotonic()``, the same clock in every process of the machine) the first
and the latest were stored; an empty line or end of input exits. Out of the service's
process, the simulator does not compete with it for a core, as ChatKitty itself would not.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from listingbot.clock import SystemClock
from listingbot.sim._http import start_app
from listingbot.sim.chatkitty import ChatKittySim


async def main(channels: list[int]) -> None:
    sim = ChatKittySim(
        channels=[(c, f"ch-{c}", f"Channel {c}") for c in channels], clock=SystemClock()
    )
    stored: list[float] = []

    @web.middleware
    async def arrivals(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        path = request.path
        posted = request.method == "POST" and "/channels/" in path and path.endswith("/messages")
        if posted and response.status < 300:
            stored.append(time.monotonic())
        return response

    app = sim.app()
    app.middlewares.append(arrivals)
    runner, url = await start_app(app, "127.0.0.1", 0)
    print(json.dumps({"url": url}), flush=True)
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    try:
        while command := (await stdin.readline()).decode().strip():
            if command == "dump":
                keys = {
                    str(c): [m["properties"]["listingbot"]["key"] for m in sim.messages.get(c, [])]
                    for c in channels
                }
                print(json.dumps(keys), flush=True)
            elif command == "count":
                first = stored[0] if stored else None
                last = stored[-1] if stored else None
                print(json.dumps({"count": len(stored), "first": first, "last": last}), flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main([int(c) for c in sys.argv[1:]]))
