"""Quiet hours: a daily window, in a subscription's time zone, when its messages wait.

``quiet_hours: "22:00-07:00"`` with ``timezone: America/New_York``. The window is read on
the wall clock of that zone and happens once a day: from the first moment the clock
shows its start to the first moment after that the clock shows its end. That one rule
settles the days the clock changes:

- spring forward (the clock skips 02:00-03:00): a start or end inside the gap is the
  moment the clock jumps (03:00), the first moment the clock shows at least that time;
- fall back (the clock shows 01:00-02:00 twice): a start or end in the repeated hour is
  its first occurrence, and the second pass through that hour does not start the window
  again;
- a window may span midnight (start later than end): it ends the next day.

Pure: the caller passes the time (aware UTC) and the zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final

__all__ = ["QuietHours", "QuietHoursError"]

_WINDOW: Final = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
# No zone moves its clock by more than a day; gaps are at most a few hours.
_GAP_SEARCH: Final = timedelta(hours=4)


class QuietHoursError(ValueError):
    """A quiet-hours window that cannot be read."""


@dataclass(frozen=True)
class QuietHours:
    """A daily window of wall-clock time, ``start`` included, ``end`` excluded."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"22:00-07:00"`` (24-hour ``HH:MM-HH:MM``; start and end must differ)."""
        match = _WINDOW.fullmatch(text)
        if match is None:
            raise QuietHoursError(f"expected HH:MM-HH:MM, e.g. 22:00-07:00 (got {text!r})")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise QuietHoursError(f"not a time of day in {text!r} (use 00:00 to 23:59)")
        start, end = time(h1, m1), time(h2, m2)
        if start == end:
            raise QuietHoursError("start and end are the same time: the window would be empty")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def spans_midnight(self) -> bool:
        return self.start > self.end

    def ends_at(self, now: datetime, zone: tzinfo) -> datetime | None:
        """When the window ``now`` is in ends (aware UTC), or None when ``now`` is not in
        one. ``now`` must be aware."""
        local_day = now.astimezone(zone).date()
        # A window that spans midnight may have started the day before.
        for day in (local_day - timedelta(days=1), local_day):
            begin = first_moment(day, self.start, zone)
            end_day = day + timedelta(days=1) if self.spans_midnight else day
            finish = first_moment(end_day, self.end, zone)
            if begin <= now < finish:
                return finish
        return None


def first_moment(day: date, clock: time, zone: tzinfo) -> datetime:
    """The first moment (aware UTC) on ``day`` when the clock in ``zone`` shows at least
    ``clock``: its first occurrence in a repeated hour, the jump itself in a skipped one."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # the time exists (fold=0 is its first occurrence when repeated)
    # In a gap: fold=0 reads the wall time with the offset before the jump, which lands
    # after it. Walk back minute by minute to the first moment showing at least ``clock``.
    moment = first
    limit = first - _GAP_SEARCH
    while moment > limit:
        earlier = moment - timedelta(minutes=1)
        if earlier.astimezone(zone).replace(tzinfo=None) < wall:
            return moment
        moment = earlier
    return first
