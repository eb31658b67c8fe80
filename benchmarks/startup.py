"""Scenario 5: start-up. ``listingbot once --dry-run`` against an empty market, wall time.

The command runs as a user would run it (the installed console script, a config file,
secrets from the environment) against the simulators served by this process on
loopback: interpreter start, imports, config, state file, token, channel check, one
(empty) poll of each source, exit. For scale, the same is timed for a bare interpreter
and for the imports alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import workload
from benchmarks.report import Figure, Row
from listingbot.sim import SimStack

TARGET_S = 1.5
SUBSCRIPTIONS = 10


def _listingbot() -> list[str]:
    script = Path(sys.executable).with_name("listingbot")
    if script.exists():
        return [str(script)]
    found = shutil.which("listingbot")
    return [found] if found else [sys.executable, "-m", "listingbot.cli"]


async def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return time.perf_counter() - started, proc.returncode or 0, out + err


async def measure(runs: int) -> dict[str, list[float]]:
    channels = [(c, f"ch-{c}", f"Channel {c}") for c in workload.channel_ids(4)]
    env = {**os.environ, **workload.ENV}
    times: dict[str, list[float]] = {"once": [], "python": [], "imports": []}
    async with SimStack(seed=1, channels=channels, kotohomes_count=0, kato_count=0) as sims:
        with tempfile.TemporaryDirectory() as tmp:
            data = workload.config_data(
                workload.subscriptions(SUBSCRIPTIONS, seed=1, channels=4),
                state_path=Path(tmp) / "state.sqlite3",
                kotohomes_url=sims.kotohomes_url,
                kato_url=sims.kato_url,
                chatkitty_url=sims.chatkitty_url,
                chatkitty_token_url=sims.chatkitty_token_url,
            )
            config = workload.write_config(data, Path(tmp) / "listingbot.yaml")
            argv = [*_listingbot(), "once", "--dry-run", "--config", str(config)]
            for _ in range(runs):
                seconds, code, output = await _timed(argv, env)
                if code != 0:
                    raise RuntimeError(f"listingbot once --dry-run failed ({code}): {output!r}")
                times["once"].append(seconds)
                seconds, _, _ = await _timed([sys.executable, "-c", "pass"], env)
                times["python"].append(seconds)
                seconds, _, _ = await _timed([sys.executable, "-c", "import listingbot.cli"], env)
                times["imports"].append(seconds)
    return times


async def run(runs: int = 7) -> list[Row]:
    times = await measure(runs)
    once = Figure(times["once"])
    case = f"empty market, {SUBSCRIPTIONS} subs"
    return [
        Row(
            "5 start-up",
            case,
            "`listingbot once --dry-run` wall time",
            once,
            "s",
            target=f"<= {TARGET_S} s",
            met=once.median <= TARGET_S,
            digits=3,
        ),
        Row(
            "5 start-up",
            case,
            "of which: bare interpreter",
            Figure(times["python"]),
            "s",
            digits=3,
        ),
        Row(
            "5 start-up",
            case,
            "of which: interpreter + imports",
            Figure(times["imports"]),
            "s",
            digits=3,
        ),
    ]
