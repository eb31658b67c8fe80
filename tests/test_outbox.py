"""outbox: the envelope a message carries, its delivery key, and reading the key back."""

from __future__ import annotations

from listingbot.detection import detect, group_events
from listingbot.models import EventType
from listingbot.outbox import ENVELOPE, compose, delivery_key, key_of
from tests.factories import listing, spec


def test_delivery_key_of_new_is_once_per_channel_and_listing() -> None:
    """`new` has one key per channel and listing, whatever the listing looks like."""
    assert delivery_key(702, "kotohomes", "li_1", EventType.NEW) == delivery_key(
        702, "kotohomes", "li_1", EventType.NEW, 5
    )
    assert delivery_key(702, "kotohomes", "li_1", EventType.NEW) != delivery_key(
        703, "kotohomes", "li_1", EventType.NEW
    )


def test_delivery_key_of_a_change_comes_from_its_sequence_number() -> None:
    """Change keys differ by sequence number and event, never by value."""
    first = delivery_key(702, "kato", "7", EventType.PRICE_DROP, 1)
    assert first == delivery_key(702, "kato", "7", EventType.PRICE_DROP, 1)
    assert first != delivery_key(702, "kato", "7", EventType.PRICE_DROP, 2)
    assert first != delivery_key(702, "kato", "7", EventType.PRICE_INCREASE, 1)


def test_a_composed_message_carries_its_key_and_its_listing() -> None:
    """compose writes the envelope (key, event, events, source, listing id, subscriptions) and
    the listing; key_of reads the same key back from the posted properties."""
    result = detect([spec("a", 702), spec("b", 702)], [listing("li_9")], {})
    (group,) = group_events(result.events)
    (message,) = compose(group)
    assert message.properties[ENVELOPE] == {
        "key": group.key,
        "event": "new",
        "events": ["new"],
        "source": "kotohomes",
        "listing_id": "li_9",
        "subscriptions": ["a", "b"],
    }
    assert message.properties["listing"]["id"] == "li_9"
    assert (message.key, message.channel_id, message.subscriptions) == (group.key, 702, ("a", "b"))
    assert key_of(message.properties) == group.key


def test_a_deferred_message_once_written_is_the_message_compose_writes() -> None:
    """compose(defer=True) leaves the body unwritten (a digest may tell of the message
    instead); written() gives the same text, line and envelope compose writes at once."""
    result = detect([spec("a", 702)], [listing("li_9")], {})
    (group,) = group_events(result.events)
    (now,) = compose(group)
    (later,) = compose(group, defer=True)
    assert later.body == ""
    assert later.draft is not None
    written = later.written()
    assert written.draft is None
    assert written == now
    assert now.body.startswith("🏠 New listing · a\n")


def test_a_message_not_written_by_listingbot_has_no_key() -> None:
    """Properties without the envelope, or with a key that is not text, give no key."""
    assert key_of(None) is None
    assert key_of({"other": {"key": "x"}}) is None
    assert key_of({ENVELOPE: {"key": 7}}) is None
    assert key_of({ENVELOPE: "lb1-x"}) is None
