"""Change detection and grouping are pure: these pin the rules."""

from __future__ import annotations

from datetime import UTC, datetime

from listingbot.detection import delivery_key, detect, group_events
from listingbot.models import EventType, Price
from listingbot.store import MatchState
from tests.factories import listing, spec


def state(sub: str, lst_id: str, price: float | None, status: str | None) -> MatchState:
    return MatchState(sub, "kotohomes", lst_id, price, status)


def test_unseen_listing_is_new_for_an_active_subscription() -> None:
    """A listing a subscription was never told about is a `new` event."""
    result = detect([spec()], [listing()], {})
    assert [e.type for e in result.events] == [EventType.NEW]
    assert result.matches[0].last_price == 500_000


def test_baselining_subscription_records_without_events() -> None:
    """In its first run a subscription records what matches and reports nothing."""
    result = detect([spec(baselining=True)], [listing()], {})
    assert result.events == []
    assert len(result.matches) == 1


def test_lower_price_is_a_price_drop_with_the_old_price() -> None:
    """A lower asking figure than last told is a price drop carrying old and new."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 525_000, "active")}
    result = detect([spec()], [listing()], prev)
    (event,) = result.events
    assert event.type is EventType.PRICE_DROP
    assert event.old_price is not None
    assert event.old_price.amount == 525_000


def test_higher_price_is_a_price_increase() -> None:
    """A higher asking figure is a price increase."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 450_000, "active")}
    assert [e.type for e in detect([spec()], [listing()], prev).events] == [
        EventType.PRICE_INCREASE
    ]


def test_status_change_carries_old_status() -> None:
    """A different status is a status change with the old status."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 500_000, "active")}
    (event,) = detect([spec()], [listing(status="pending")], prev).events
    assert event.type is EventType.STATUS_CHANGE
    assert event.old_status == "active"


def test_unchanged_listing_makes_no_event_and_no_write() -> None:
    """Nothing changed: no event and no match update."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 500_000, "active")}
    result = detect([spec()], [listing()], prev)
    assert result.events == []
    assert result.matches == []


def test_unwanted_event_kinds_still_move_the_state() -> None:
    """An event the subscription does not want is not reported, but the state moves on."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 450_000, "active")}
    sub = spec(notify=frozenset({EventType.NEW, EventType.PRICE_DROP}))
    result = detect([sub], [listing()], prev)
    assert result.events == []
    assert result.matches[0].last_price == 500_000


def test_local_filter_rejection_makes_nothing() -> None:
    """A listing the subscription's local filters reject is neither reported nor recorded."""
    result = detect([spec(accepts=lambda _l: False)], [listing()], {})
    assert result.events == []
    assert result.matches == []


def test_unchanged_fingerprint_is_only_seen_by_baselining_subscriptions() -> None:
    """`changed=False` restricts detection to subscriptions in their first run."""
    subs = [spec("old"), spec("fresh", baselining=True)]
    result = detect(subs, [listing()], {}, changed=lambda _l: False)
    assert [m.subscription for m in result.matches] == ["fresh"]
    assert result.events == []


def test_two_subscriptions_in_one_channel_make_one_message_naming_both() -> None:
    """Events for the same channel, listing and kind group into one message."""
    result = detect([spec("b-sub"), spec("a-sub")], [listing()], {})
    (grouped,) = group_events(result.events)
    assert grouped.subscriptions == ("a-sub", "b-sub")


def test_subscriptions_in_different_channels_get_a_message_each() -> None:
    """The same event in two channels is two messages with different keys."""
    result = detect([spec("a", 702), spec("b", 703)], [listing()], {})
    grouped = group_events(result.events)
    assert {g.channel_id for g in grouped} == {702, 703}
    assert len({g.key for g in grouped}) == 2


def test_delivery_key_is_stable_and_distinguishes_successive_drops() -> None:
    """Same observation, same key; a later drop to a new price gets a new key."""
    first = listing(price=Price(amount=480_000))
    again = listing(price=Price(amount=480_000))
    later = listing(price=Price(amount=460_000), updated_at=datetime(2026, 1, 2, tzinfo=UTC))
    k1 = delivery_key(702, first, EventType.PRICE_DROP)
    assert k1 == delivery_key(702, again, EventType.PRICE_DROP)
    assert k1 != delivery_key(702, later, EventType.PRICE_DROP)
    assert delivery_key(702, first, EventType.NEW) == delivery_key(702, later, EventType.NEW)
