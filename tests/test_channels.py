"""Channel specs: where each subscription posts, which ones are held or unresolved and
why, and that each change is said once. Pure: ChatKitty's answer is given as a list."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from listingbot.channels import Channels, did_you_mean, match_channels
from listingbot.clients.chatkitty import Channel
from listingbot.clock import FakeClock
from listingbot.config import Subscription
from listingbot.metrics import Metrics

LISTING = [
    Channel(id=702, name="nyc-homes", display_name="NYC homes", type="PUBLIC"),
    Channel(id=704, name="uk-offices", display_name=None, type="PUBLIC"),
]


def sub(name: str, channel: int | str) -> Subscription:
    return Subscription.model_validate({"name": name, "source": "kato", "channel": channel})


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_before_chatkitty_answers_ids_are_taken_as_given_and_names_from_the_cache() -> None:
    """Without a listing: an id is its own destination, a name is looked up in what
    ChatKitty last resolved, and any other name is unresolved (not held)."""
    subs = [sub("by-id", 999), sub("cached", "uk-offices"), sub("new", "somewhere")]
    channels, held, unresolved = match_channels(subs, None, {"uk-offices": 704})
    assert channels == {"by-id": 999, "cached": 704}
    assert held == {}
    assert list(unresolved) == ["new"]


def test_with_a_listing_names_and_display_names_resolve_and_the_rest_are_held() -> None:
    """A name or display name finds its channel; a missing id or name holds the
    subscription with the reason (and a likely spelling)."""
    subs = [
        sub("name", "nyc-homes"),
        sub("display", "NYC homes"),
        sub("gone", 703),
        sub("typo", "uk-ofices"),
    ]
    channels, held, unresolved = match_channels(subs, LISTING, {})
    assert channels == {"name": 702, "display": 702}
    assert held == {
        "gone": "ChatKitty has no channel with id 703",
        "typo": "ChatKitty has no channel named 'uk-ofices' (did you mean 'uk-offices'?)",
    }
    assert unresolved == {}


def test_did_you_mean_ignores_case_and_a_leading_hash_then_tries_close_spellings() -> None:
    """'#NYC-Homes' means 'nyc-homes'; 'nyc-hoems' is close to it; 'paris' is near nothing."""
    names = ["nyc-homes", "uk-offices"]
    assert did_you_mean("#NYC-Homes", names) == "nyc-homes"
    assert did_you_mean("nyc-hoems", names) == "nyc-homes"
    assert did_you_mean("paris", names) is None


def test_a_held_subscription_is_said_once_and_resumed_once() -> None:
    """Applying the same hold twice logs subscription_held once; when its channel appears
    it logs subscription_resumed, and the held gauge follows."""
    metrics = Metrics()
    channels = Channels(metrics)
    subs = [sub("typo", "uk-ofices")]
    with capture_logs() as logs:
        channels.apply(match_channels(subs, LISTING, {}))
        channels.apply(match_channels(subs, LISTING, {}))
    assert len(events(logs, "subscription_held")) == 1
    assert metrics.registry.get_sample_value("listingbot_subscriptions_held") == 1
    fixed = [*LISTING, Channel(id=705, name="uk-ofices", display_name=None, type="PUBLIC")]
    with capture_logs() as logs:
        channels.apply(match_channels(subs, fixed, {}))
    assert len(events(logs, "subscription_resumed")) == 1
    assert channels.ids == {"typo": 705}
    assert metrics.registry.get_sample_value("listingbot_subscriptions_held") == 0


def test_a_reload_without_chatkitty_keeps_an_unchanged_subscription_held() -> None:
    """When ChatKitty cannot be asked during a reload, a subscription whose channel did
    not change stays held with its reason; one whose channel changed is resolved anew."""
    channels = Channels(Metrics())
    old = [sub("gone", 703), sub("moved", "nyc-homes")]
    channels.apply(match_channels(old, LISTING, {}))
    new = [sub("gone", 703), sub("moved", 704)]
    ids, held, unresolved = channels.for_reload(new, old, None)
    assert held == {"gone": "ChatKitty has no channel with id 703"}
    assert ids == {"moved": 704}
    assert unresolved == {}


def test_chatkitty_unreachable_is_said_once_and_holds_delivery_until_it_answers(
    clock: FakeClock,
) -> None:
    """Two failed checks log chatkitty_unreachable once; delivery waits until a check
    succeeds, which logs chatkitty_reachable."""
    channels = Channels(Metrics())
    assert not channels.deliverable  # never checked yet
    with capture_logs() as logs:
        channels.unreachable("HTTP 503", clock.now())
        channels.unreachable("HTTP 503", clock.now())
    assert len(events(logs, "chatkitty_unreachable")) == 1
    assert channels.check()["ok"] is False
    with capture_logs() as logs:
        channels.reachable(clock.now())
    assert len(events(logs, "chatkitty_reachable")) == 1
    assert channels.deliverable
    assert channels.check()["ok"] is True
