"""``listingbot run`` as a child process: started, SIGKILLed and restarted by a test.

Its JSON log lines (stdout) are collected with the generation of the process that wrote
them; everything it printed is kept for the secret scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# How much later than a market step a poll must have started to count as seeing it. The
# start is estimated from the poll's log line (timestamp - duration_s), which can only be
# later than the real start by the time it takes to write one log line.
START_MARGIN_S = 0.05


async def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.01
) -> None:
    """Wait until ``condition()`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(every_s)


@dataclass(frozen=True)
class Mark:
    """A moment in the test (a market step): wall time, log position, process generation."""

    at: float
    index: int
    generation: int


@dataclass(frozen=True)
class LogLine:
    generation: int
    event: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.event.get("event"))

    def started_at(self) -> float:
        """Wall time the work this line reports started (its timestamp - duration_s)."""
        stamp = datetime.fromisoformat(str(self.event["timestamp"])).timestamp()
        return stamp - float(self.event.get("duration_s") or 0.0)


class Service:
    """One ``listingbot run`` at a time on the same config (and so the same state file)."""

    def __init__(self, config: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.config = config
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.generation = 0
        self.lines: list[LogLine] = []
        self.transcript: list[str] = []  # every line on stdout and stderr, every generation
        self.exit_codes: list[int] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        assert not self.running
        self.generation += 1
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "listingbot.cli",
            "run",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self._proc.stdout, self.generation, parse=True)),
            asyncio.create_task(self._read(self._proc.stderr, self.generation, parse=False)),
        ]

    def kill_now(self) -> None:
        """SIGKILL, synchronously (usable from inside a simulator's request handler)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                os.kill(self.pid, signal.SIGKILL)

    async def kill(self) -> None:
        self.kill_now()
        await self._reap()

    async def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self._reap(), timeout_s)
        return self.exit_codes[-1]

    async def _reap(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        await asyncio.gather(*self._readers)
        self._readers = []
        self.exit_codes.append(code)

    async def _read(self, stream: asyncio.StreamReader, generation: int, *, parse: bool) -> None:
        while raw := await stream.readline():
            text = raw.decode("utf-8", "replace")
            self.transcript.append(text)
            if not parse:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.lines.append(LogLine(generation, event))

    def assert_alive(self) -> None:
        """Fail the test, showing the service's last words, if it exited on its own."""
        exited = self._proc is not None and self._proc.returncode is not None
        if exited and self._readers:  # not reaped: nobody here stopped it
            tail = "".join(self.transcript[-40:])
            raise AssertionError(f"the service exited by itself:\n{tail}")

    # ------------------------------------------------------------------ observation
    def mark(self) -> Mark:
        return Mark(time.time(), len(self.lines), self.generation)

    def polled_since(self, mark: Mark, source: str) -> bool:
        """A poll of ``source`` that started after ``mark`` has committed (and logged)."""
        self.assert_alive()
        for line in self.lines[mark.index :]:
            if line.name != "poll_finished" or line.event.get("source") != source:
                continue
            if line.event.get("outcome") != "ok":
                continue
            if line.generation > mark.generation:
                return True  # that process was started after the mark
            if line.started_at() > mark.at + START_MARGIN_S:
                return True
        return False

    def drained_since(self, mark: Mark) -> bool:
        """Two delivery passes ended with an empty outbox after ``mark`` (the second
        started after the first ended)."""
        empty = [
            line
            for line in self.lines[mark.index :]
            if line.name == "delivery_finished" and line.event.get("pending") == 0
        ]
        return len(empty) >= 2

    def count(self, name: str) -> int:
        return sum(1 for line in self.lines if line.name == name)
