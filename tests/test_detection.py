"""Change detection and grouping are pure: these pin the rules."""

from __future__ import annotations

from listingbot.detection import Event, Figure, Figures, detect, group_events
from listingbot.models import EventType, Listing, Price, PriceUnit
from listingbot.outbox import delivery_key
from listingbot.records import ChannelState, MatchState, Removal
from tests.factories import listing, spec


def state(sub: str, lst_id: str, price: float | None, status: str | None) -> MatchState:
    """What a subscription knows of a US listing for sale at ``price``."""
    sale = Figure(float(price), float(price), "USD", "total") if price is not None else None
    return MatchState(
        sub, "kotohomes", lst_id, price, status, Figures(sale, None, True, False).dump()
    )


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


def test_subscriptions_told_of_one_price_change_share_its_old_price() -> None:
    """200 subscriptions that knew the same price are each told of the drop with that old
    price, and the event of every one carries one and the same (frozen) old price: what
    detection holds for a change grows with the changes, not with who is told."""
    names = [f"sub-{i:03d}" for i in range(200)]
    prev = {(n, "li_1"): state(n, "li_1", 525_000, "active") for n in names}
    result = detect([spec(name=n) for n in names], [listing()], prev)
    assert [e.subscription for e in result.events] == names
    assert {e.old_price for e in result.events} == {Price(amount=525_000)}
    assert len({id(e.old_price) for e in result.events}) == 1


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


def gbp_office(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "source": "kato",
        "country": "GB",
        "for_sale": True,
        "to_let": True,
        "price": Price(amount=2_000_000, currency="GBP"),
        "rent": Price(amount=25, amount_max=27.5, currency="GBP", unit=PriceUnit.PER_SQFT),
    }
    fields.update(overrides)
    return fields


def known(lst: Listing, sub: str = "sub-a") -> dict[tuple[str, str], MatchState]:
    """What ``sub`` knows after being told of ``lst``."""
    (match,) = detect([spec(sub)], [lst], {}).matches
    return {(sub, lst.id): match}


def test_sale_price_and_rent_are_compared_apart() -> None:
    """A rent drop on a listing for sale and to let is a price drop of the rent."""
    before = known(listing(**gbp_office()))
    rent = Price(amount=23.75, amount_max=27.5, currency="GBP", unit=PriceUnit.PER_SQFT)
    (event,) = detect([spec()], [listing(**gbp_office(rent=rent))], before).events
    assert (event.type, event.figure) == (EventType.PRICE_DROP, "rent")
    assert event.old_price is not None
    assert (event.old_price.amount, event.old_price.amount_max) == (25, 27.5)


def test_a_figure_going_on_application_is_no_change() -> None:
    """A sale price that becomes "on application" makes no event; the rent is untouched."""
    before = known(listing(**gbp_office()))
    poa = Price(currency="GBP", on_application=True)
    result = detect([spec()], [listing(**gbp_office(price=poa))], before)
    assert result.events == []


def test_a_figure_back_from_on_application_is_compared_with_the_last_known_one() -> None:
    """£2,000,000, then on application, then £1,800,000: a drop from £2,000,000."""
    prev = known(listing(**gbp_office()))
    poa = detect([spec()], [listing(**gbp_office(price=Price(on_application=True)))], prev)
    after = {("sub-a", m.listing_id): m for m in poa.matches} or prev
    lower = listing(**gbp_office(price=Price(amount=1_800_000, currency="GBP")))
    (event,) = detect([spec()], [lower], after).events
    assert (event.type, event.figure) == (EventType.PRICE_DROP, "sale")
    assert event.old_price is not None
    assert event.old_price.amount == 2_000_000


def test_deal_type_change_is_its_own_event_and_not_a_price_change() -> None:
    """Sale $500,000 -> rent $2,500/mo is now_for_rent, and no price event."""
    before = known(listing())
    rent = Price(amount=2_500, currency="USD", unit=PriceUnit.PER_MONTH)
    changed = listing(for_sale=False, to_let=True, price=None, rent=rent)
    assert [e.type for e in detect([spec()], [changed], before).events] == [EventType.NOW_FOR_RENT]
    back = listing()
    after = {("sub-a", m.listing_id): m for m in detect([spec()], [changed], before).matches}
    assert [e.type for e in detect([spec()], [back], after).events] == [EventType.NOW_FOR_SALE]


def test_a_range_moves_as_a_range() -> None:
    """A range whose upper end alone rises is a price increase."""
    before = known(listing(**gbp_office()))
    rent = Price(amount=25, amount_max=30, currency="GBP", unit=PriceUnit.PER_SQFT)
    (event,) = detect([spec()], [listing(**gbp_office(rent=rent))], before).events
    assert (event.type, event.figure) == (EventType.PRICE_INCREASE, "rent")


def test_a_figure_in_another_unit_is_not_compared() -> None:
    """£25 per sq ft -> £100,000 a year is not a price change: no event."""
    before = known(listing(**gbp_office()))
    yearly = Price(amount=100_000, currency="GBP", unit=PriceUnit.PER_YEAR)
    assert detect([spec()], [listing(**gbp_office(rent=yearly))], before).events == []


def test_a_state_from_before_the_figures_were_apart_reads_as_the_asking_figure() -> None:
    """A match row with only last_price (written by an older version) is compared as the
    asking figure once, and rewritten with both figures."""
    prev = {("sub-a", "li_1"): MatchState("sub-a", "kotohomes", "li_1", 525_000, "active")}
    result = detect([spec()], [listing()], prev)
    assert [e.type for e in result.events] == [EventType.PRICE_DROP]
    assert Figures.load(result.matches[0].figures) == Figures.of(listing())


def test_changes_of_one_listing_in_one_poll_are_one_message() -> None:
    """A price drop and a status change of one listing for one channel group into one
    message led by the drop, naming both events, each subscription that wants one."""
    lst = listing(status="pending")
    events = [
        Event("sub-b", 702, lst, EventType.STATUS_CHANGE, old_status="active"),
        Event("sub-a", 702, lst, EventType.PRICE_DROP, old_price=Price(amount=525_000)),
    ]
    (grouped,) = group_events(events, {})
    assert grouped.type is EventType.PRICE_DROP
    assert grouped.events == (EventType.PRICE_DROP, EventType.STATUS_CHANGE)
    assert grouped.subscriptions == ("sub-a", "sub-b")


def test_new_stays_a_message_of_its_own() -> None:
    """`new` for one subscription and a change for another in the same channel are two
    messages: `new` keeps its once-per-channel key."""
    lst = listing()
    events = [
        Event("sub-a", 702, lst, EventType.NEW),
        Event("sub-b", 702, lst, EventType.PRICE_DROP, old_price=Price(amount=525_000)),
    ]
    grouped = group_events(events, {})
    assert [g.events for g in grouped] == [(EventType.NEW,), (EventType.PRICE_DROP,)]
    assert grouped[0].key == delivery_key(702, "kotohomes", "li_1", EventType.NEW)


def test_a_combined_message_has_the_same_key_when_the_poll_is_repeated() -> None:
    """The same changes against the same stored state (a poll repeated after a crash
    before its commit) give the same key; the single-change keys are not reused."""
    lst = listing(status="pending")
    events = [
        Event("a", 702, lst, EventType.PRICE_DROP, old_price=Price(amount=525_000)),
        Event("a", 702, lst, EventType.STATUS_CHANGE, old_status="active"),
    ]
    stored = {(702, "li_1"): ChannelState(702, "kotohomes", "li_1", price_seq=2, status_seq=4)}
    (first,) = group_events(events, stored)
    (again,) = group_events(list(reversed(events)), stored)
    assert first.key == again.key
    assert first.key not in {
        delivery_key(702, "kotohomes", "li_1", EventType.PRICE_DROP, 3),
        delivery_key(702, "kotohomes", "li_1", EventType.STATUS_CHANGE, 5),
    }


def test_a_change_already_told_is_left_out_of_a_combined_message() -> None:
    """A drop the channel was told of (through another subscription) is not told again
    when a new status change of the listing arrives with it: only the status is sent."""
    lst = listing(price=Price(amount=450_000), status="pending")
    (drop,) = group_events([Event("a", 702, lst, EventType.PRICE_DROP)], {})
    events = [
        Event("b", 702, lst, EventType.PRICE_DROP),
        Event("b", 702, lst, EventType.STATUS_CHANGE, old_status="active"),
    ]
    (later,) = group_events(events, {(702, lst.id): drop.state})
    assert later.events == (EventType.STATUS_CHANGE,)
    assert later.told_before == (drop.key,)
    assert not later.duplicate


def test_rent_and_sale_changes_have_different_keys() -> None:
    """The first sale price change and the first rent change are different deliveries."""
    sale = delivery_key(704, "kato", "7", EventType.PRICE_DROP, 1, "sale")
    assert sale == delivery_key(704, "kato", "7", EventType.PRICE_DROP, 1)
    assert sale != delivery_key(704, "kato", "7", EventType.PRICE_DROP, 1, "rent")


def removal(told: bool) -> dict[tuple[str, str], Removal]:
    when = "2026-01-01T00:00:00.000000Z"
    return {("sub-a", "li_1"): Removal("sub-a", "kotohomes", "li_1", when, told)}


def test_a_listing_back_after_its_removal_was_told_is_back_on_market() -> None:
    """Seen again after its removal was posted: `back_on_market`, keyed by that removal."""
    (event,) = detect([spec()], [listing()], {}, removed=removal(told=True)).events
    assert event.type is EventType.BACK_ON_MARKET
    (grouped,) = group_events([event], {})
    assert grouped.key == delivery_key(
        702, "kotohomes", "li_1", EventType.BACK_ON_MARKET, since=event.since
    )


def test_a_listing_back_before_its_removal_was_told_makes_no_event() -> None:
    """Back before anyone was told it went: it never left, as far as the channel knows."""
    result = detect([spec()], [listing()], {}, removed=removal(told=False))
    assert result.events == []
    assert len(result.matches) == 1


def test_back_on_market_falls_back_to_new_for_a_subscription_without_it() -> None:
    """A subscription that did not opt in to `back_on_market` hears of it as `new`."""
    sub = spec(notify=frozenset({EventType.NEW}))
    (event,) = detect([sub], [listing()], {}, removed=removal(told=True)).events
    assert event.type is EventType.NEW


def test_subscriptions_knowing_different_figures_of_one_listing_each_get_their_own() -> None:
    """Subscriptions that knew one listing at different figures (the same figures, others,
    an older version's lone figure, and nothing readable) each get the events and the
    rewritten state that their own knowledge gives, whatever the others held."""
    subs = [spec("sub-a"), spec("sub-b"), spec("sub-c"), spec("sub-d"), spec("sub-e")]
    prev = {
        ("sub-a", "li_1"): state("sub-a", "li_1", 525_000, "active"),
        ("sub-b", "li_1"): state("sub-b", "li_1", 525_000, "active"),
        ("sub-c", "li_1"): state("sub-c", "li_1", 450_000, "active"),
        ("sub-d", "li_1"): MatchState("sub-d", "kotohomes", "li_1", 500_000, "active"),
        ("sub-e", "li_1"): MatchState("sub-e", "kotohomes", "li_1", 600_000, "active", "{"),
    }
    result = detect(subs, [listing()], prev)
    assert [(e.subscription, e.type) for e in result.events] == [
        ("sub-a", EventType.PRICE_DROP),
        ("sub-b", EventType.PRICE_DROP),
        ("sub-c", EventType.PRICE_INCREASE),
        ("sub-e", EventType.PRICE_DROP),
    ]
    assert [e.old_price.amount for e in result.events if e.old_price] == [
        525_000,
        525_000,
        450_000,
        600_000,
    ]
    assert {m.subscription for m in result.matches} == {"sub-a", "sub-b", "sub-c", "sub-d", "sub-e"}
    assert {m.figures for m in result.matches} == {Figures.of(listing()).dump()}
