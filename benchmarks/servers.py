"""The loopback services of scenarios 6 to 8, each in a process of its own, and the
measured ``listingbot`` process itself (its peak resident set taken from outside)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from benchmarks import workload

ROOT = Path(__file__).resolve().parent.parent


class _Child:
    """A helper process that prints one JSON line per command it is sent."""

    argv: list[str]

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            limit=1 << 26,  # a dump of every stored key is one long line
        )
        self.url = (await self._answer())["url"]
        return self

    async def ask(self, command: str) -> Any:
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        proc.stdin.write(command.encode() + b"\n")
        await proc.stdin.drain()
        return await self._answer()

    async def _answer(self) -> Any:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.argv[2]} ended early")
        return json.loads(line)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class KatoServer(_Child):
    """``benchmarks.kato_server``: a Kato account of ``records`` records, pages of 50."""

    def __init__(self, records: int, seed: int) -> None:
        super().__init__()
        self.argv = [sys.executable, "-m", "benchmarks.kato_server", str(records), str(seed)]

    async def change(self, count: int) -> dict[str, int]:
        changed: dict[str, int] = await self.ask(f"change {count}")
        return changed

    async def prepare(self, count: int) -> dict[str, int]:
        """The change rendered, not served yet (``switch`` serves it at once)."""
        changed: dict[str, int] = await self.ask(f"prepare {count}")
        return changed

    async def switch(self) -> None:
        await self.ask("switch")


class ChatKittyServer(_Child):
    """``benchmarks.chatkitty_server`` with these channels."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.argv = [sys.executable, "-m", "benchmarks.chatkitty_server", *map(str, channels)]
        self.token_url = ""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.token_url = f"{self.url}/oauth/token"
        return self

    async def stored(self) -> dict[int, list[str]]:
        got = await self.ask("dump")
        return {int(c): keys for c, keys in got.items()}


def kato_config(
    subs: list[dict[str, Any]], state_path: Path, kato: KatoServer, chatkitty: ChatKittyServer
) -> dict[str, Any]:
    """The config data of a Kato-only service against these two servers (no Kotohomes
    subscription: its address is never asked), at Kato's highest allowed pace."""
    return workload.config_data(
        subs,
        state_path=state_path,
        kotohomes_url="http://127.0.0.1:9",
        kato_url=kato.url,
        chatkitty_url=chatkitty.url,
        chatkitty_token_url=chatkitty.token_url,
        kato_rpm=6000,
    )


@dataclass
class Measured:
    """One run of a ``listingbot`` command, seen from outside."""

    seconds: float
    returncode: int
    max_rss_kb: int
    output: str
    load: float  # the 1-minute load average when it ended

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of this event name, in order."""
        out = []
        for line in self.output.splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
        return out


def listingbot() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("listingbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "listingbot.cli"]


def run_measured(argv: list[str], env: dict[str, str]) -> Measured:
    """Run ``argv`` to the end; its wall time and peak resident set (``wait4``'s rusage,
    so the kernel's figure for that one process, nothing sampled)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(seconds, proc.returncode, usage.ru_maxrss, output, os.getloadavg()[0])
