"""A strict sliding-window rate limiter driven by the injected clock.

Why not aiolimiter: its ``AsyncLimiter`` is a leaky bucket. It admits a full burst of
``max_rate`` requests and then refills continuously, so within any 60 s window it lets
through up to about twice the configured rate (a full bucket at the start of the window plus
the refill during it). Kato allows 60 requests per minute and answers the 61st with 429, so a
bucket configured at 60/min would earn 429s; configuring it at 30/min would waste half the
budget. It also reads the event loop's clock, which tests cannot drive: every test would
have to wait in real time. This limiter keeps the grant times of the last ``max_requests``
acquisitions and never lets more than ``max_requests`` of them fall inside one window.
"""

from __future__ import annotations

import asyncio
from collections import deque

from listingbot.clock import Clock

# Waits shorter than this count as none: sleeping exactly the computed wait can land a hair
# short of the target in floating point, and sleeping that hair again may not move the clock.
_EPSILON_S = 1e-6


class SlidingWindowLimiter:
    """At most ``max_requests`` acquisitions in any interval of ``window_s`` seconds.

    Waiters are served first come, first served: one waiter at a time holds the internal
    lock while it sleeps, and ``asyncio.Lock`` hands itself over in FIFO order.
    """

    def __init__(self, max_requests: int, window_s: float, clock: Clock) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._grants: deque[float] = deque(maxlen=max_requests)
        self._blocked_until = float("-inf")
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the seconds spent waiting (0.0 if none)."""
        started = self._clock.monotonic()
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                wait = self._wait_s(now)
                if wait <= _EPSILON_S:
                    self._grants.append(now)
                    return max(0.0, now - started)
                await self._clock.sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` from now (the server said 429 / Retry-After)."""
        if seconds > 0:
            until = self._clock.monotonic() + seconds
            self._blocked_until = max(self._blocked_until, until)

    def _wait_s(self, now: float) -> float:
        wait = self._blocked_until - now
        if len(self._grants) == self.max_requests:
            # The oldest of the last `max_requests` grants must have left the window.
            wait = max(wait, self._grants[0] + self.window_s - now)
        return wait
