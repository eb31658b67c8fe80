"""Specification of digests (listingbot.digests): one message standing for a burst."""

from __future__ import annotations

from listingbot.digests import DigestItem, build_digest, digest_key
from listingbot.messages import MESSAGE_MAX_CHARS, item_line, message_fields
from listingbot.models import EventType, Price
from tests.factories import listing


def item(n: int, event: str = "new", subscriptions: tuple[str, ...] = ("sub-a",)) -> DigestItem:
    home = listing(f"li_{n}", address=f"{n} Main St, Albany, NY 12207")
    fields = message_fields(home, EventType(event), subscriptions, old_price=Price(amount=600_000))
    return DigestItem(
        key=f"k{n}",
        source="kotohomes",
        listing_id=home.id,
        event=event,
        subscriptions=subscriptions,
        line=item_line(event, fields),
    )


def test_digest_counts_events_lists_listings_and_says_how_many_more() -> None:
    """Headline with the count and labels, counts by event, the top listings, the rest counted."""
    items = [item(i) for i in range(9)] + [item(i, "price_drop") for i in range(9, 12)]
    digest = build_digest(702, items, reason="burst", labels=["Albany homes"])
    lines = digest.body.split("\n")
    assert lines[0] == "🗞 12 updates · Albany homes"
    assert lines[1] == "9 new · 3 price drops"
    assert lines[2] == "• 🏠 0 Main St, Albany, NY 12207 · $500,000 · https://example.com/li_0"
    assert len(lines) == 2 + 8 + 1
    assert lines[-1] == "… and 4 more"


def test_every_event_is_counted_in_words() -> None:
    """Each event of the change model has its own words in the counts line."""
    events = ["now_for_rent", "now_for_sale", "removed", "back_on_market", "removed"]
    items = [item(i, event) for i, event in enumerate(events)]
    counts = build_digest(702, items, reason="burst", labels=[]).body.split("\n")[1]
    assert counts == ("2 no longer listed · 1 back on the market · 1 now for rent · 1 now for sale")


def test_a_price_drop_line_shows_the_change() -> None:
    """A listing's line says what changed."""
    line = item(1, "price_drop").line
    assert line == (
        "📉 1 Main St, Albany, NY 12207 · $600,000 \u2192 $500,000 (\u221216.7%)"
        " · https://example.com/li_1"
    )


def test_digest_properties_list_every_item() -> None:
    """properties.listingbot.items names each covered message, the hidden ones too."""
    items = [item(i, subscriptions=("a", "b")) for i in range(15)]
    meta = build_digest(702, items, reason="burst", labels=[]).properties["listingbot"]
    assert meta["event"] == "digest"
    assert meta["subscriptions"] == ["a", "b"]
    assert meta["count"] == 15
    assert meta["events"] == {"new": 15}
    assert [i["key"] for i in meta["items"]] == [f"k{i}" for i in range(15)]
    assert meta["items"][0] == {
        "source": "kotohomes",
        "listing_id": "li_0",
        "event": "new",
        "subscriptions": ["a", "b"],
        "key": "k0",
    }


def test_digest_key_is_the_same_for_the_same_messages() -> None:
    """Same channel and covered keys, in any order, give the same key; anything else not."""
    assert digest_key(702, ["a", "b"]) == digest_key(702, ["b", "a"])
    assert digest_key(702, ["a", "b"]) != digest_key(703, ["a", "b"])
    assert digest_key(702, ["a", "b"]) != digest_key(702, ["a", "b", "c"])


def test_digest_fits_the_message_cap() -> None:
    """Long lines make the digest name fewer listings, never exceed the cap."""
    long = [
        DigestItem(f"k{i}", "kato", str(i), "new", ("s",), "x" * 230 + f" {i}") for i in range(8)
    ]
    digest = build_digest(702, long, reason="burst", labels=[])
    assert len(digest.body) <= MESSAGE_MAX_CHARS
    assert digest.body.endswith("more")


def test_quiet_hours_digest_says_so() -> None:
    """The digest released after quiet hours has its own headline."""
    digest = build_digest(702, [item(1), item(2)], reason="quiet_hours", labels=["Albany"])
    assert digest.body.split("\n")[0] == "🌙 While it was quiet · 2 updates · Albany"
    assert digest.properties["listingbot"]["reason"] == "quiet_hours"


def test_labels_in_a_digest_are_sanitized() -> None:
    """A label cannot carry a mention into the digest headline."""
    digest = build_digest(702, [item(1), item(2)], reason="burst", labels=["<@all>"])
    assert "<@" not in digest.body
