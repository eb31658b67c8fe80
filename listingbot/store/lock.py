"""One process per state file: an exclusive ``flock`` on a sidecar ``<state>.lock``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from listingbot.errors import StateLocked, StoreError
from listingbot.store._sql import _ts


class StateLock:
    """One process per state file: an exclusive ``flock`` on ``<state file>.lock``.

    The holder writes its pid and start time into the file, so a process that is refused
    can say who holds it and since when. The kernel drops the lock when its holder exits,
    however it exits (SIGKILL included), so a crash never leaves a stale lock behind.
    """

    POLL_S = 0.25  # how often a waiting process tries again

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, now: datetime) -> bool:
        """Take the lock if it is free; True when this object holds it."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open lock file {self.path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as err:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {err.strerror}") from err
        stamp = json.dumps({"pid": os.getpid(), "since": _ts(now)})
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode() + b"\n", 0)
        self._fd = fd
        return True

    async def acquire(
        self,
        now: Callable[[], datetime],
        *,
        wait_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Take the lock, waiting up to ``wait_s`` for it; :class:`StateLocked` if not."""
        waited = 0.0
        while not self.try_acquire(now()):
            if waited >= wait_s or sleep is None:
                raise StateLocked(self._refusal(waited))
            step = min(self.POLL_S, wait_s - waited)
            await sleep(step)
            waited += step

    def holder(self) -> tuple[int | None, str | None]:
        """(pid, since) as the current holder wrote them, when readable."""
        try:
            raw = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return None, None
        if not isinstance(raw, dict):
            return None, None
        pid, since = raw.get("pid"), raw.get("since")
        return (
            pid if isinstance(pid, int) else None,
            since if isinstance(since, str) else None,
        )

    def _refusal(self, waited: float) -> str:
        pid, since = self.holder()
        who = f"process {pid}" if pid is not None else "another process"
        when = f" since {since}" if since else ""
        tail = f" (waited {waited:g}s)" if waited else ""
        return (
            f"state file {self.path.with_suffix('')} is in use by {who}{when}{tail}: "
            "only one listingbot may use a state file at a time. Stop the other process, "
            "or pass --wait-lock SECONDS to wait for it."
        )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None
