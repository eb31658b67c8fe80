"""The ``messages`` section and the subscription keys that shape messages."""

from __future__ import annotations

import pytest

from listingbot.config import Config, MessagesConfig, parse_config
from listingbot.errors import ConfigError
from listingbot.models import DEFAULT_NOTIFY, EventType

ENV = {"CK_ID": "ck-id", "CK_SECRET": "ck-secret-XYZ", "KOTO_KEY": "koto-key-XYZ"}

BASE = """\
state:
  path: state.sqlite3
chatkitty:
  api_url: https://api.chatkitty.com
  token_url: https://authorization.chatkitty.com/oauth/token
  client_id: ${CK_ID}
  client_secret: ${CK_SECRET}
sources:
  kotohomes:
    key: ${KOTO_KEY}
subscriptions:
  - name: nyc-homes
    source: kotohomes
    channel: 702
    filters: {states: [NY]}
"""


def parse(extra_sub: str = "", top: str = "") -> Config:
    return parse_config(BASE + extra_sub + top, env=ENV, source="test.yaml")


def error_of(extra_sub: str = "", top: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        parse(extra_sub, top)
    return str(info.value)


def test_messages_defaults() -> None:
    """Without a messages section: threads on, photos off, digests over 10 messages."""
    assert parse().messages == MessagesConfig(threads=True, photos=False, digest_over=10)


def test_messages_section_is_read() -> None:
    """The top-level messages keys are read as written."""
    config = parse(top="messages:\n  threads: false\n  photos: true\n  digest_over: 0\n")
    assert config.messages == MessagesConfig(threads=False, photos=True, digest_over=0)


def test_unknown_messages_key_is_named() -> None:
    """A typo in the messages section is an error naming the key, with a suggestion."""
    message = error_of(top="messages:\n  thread: false\n")
    assert "messages.thread" in message
    assert "threads" in message


def test_messages_values_are_checked() -> None:
    """A negative digest_over and a non-boolean photos are refused, by key path."""
    message = error_of(top="messages:\n  digest_over: -1\n  photos: maybe\n")
    assert "messages.digest_over" in message
    assert "messages.photos" in message


def test_default_notify_leaves_out_removed_and_back_on_market() -> None:
    """Removals and returns to the market are opt-in; every other event is on."""
    sub = parse().subscriptions[0]
    assert sub.notify == DEFAULT_NOTIFY
    assert EventType.REMOVED not in DEFAULT_NOTIFY
    assert EventType.BACK_ON_MARKET not in DEFAULT_NOTIFY
    assert {EventType.NOW_FOR_RENT, EventType.NOW_FOR_SALE} <= DEFAULT_NOTIFY


def test_notify_takes_the_new_events() -> None:
    """notify accepts removed, back_on_market, now_for_rent and now_for_sale."""
    sub = parse("    notify: [removed, back_on_market, now_for_rent, now_for_sale]\n")
    assert sub.subscriptions[0].notify == {
        EventType.REMOVED,
        EventType.BACK_ON_MARKET,
        EventType.NOW_FOR_RENT,
        EventType.NOW_FOR_SALE,
    }


def test_misspelt_notify_event_gets_a_suggestion() -> None:
    """An unknown event close to a real one is answered with 'did you mean'."""
    message = error_of("    notify: [new, price-drops]\n")
    assert "subscriptions[0].notify[1]: unknown event 'price-drops'" in message
    assert "did you mean 'price_drop'?" in message


def test_label_is_trimmed_and_kept() -> None:
    """A label is kept with its whitespace collapsed."""
    sub = parse('    label: "  Brooklyn   condos "\n').subscriptions[0]
    assert sub.label == "Brooklyn condos"


def test_overlong_or_empty_label_is_refused() -> None:
    """A label must be 1-60 printable characters."""
    assert "subscriptions[0].label: must be 1-60" in error_of(f"    label: {'x' * 61}\n")
    assert "subscriptions[0].label: must be 1-60" in error_of('    label: "  "\n')


def test_subscription_overrides_the_messages_section() -> None:
    """A subscription's threads/photos/digest_over win over the top level; unset inherit."""
    config = parse("    photos: true\n    digest_over: 3\n", top="messages:\n  threads: false\n")
    assert config.messages_for(config.subscriptions[0]) == MessagesConfig(
        threads=False, photos=True, digest_over=3
    )


def test_subscription_without_overrides_uses_the_messages_section() -> None:
    """A subscription that sets none of the keys gets the top-level settings."""
    config = parse(top="messages:\n  digest_over: 4\n")
    assert config.messages_for(config.subscriptions[0]).digest_over == 4
