"""Health specs: the log-once / recovered policy and the readiness rules, on a fake clock,
without the App (polls are given as the PollOutcome a poller reports)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from structlog.testing import capture_logs

from listingbot.channels import Channels
from listingbot.clock import FakeClock
from listingbot.health import Health
from listingbot.metrics import Metrics
from listingbot.polling import PollOutcome
from listingbot.scheduler import Scheduler
from listingbot.store import OutboxHealth

INTERVAL_S = 60.0
EMPTY_OUTBOX = OutboxHealth(open=0, oldest_open=None, failed=0)


def started(clock: FakeClock) -> Health:
    health = Health(clock, Metrics())
    health.started_at = clock.now()
    health.track("kotohomes", INTERVAL_S, keep=None)
    return health


def reachable(clock: FakeClock) -> Channels:
    channels = Channels(Metrics())
    channels.reachable(clock.now())
    return channels


def ready(health: Health, clock: FakeClock) -> tuple[bool, dict[str, Any]]:
    return health.readiness(reachable(clock), EMPTY_OUTBOX, timedelta(minutes=30))


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def failed(error: str = "HTTP 500", **kwargs: Any) -> PollOutcome:
    return PollOutcome("kotohomes", ok=False, error=error, **kwargs)


def test_a_source_that_keeps_failing_is_logged_failing_once(clock: FakeClock) -> None:
    """Three failed polls in a row: one source_failing line, three poll_finished lines."""
    health = started(clock)
    with capture_logs() as logs:
        for _ in range(3):
            health.poll_finished(failed())
    assert len(events(logs, "source_failing")) == 1
    assert len(events(logs, "poll_finished")) == 3


def test_a_failing_source_that_succeeds_is_logged_recovered_once(clock: FakeClock) -> None:
    """The first good poll after failures says source_recovered; the next says nothing."""
    health = started(clock)
    health.poll_finished(failed())
    with capture_logs() as logs:
        health.poll_finished(PollOutcome("kotohomes"))
        health.poll_finished(PollOutcome("kotohomes"))
    assert len(events(logs, "source_recovered")) == 1
    assert not health.sources["kotohomes"].failing


def test_a_source_has_three_intervals_from_start_up_for_its_first_poll(clock: FakeClock) -> None:
    """Before its first poll a source is ready for 3x its interval, then not."""
    health = started(clock)
    clock.advance(3 * INTERVAL_S)
    ok, checks = ready(health, clock)
    assert ok
    assert checks["source:kotohomes"]["detail"] == "first poll pending"
    clock.advance(1)
    ok, checks = ready(health, clock)
    assert not ok
    assert "no successful poll" in checks["source:kotohomes"]["error"]


def test_a_failed_first_poll_is_not_ready_at_once_and_says_why(clock: FakeClock) -> None:
    """A source whose first poll failed is not ready, with the poll's error."""
    health = started(clock)
    health.poll_finished(failed("HTTP 503"))
    ok, checks = ready(health, clock)
    assert not ok
    assert checks["source:kotohomes"]["error"].endswith("last error: HTTP 503")


def test_one_failed_poll_after_a_success_stays_ready_within_the_window(clock: FakeClock) -> None:
    """Freshness counts from the last success: one failure inside 3x the interval is
    reported as failing but the source stays ready."""
    health = started(clock)
    health.poll_finished(PollOutcome("kotohomes"))
    clock.advance(INTERVAL_S)
    health.poll_finished(failed())
    ok, checks = ready(health, clock)
    assert ok
    assert checks["source:kotohomes"]["failing"] is True


def test_refused_credentials_stop_the_source_until_a_reload_tracks_it_again(
    clock: FakeClock,
) -> None:
    """A stop reason marks the source not ready with that reason (said once); tracking it
    again (a reload with new settings) lifts the stop but does not re-announce failing."""
    health = started(clock)
    health.poll_finished(PollOutcome("kotohomes"))
    with capture_logs() as logs:
        health.poll_finished(failed("HTTP 403", auth_failed=True), stop_reason="key refused")
    assert len(events(logs, "source_stopped")) == 1
    ok, checks = ready(health, clock)
    assert not ok
    assert checks["source:kotohomes"]["error"] == "key refused"
    health.track("kotohomes", INTERVAL_S, keep=health.sources["kotohomes"])
    assert health.sources["kotohomes"].stopped is None
    assert health.sources["kotohomes"].failing
    assert ready(health, clock)[0]


def test_a_refused_query_fails_its_subscription_once_and_recovers_on_a_good_poll(
    clock: FakeClock,
) -> None:
    """subscription_failing once while the query is refused; subscription_recovered when a
    good poll covers it without the refusal; readiness stays ready (degraded)."""
    health = started(clock)
    refused = PollOutcome("kotohomes", rejected={"ny": "HTTP 400: bad state"})
    names = {"ny", "ca"}
    with capture_logs() as logs:
        assert health.subscriptions_polled(refused, polled=names, configured=names)
        assert not health.subscriptions_polled(refused, polled=names, configured=names)
    assert len(events(logs, "subscription_failing")) == 1
    health.poll_finished(refused)
    ok, checks = ready(health, clock)
    assert ok
    assert checks["subscriptions"] == {
        "ok": True,
        "degraded": True,
        "failing": {"ny": "HTTP 400: bad state"},
    }
    with capture_logs() as logs:
        good = PollOutcome("kotohomes")
        assert health.subscriptions_polled(good, polled=names, configured=names)
    assert len(events(logs, "subscription_recovered")) == 1
    assert health.failing_subs == {}


def test_an_old_or_failed_outbox_message_makes_the_service_unready(clock: FakeClock) -> None:
    """The outbox check fails when the oldest open message is older than the limit or a
    message has failed, naming the commands that fix the latter."""
    health = started(clock)
    health.poll_finished(PollOutcome("kotohomes"))
    old = OutboxHealth(open=1, oldest_open=clock.now() - timedelta(minutes=31), failed=0)
    ok, checks = health.readiness(reachable(clock), old, timedelta(minutes=30))
    assert not ok
    assert "1860s old (limit 1800s)" in checks["outbox"]["error"]
    broken = OutboxHealth(open=0, oldest_open=None, failed=2)
    ok, checks = health.readiness(reachable(clock), broken, timedelta(minutes=30))
    assert not ok
    assert "outbox retry KEY" in checks["outbox"]["error"]


def test_a_rejected_reload_is_reported_degraded_not_unready(clock: FakeClock) -> None:
    """reload_refused keeps the service ready and names the error; reload_applied clears it."""
    health = started(clock)
    health.poll_finished(PollOutcome("kotohomes"))
    health.reload_refused("subscriptions[0].channel: required")
    ok, checks = ready(health, clock)
    assert ok
    assert checks["config"]["degraded"]
    assert "subscriptions[0].channel: required" in checks["config"]["error"]
    health.reload_applied()
    assert "config" not in ready(health, clock)[1]


def test_liveness_says_starting_until_the_scheduler_runs(clock: FakeClock) -> None:
    """Before the scheduler starts the process is alive ("starting"), never restarted."""
    health = started(clock)
    alive, body = health.liveness(Scheduler(clock))
    assert alive
    assert body["status"] == "starting"
