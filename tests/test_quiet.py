"""Specification of quiet-hours windows (listingbot.quiet), DST days included."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from listingbot.quiet import QuietHours, QuietHoursError

NEW_YORK = ZoneInfo("America/New_York")


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_parse_reads_start_and_end() -> None:
    """``"22:00-07:00"`` is a window from 22:00 to 07:00."""
    assert str(QuietHours.parse(" 22:00 - 7:00 ")) == "22:00-07:00"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("22-07", "HH:MM-HH:MM"),
        ("22:00", "HH:MM-HH:MM"),
        ("24:00-07:00", "not a time of day"),
        ("22:60-07:00", "not a time of day"),
        ("07:00-07:00", "the same time"),
    ],
)
def test_parse_refuses_what_is_not_a_window(text: str, why: str) -> None:
    """Malformed, impossible or empty windows are refused with the reason."""
    with pytest.raises(QuietHoursError, match=why):
        QuietHours.parse(text)


def test_a_window_spanning_midnight_ends_the_next_morning() -> None:
    """At 23:00 local, 22:00-07:00 ends at 07:00 the next day."""
    quiet = QuietHours.parse("22:00-07:00")
    # 23:00 EST on 1 Dec is 04:00Z on 2 Dec; 07:00 EST on 2 Dec is 12:00Z.
    assert quiet.ends_at(utc(12, 2, 4), NEW_YORK) == utc(12, 2, 12)


def test_after_midnight_the_window_started_the_day_before() -> None:
    """At 03:00 local, 22:00-07:00 is still on and ends at 07:00 the same day."""
    quiet = QuietHours.parse("22:00-07:00")
    assert quiet.ends_at(utc(12, 2, 8), NEW_YORK) == utc(12, 2, 12)


@pytest.mark.parametrize("moment", [utc(12, 2, 12), utc(12, 2, 18), utc(12, 3, 2, 59)])
def test_outside_the_window_nothing_waits(moment: datetime) -> None:
    """The end is excluded, and daytime is outside a night window."""
    assert QuietHours.parse("22:00-07:00").ends_at(moment, NEW_YORK) is None


def test_the_start_is_included() -> None:
    """The window begins at its start minute."""
    assert QuietHours.parse("22:00-07:00").ends_at(utc(12, 3, 3), NEW_YORK) == utc(12, 3, 12)


def test_a_daytime_window_ends_the_same_day() -> None:
    """09:00-17:00 at noon ends at 17:00."""
    assert QuietHours.parse("09:00-17:00").ends_at(utc(12, 2, 17), NEW_YORK) == utc(12, 2, 22)


def test_spring_forward_an_end_in_the_skipped_hour_is_the_jump() -> None:
    """On 8 Mar 2026 New York skips 02:00-03:00: a window ending 02:30 ends at 03:00 EDT."""
    quiet = QuietHours.parse("01:00-02:30")
    # 01:45 EST = 06:45Z; 03:00 EDT = 07:00Z.
    assert quiet.ends_at(utc(3, 8, 6, 45), NEW_YORK) == utc(3, 8, 7)
    assert quiet.ends_at(utc(3, 8, 7), NEW_YORK) is None


def test_spring_forward_a_start_in_the_skipped_hour_is_the_jump() -> None:
    """A window starting 02:30 starts at 03:00 EDT that night, and lasts to its end."""
    quiet = QuietHours.parse("02:30-06:00")
    assert quiet.ends_at(utc(3, 8, 6, 59), NEW_YORK) is None  # 01:59 EST
    assert quiet.ends_at(utc(3, 8, 7), NEW_YORK) == utc(3, 8, 10)  # 03:00 EDT to 06:00 EDT


def test_spring_forward_a_night_window_is_an_hour_shorter() -> None:
    """22:00 EST to 07:00 EDT: the window ends at 11:00Z, not 12:00Z."""
    quiet = QuietHours.parse("22:00-07:00")
    assert quiet.ends_at(utc(3, 8, 5), NEW_YORK) == utc(3, 8, 11)


def test_fall_back_an_end_in_the_repeated_hour_is_its_first_occurrence() -> None:
    """On 1 Nov 2026 New York shows 01:00-02:00 twice: 22:00-01:30 ends at 01:30 EDT."""
    quiet = QuietHours.parse("22:00-01:30")
    assert quiet.ends_at(utc(11, 1, 5), NEW_YORK) == utc(11, 1, 5, 30)  # 01:00 EDT


def test_fall_back_the_second_pass_does_not_start_the_window_again() -> None:
    """01:10 EST (the repeated hour) is after the window's end: nothing waits."""
    quiet = QuietHours.parse("22:00-01:30")
    assert quiet.ends_at(utc(11, 1, 6, 10), NEW_YORK) is None


def test_fall_back_a_window_inside_the_repeated_hour_happens_once() -> None:
    """01:15-01:45 runs in EDT only; the same clock times in EST are outside."""
    quiet = QuietHours.parse("01:15-01:45")
    assert quiet.ends_at(utc(11, 1, 5, 20), NEW_YORK) == utc(11, 1, 5, 45)
    assert quiet.ends_at(utc(11, 1, 6, 20), NEW_YORK) is None


def test_fall_back_a_night_window_is_an_hour_longer() -> None:
    """22:00 EDT to 07:00 EST: 02:00Z to 12:00Z, ten hours."""
    quiet = QuietHours.parse("22:00-07:00")
    assert quiet.ends_at(utc(11, 1, 2), NEW_YORK) == utc(11, 1, 12)
    assert quiet.ends_at(utc(11, 1, 1, 59), NEW_YORK) is None
