"""Specification of the subscription keys template, quiet_hours and timezone."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from listingbot.cli import main
from listingbot.config import Subscription
from listingbot.models import EventType
from tests.test_config import ENV, edit, error_of, parse

HOMES = "    filters: {states: [NY, NJ], price_max: 900000}\n"


def with_keys(keys: str) -> str:
    """BASE with ``keys`` (YAML lines at subscription level) added to nyc-homes."""
    return edit(HOMES, HOMES + keys)


def homes(keys: str) -> Subscription:
    return parse(with_keys(keys)).subscriptions[0]


def test_a_template_for_every_event() -> None:
    """``template: text`` applies to every event."""
    sub = homes('    template: "{title} — {price}"\n')
    for event in EventType:
        template = sub.template_for(event)
        assert template is not None
        assert template.fields == {"title", "price"}


def test_templates_per_event_leave_the_others_to_the_default() -> None:
    """A mapping of events to templates: unnamed events use the default (None)."""
    sub = homes('    template:\n      new: "{title}"\n      price_drop: "{change}"\n')
    assert sub.template_for(EventType.NEW) is not None
    assert sub.template_for(EventType.PRICE_DROP) is not None
    assert sub.template_for(EventType.STATUS_CHANGE) is None


def test_without_template_the_default_is_used() -> None:
    """No template key: every event uses the default."""
    assert parse().subscriptions[0].template_for(EventType.NEW) is None


def test_unknown_template_field_names_subscription_key_and_field() -> None:
    """A misspelt field fails with the key path, the subscription and a suggestion."""
    text = error_of(with_keys('    template: "{titel} {url}"\n'))
    assert (
        "subscriptions[0].template: subscription 'nyc-homes': "
        "unknown field {titel} (did you mean {title}?)"
    ) in text


def test_unknown_field_in_an_event_template_names_the_event_key() -> None:
    """In the per-event form the path names the event too."""
    text = error_of(with_keys('    template:\n      price_drop: "{chnage}"\n'))
    assert "subscriptions[0].template.price_drop: subscription 'nyc-homes': " in text
    assert "unknown field {chnage} (did you mean {change}?)" in text


def test_unknown_event_in_a_template_mapping_is_refused() -> None:
    """A template for an event that does not exist is refused with a suggestion."""
    text = error_of(with_keys('    template:\n      price_dorp: "{title}"\n'))
    assert "subscriptions[0].template.price_dorp: unknown event" in text
    assert "did you mean 'price_drop'?" in text


def test_attribute_access_in_a_template_is_refused() -> None:
    """The config refuses what the formatter refuses."""
    text = error_of(with_keys('    template: "{price.__class__}"\n'))
    assert "attribute access is not supported" in text


def test_quiet_hours_and_timezone_are_read() -> None:
    """``quiet_hours`` is a window, ``timezone`` an IANA zone."""
    sub = homes('    quiet_hours: "22:00-07:00"\n    timezone: America/New_York\n')
    assert str(sub.quiet) == "22:00-07:00"
    assert sub.zone == ZoneInfo("America/New_York")


def test_timezone_defaults_to_utc() -> None:
    """Without ``timezone`` quiet hours are read in UTC."""
    sub = homes('    quiet_hours: "22:00-07:00"\n')
    assert sub.zone is UTC
    assert parse().subscriptions[0].quiet is None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ('    quiet_hours: "22-7"\n', "subscriptions[0].quiet_hours: expected HH:MM-HH:MM"),
        ('    quiet_hours: "07:00-07:00"\n', "the window would be empty"),
        ("    quiet_hours: 2200\n", 'expected HH:MM-HH:MM in quotes, e.g. "22:00-07:00"'),
        (
            "    timezone: America/New_Yrok\n",
            "subscriptions[0].timezone: unknown time zone 'America/New_Yrok' "
            "(did you mean 'America/New_York'?",
        ),
        ("    timezone: ../../etc/passwd\n", "unknown time zone"),
    ],
)
def test_bad_quiet_hours_or_timezone_is_refused(keys: str, expected: str) -> None:
    """Unreadable windows and unknown zones are refused, naming the key."""
    assert expected in error_of(with_keys(keys))


def test_check_config_exits_2_on_an_unknown_template_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` refuses a bad template with exit code 2 and the field named."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "listingbot.yaml"
    path.write_text(with_keys('    template: "{headline}\\n{adress}"\n'))
    code = main(["--config", str(path), "check-config"])
    _out, err = capsys.readouterr()
    assert code == 2
    assert "unknown field {adress} (did you mean {address}?)" in err
