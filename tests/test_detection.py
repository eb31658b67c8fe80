"""Change detection and grouping are pure: these pin the rules."""

from __future__ import annotations

from listingbot.detection import Event, detect, group_events
from listingbot.models import EventType, Price
from listingbot.records import ChannelState, MatchState
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


def test_baselining_keeps_the_changes_of_listings_already_followed() -> None:
    """A re-baseline (after a filter edit) suppresses only `new`: a listing the
    subscription already follows still reports its price drop."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 525_000, "active")}
    result = detect([spec(baselining=True)], [listing(), listing(id="li_2")], prev)
    assert [(e.listing.id, e.type) for e in result.events] == [("li_1", EventType.PRICE_DROP)]
    assert {m.listing_id for m in result.matches} == {"li_1", "li_2"}


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


def test_a_value_that_returns_to_an_earlier_one_is_a_new_change() -> None:
    """Rent 30 -> 35 -> 30 -> 35 without `updated_at`: three changes, three keys."""
    states: dict[tuple[int, str], ChannelState] = {}
    keys = []
    told = 30.0
    for rent in (35.0, 30.0, 35.0):
        kind = EventType.PRICE_DROP if rent < told else EventType.PRICE_INCREASE
        lst = listing(price=Price(amount=rent), updated_at=None)
        event = Event("sub-a", 702, lst, kind, old_price=Price(amount=told))
        (grouped,) = group_events([event], states)
        states[(702, lst.id)] = grouped.state
        keys.append(grouped.key)
        told = rent
    assert len(set(keys)) == 3


def test_the_same_change_seen_again_by_another_subscription_keeps_its_key() -> None:
    """A change to the value the channel was told last is that change: same key."""
    lst = listing(price=Price(amount=450_000))
    drop = Event("sub-a", 702, lst, EventType.PRICE_DROP, old_price=Price(amount=500_000))
    (first,) = group_events([drop], {})
    later = Event("sub-b", 702, lst, EventType.PRICE_DROP, old_price=Price(amount=500_000))
    (again,) = group_events([later], {(702, lst.id): first.state})
    assert again.key == first.key


def test_an_unwanted_change_in_between_still_moves_the_sequence() -> None:
    """Drop to 2,350 (told), increase to 2,425 (nobody in the channel wants increases),
    drop to 2,350 again: the second drop is a new change with a new key."""
    sub = "deals"
    states: dict[tuple[int, str], ChannelState] = {}
    keys: list[str] = []
    for price, kind, wanted in (
        (2350.0, EventType.PRICE_DROP, True),
        (2425.0, EventType.PRICE_INCREASE, False),
        (2350.0, EventType.PRICE_DROP, True),
    ):
        lst = listing(price=Price(amount=price))
        (grouped,) = group_events([Event(sub, 702, lst, kind, wanted=wanted)], states)
        states[(702, lst.id)] = grouped.state
        if not grouped.silent:
            keys.append(grouped.key)
    assert len(keys) == len(set(keys)) == 2


def test_a_change_already_told_to_the_channel_is_a_duplicate() -> None:
    """The same change seen again through another subscription of the channel is marked
    a duplicate (no second message), whether or not its first row is still stored."""
    lst = listing(price=Price(amount=450_000))
    (first,) = group_events([Event("a", 702, lst, EventType.PRICE_DROP)], {})
    (again,) = group_events(
        [Event("b", 702, lst, EventType.PRICE_DROP)], {(702, lst.id): first.state}
    )
    assert not first.duplicate
    assert again.duplicate


def test_a_price_missing_from_one_answer_keeps_the_last_known_figure() -> None:
    """An answer without a price (an unreadable field dropped by normalization) records
    no "unknown" price: the last known figure stays, so a drop made meanwhile is seen."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 525_000, "active")}
    gap = detect([spec()], [listing(price=None)], prev)
    assert gap.events == []
    assert [m.last_price for m in gap.matches] in ([], [525_000])
    after = {("sub-a", "li_1"): state("sub-a", "li_1", 525_000, "active")}
    for m in gap.matches:
        after[(m.subscription, m.listing_id)] = m
    (event,) = detect([spec()], [listing()], after).events
    assert event.type is EventType.PRICE_DROP


def test_a_status_missing_from_one_answer_keeps_the_last_known_status() -> None:
    """An answer without a status keeps the last known one: the next real status change
    is still reported against it."""
    prev = {("sub-a", "li_1"): state("sub-a", "li_1", 500_000, "active")}
    gap = detect([spec()], [listing(status=None)], prev)
    assert gap.events == []
    assert gap.matches == []
    (event,) = detect([spec()], [listing(status="pending")], prev).events
    assert event.type is EventType.STATUS_CHANGE
