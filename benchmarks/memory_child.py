"""The measured process of scenario 4: the service itself, nothing else imported.

``python -m benchmarks.memory_child CONFIG.json CYCLES``: start the app, run ``CYCLES``
poll cycles (every source, then a delivery pass), and between two cycles print
``cycle-done`` and wait for a line on stdin (the parent moves the market meanwhile).
Ends with ``report {json}``: peak resident set (``VmHWM``), RSS after each step, polls.
Logs go to stderr: stdout is the conversation with the parent.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from listingbot.app import App
from listingbot.config import Config
from listingbot.logs import configure_logging


def status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (None where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def load(path: Path) -> Config:
    return Config.model_validate(json.loads(path.read_text()))


async def main(config_path: Path, cycles: int) -> None:
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    rss: dict[str, int | None] = {"imported": status_kb("VmRSS")}
    config = load(config_path)
    rss["config"] = status_kb("VmRSS")
    app = App(config)
    started = time.perf_counter()
    await app.start()
    rss["started"] = status_kb("VmRSS")
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    polls: list[dict[str, Any]] = []
    try:
        for cycle in range(1, cycles + 1):
            for source in list(app.pollers):
                outcome = await app.poll(source)
                polls.append(
                    {
                        "cycle": cycle,
                        "source": source,
                        "ok": outcome.ok,
                        "listings": outcome.listings,
                        "events": outcome.events,
                        "queued": outcome.queued,
                        "seconds": round(outcome.duration_s, 3),
                    }
                )
            delivered = await app.deliver()
            polls[-1]["sent"] = delivered.sent
            rss[f"cycle{cycle}"] = status_kb("VmRSS")
            if cycle < cycles:
                print("cycle-done", flush=True)
                await stdin.readline()
    finally:
        await app.close()
    report = {
        "vm_hwm_kb": status_kb("VmHWM"),
        "rss_kb": rss,
        "polls": polls,
        "seconds": time.perf_counter() - started,
    }
    print("report " + json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
