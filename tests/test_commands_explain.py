"""Specs for ``/listings explain``'s verdicts: local filters by the matcher, upstream ones
by each source's own judge (``Source.chat.judge``)."""

from __future__ import annotations

from listingbot.commands.explain import explain
from listingbot.commands.grammar import Subscribe, build_subscription, parse_command
from listingbot.config import Subscription
from tests.factories import listing


def sub(text: str) -> Subscription:
    cmd = parse_command(text)
    assert isinstance(cmd, Subscribe)
    return build_subscription(cmd, name="n", channel_id=7, first_run="baseline")


def verdicts(text: str, **fields: object) -> list[str]:
    return [v.text() for v in explain(sub(text), listing(**fields))]


def test_kotohomes_upstream_filters_are_judged_from_the_listings_fields() -> None:
    """A Kotohomes range, ZIP and search circle are judged from the listing's own price,
    postcode and position; each filter gets one verdict in the chat's words."""
    text = "/listings subscribe kotohomes lat=40.68 lon=-73.94 radius=5 price<=400k zip=11216"
    got = verdicts(text, postcode="11216", latitude=40.69, longitude=-73.95)
    assert got == [
        "zip=11216 pass (listing: 11216)",
        "price<=400000 FAIL (listing: 500000)",
        "lat=40.68 pass (listing: 40.6900,-73.9500)",
        "lon=-73.94 pass (listing: 40.6900,-73.9500)",
        "radius=5 pass (listing: 40.6900,-73.9500)",
    ]


def test_a_filter_only_kotohomes_can_judge_says_so() -> None:
    """A territory is Kotohomes' to decide: the verdict says so instead of guessing."""
    assert verdicts("/listings subscribe kotohomes territory=brooklyn") == [
        "territory=brooklyn decided by the source (listing: not given)"
    ]


def test_kato_status_is_judged_and_its_flags_are_left_to_kato() -> None:
    """Kato's status is judged from the listing's; published_to_website only Kato knows."""
    text = "/listings subscribe kato postcode=EC2 status=available published_to_website=true"
    got = verdicts(text, source="kato", status="under_offer", postcode="EC2A 4NE")
    assert "status=available FAIL (listing: under_offer)" in got
    assert "published_to_website=true decided by the source (listing: not given)" in got
