"""The operations surface in process: the real app and its ops endpoint on loopback, against
the simulators, on a fake clock. What /healthz, /readyz and /metrics answer, in healthy and
failing states; the canonical log lines; and the `listingbot healthcheck` probe."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from listingbot import cli
from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.ops import OpsServer
from listingbot.sim import SimStack
from tests.harness import SECRETS, LogCapture, config_text, load, running, write_config, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY_SUB = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
"""
NY_POST_SUB = NY_SUB + "  first_run: post\n"
UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
  first_run: post
"""
# Kotohomes polls every 5m (readiness limit 15m), Kato every 10m (limit 30m).
KOTOHOMES_STALE_S = 16 * 60


def cfg(
    sims: SimStack,
    tmp_path: Path,
    subs: str = NY_SUB + UK_SUB,
    *,
    ops: str = "  listen: null\n",
    **kw: Any,
) -> str:
    text = config_text(sims, subs, state_path=tmp_path / "state.sqlite3", **kw)
    return text.replace("ops:\n  listen: null\n", "ops:\n" + ops)


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[str]:
    """The app's ops endpoint on a free loopback port; yields its base URL."""
    server = OpsServer(app, "127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    status, text = await get(url)
    body = json.loads(text)
    assert isinstance(body, dict)
    return status, body


def fail_kotohomes(sims: SimStack) -> None:
    sims.faults.enabled_for = {"kotohomes"}
    sims.faults.set(rate_500=1.0)


# ------------------------------------------------------------------------------ /healthz


async def test_healthz_answers_200_with_uptime(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """/healthz answers 200 from the event loop, with the uptime."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        clock.advance(42)
        status, body = await get_json(f"{base}/healthz")
    assert status == 200
    assert body == {"status": "starting", "uptime_s": 42.0}  # started, not yet run()


# ------------------------------------------------------------------------------ /readyz


async def test_readyz_is_200_when_sources_are_fresh_and_the_outbox_drains(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """/readyz answers 200 with every check ok after a good cycle."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        assert await app.once()
        status, body = await get_json(f"{base}/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"source:kotohomes", "source:kato", "chatkitty", "outbox"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_readyz_stays_200_through_one_failed_poll_within_the_freshness_window(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """One failed poll does not flip readiness while the last success is within 3x the interval."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        assert await app.once()
        fail_kotohomes(sims)
        assert not await app.once()
        status, body = await get_json(f"{base}/readyz")
    assert status == 200
    assert body["checks"]["source:kotohomes"]["failing"] is True


async def test_readyz_is_503_naming_a_source_that_answers_500s(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A source answering 500s for longer than 3x its interval makes /readyz 503 naming it."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        assert await app.once()
        fail_kotohomes(sims)
        clock.advance(KOTOHOMES_STALE_S)
        assert not await app.once()
        status, body = await get_json(f"{base}/readyz")
    assert status == 503
    assert body["status"] == "not ready"
    assert body["failing"] == ["source:kotohomes"]
    error = body["checks"]["source:kotohomes"]["error"]
    assert error.startswith("no successful poll for ")
    assert "(limit 900s = 3x the poll interval); last error: kotohomes: GET " in error
    assert "HTTP 500" in error
    assert body["checks"]["source:kato"]["ok"] is True


async def test_readyz_returns_to_200_when_the_failing_source_recovers(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """After the 500s stop, the next successful poll flips /readyz back to 200."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        assert await app.once()
        fail_kotohomes(sims)
        clock.advance(KOTOHOMES_STALE_S)
        await app.once()
        assert (await get(f"{base}/readyz"))[0] == 503
        sims.faults.clear()
        assert await app.once()
        status, body = await get_json(f"{base}/readyz")
    assert status == 200
    assert body["checks"]["source:kotohomes"]["failing"] is False


async def test_readyz_is_503_when_the_oldest_undelivered_message_is_too_old(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Messages stuck longer than ops.max_outbox_age make /readyz 503 naming the outbox."""
    text = cfg(
        sims,
        tmp_path,
        NY_POST_SUB,
        sources=("kotohomes",),
        ops="  listen: null\n  max_outbox_age: 60s\n",
    )
    async with running(load(tmp_path, text), clock) as app, serving(app) as base:
        sims.faults.enabled_for = {"chatkitty"}
        sims.faults.set(rate_429=1.0)
        assert not await app.once()
        assert (await get(f"{base}/readyz"))[0] == 200  # queued just now: young enough
        clock.advance(61)
        status, body = await get_json(f"{base}/readyz")
    assert status == 503
    assert body["failing"] == ["outbox"]
    outbox = body["checks"]["outbox"]
    assert outbox["pending"] > 0
    assert outbox["oldest_age_s"] > 60  # (the client's retries moved the fake clock too)
    assert outbox["error"].startswith("oldest undelivered message is ")
    assert outbox["error"].endswith("s old (limit 60s)")


async def test_readyz_is_503_once_shutdown_begins(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """From the moment shutdown starts, /readyz says so (and /healthz still answers)."""
    config = load(tmp_path, cfg(sims, tmp_path))
    app = App(config, clock=clock)
    await app.start()
    async with serving(app) as base:
        assert await app.once()
        await app.shutdown()
        status, body = await get_json(f"{base}/readyz")
        health, _ = await get(f"{base}/healthz")
    assert status == 503
    assert body["checks"] == {"lifecycle": {"ok": False, "error": "shutting down"}}
    assert health == 200


# ------------------------------------------------------------------------------ /metrics


async def busy_cycles(sims: SimStack, tmp_path: Path, clock: FakeClock) -> str:
    """A few cycles with messages, retries, a failing poll and a token expiry; /metrics text."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app, serving(app) as base:
        assert await app.once()
        sims.market.add_kotohomes(state="NY")
        sims.market.add_kato()
        sims.kato.expire_tokens()
        sims.chatkitty.expire_tokens()
        fail_kotohomes(sims)
        await app.once()
        sims.faults.clear()
        sims.faults.enabled_for = {"kato", "chatkitty"}
        sims.faults.set(rate_503=0.3)
        clock.advance(600)
        await app.once()
        sims.faults.clear()
        clock.advance(600)
        assert await app.once()
        status, text = await get(f"{base}/metrics")
    assert status == 200
    return text


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values of one counter/gauge (by sample name), keyed by sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def upstream_by_status(text: str, api: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for labels, value in samples(text, "listingbot_upstream_requests_total").items():
        label = dict(labels)
        if label["api"] == api and value:
            counts[label["status"]] = int(value)
    return counts


async def test_metrics_upstream_requests_match_what_each_simulator_saw(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Upstream requests by API and status code equal the requests each simulator logged."""
    text = await busy_cycles(sims, tmp_path, clock)
    for api, sim in (
        ("kotohomes", sims.kotohomes),
        ("kato", sims.kato),
        ("chatkitty", sims.chatkitty),
    ):
        seen = Counter("error" if r.status is None else str(r.status) for r in sim.requests)
        assert upstream_by_status(text, api) == seen, api
    assert upstream_by_status(text, "kotohomes")["500"] > 0
    assert upstream_by_status(text, "kato")["401"] == 1  # the expired token, replayed once


async def test_metrics_token_fetches_match_tokens_issued(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Token fetches by API equal the tokens each simulator issued."""
    text = await busy_cycles(sims, tmp_path, clock)
    fetches = {
        dict(k)["api"]: v for k, v in samples(text, "listingbot_token_fetches_total").items()
    }
    assert fetches == {"kato": sims.kato.tokens_issued, "chatkitty": sims.chatkitty.tokens_issued}
    assert sims.kato.tokens_issued == 2


async def test_metrics_messages_sent_match_the_messages_in_chatkitty(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Messages sent equals the messages ChatKitty stored."""
    text = await busy_cycles(sims, tmp_path, clock)
    stored = sum(len(channel) for channel in sims.chatkitty.messages.values())
    assert stored > 0
    assert samples(text, "listingbot_messages_sent_total") == {(): stored}


async def test_metrics_polls_count_each_poll_by_source_and_outcome(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Polls by source and outcome: four cycles, one Kotohomes poll failed."""
    text = await busy_cycles(sims, tmp_path, clock)
    polls = {
        (dict(k)["source"], dict(k)["outcome"]): v
        for k, v in samples(text, "listingbot_polls_total").items()
    }
    assert polls == {
        ("kotohomes", "ok"): 3,
        ("kotohomes", "failed"): 1,
        ("kato", "ok"): 4,
        ("kato", "failed"): 0,
    }


async def test_metrics_export_every_family_ops_needs(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """Every metric the operations issue lists is exported, in the Prometheus text format."""
    text = await busy_cycles(sims, tmp_path, clock)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert (
        families
        | {
            "listingbot_polls": "counter",
            "listingbot_upstream_requests": "counter",
            "listingbot_poll_duration_seconds": "histogram",
            "listingbot_listings_seen": "counter",
            "listingbot_events": "counter",
            "listingbot_messages_sent": "counter",
            "listingbot_messages_retried": "counter",
            "listingbot_messages_failed": "counter",
            "listingbot_outbox_depth": "gauge",
            "listingbot_outbox_oldest_pending_age_seconds": "gauge",
            "listingbot_token_fetches": "counter",
            "listingbot_rate_limit_wait_seconds": "counter",
            "listingbot_records_skipped": "counter",
            "listingbot_source_up": "gauge",
            "listingbot_source_last_success_timestamp_seconds": "gauge",
            "listingbot_build_info": "gauge",
        }
        == families
    )


async def test_metric_labels_carry_no_secret_listing_id_or_url(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """No label value is a secret, a listing id or a URL (labels stay bounded)."""
    text = await busy_cycles(sims, tmp_path, clock)
    ids = {str(i) for i in sims.market.ids("kotohomes") + sims.market.ids("kato")}
    values = {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert values
    for value in values:
        assert not any(secret in value for secret in SECRETS.values()), value
        assert value not in ids, value
        assert "/" not in value, value
    assert not any(secret in text for secret in SECRETS.values())


# ------------------------------------------------------------------------------ log lines


async def test_one_poll_finished_line_per_poll_and_one_delivery_finished_per_pass(
    sims: SimStack, tmp_path: Path, clock: FakeClock, logs: LogCapture
) -> None:
    """Each poll logs one poll_finished and each delivery pass one delivery_finished, with
    the fields ops reads."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        assert await app.once()
        assert await app.once()
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    polls = [e for e in events if e["event"] == "poll_finished"]
    passes = [e for e in events if e["event"] == "delivery_finished"]
    assert [p["source"] for p in polls] == ["kotohomes", "kato", "kotohomes", "kato"]
    for poll in polls:
        assert {"queries", "requests", "listings", "events", "duration_s"} <= set(poll)
        assert poll["outcome"] == "ok"
        assert poll["level"] == "info"
    assert polls[0]["requests"] == 2  # one Kotohomes query: newest by creation + by update
    assert len(passes) == 2
    for delivery in passes:
        assert {"sent", "retried", "failed", "pending", "channels", "duration_s"} <= set(delivery)
    stored = sum(len(channel) for channel in sims.chatkitty.messages.values())
    assert sum(p["sent"] for p in passes) == stored > 0


# ------------------------------------------------------------------------------ healthcheck


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe_config(sims: SimStack, tmp_path: Path, port: int) -> Path:
    text = cfg(sims, tmp_path, ops=f"  listen: 127.0.0.1:{port}\n")
    return write_config(tmp_path, text, name="probe.yaml")


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the config interpolates, as a container would have them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


async def healthcheck(path: Path, *args: str) -> int:
    # In a thread: the probe blocks, and the endpoint it probes runs on this event loop.
    return await asyncio.to_thread(cli.main, ["healthcheck", *args, "--config", str(path)])


@pytest.mark.usefixtures("secrets_env")
async def test_healthcheck_entry_point_exits_0_against_a_ready_service(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """`listingbot healthcheck --ready` exits 0 while ready."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        assert await app.once()
        server = OpsServer(app, "127.0.0.1:0")
        await server.start()
        try:
            path = probe_config(sims, tmp_path, server.port)
            probe = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "listingbot.cli",
                "healthcheck",
                "--ready",
                "--config",
                str(path),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(probe.communicate(), timeout=30)
        finally:
            await server.stop()
    assert probe.returncode == 0
    assert json.loads(out)["status"] == "ready"


@pytest.mark.usefixtures("secrets_env")
async def test_healthcheck_exits_1_against_a_503(
    sims: SimStack, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`listingbot healthcheck --ready` exits 1 and prints the failing check when /readyz is
    503, while the liveness probe (`listingbot healthcheck`) still exits 0."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        assert await app.once()
        fail_kotohomes(sims)
        clock.advance(KOTOHOMES_STALE_S)
        await app.once()
        server = OpsServer(app, "127.0.0.1:0")
        await server.start()
        try:
            code = await healthcheck(probe_config(sims, tmp_path, server.port), "--ready")
            alive = await healthcheck(probe_config(sims, tmp_path, server.port))
        finally:
            await server.stop()
    assert code == 1
    assert alive == 0
    assert '"source:kotohomes"' in capsys.readouterr().out


@pytest.mark.usefixtures("secrets_env")
async def test_healthcheck_exits_1_when_nothing_listens(
    sims: SimStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`listingbot healthcheck` exits 1 when the port is closed."""
    code = await healthcheck(probe_config(sims, tmp_path, free_port()))
    assert code == 1
    assert "Connection refused" in capsys.readouterr().out


async def test_healthcheck_still_finds_the_endpoint_after_the_config_file_broke(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """A config edited into an invalid state (the service kept its old one) still yields
    ops.listen, so a healthy container is not reported unhealthy."""
    async with running(load(tmp_path, cfg(sims, tmp_path)), clock) as app:
        assert await app.once()
        server = OpsServer(app, "127.0.0.1:0")
        await server.start()
        try:
            path = probe_config(sims, tmp_path, server.port)
            path.write_text(path.read_text().replace("poll_interval: 5m", "poll_interval: soon"))
            # No secrets in the environment either: the full config cannot load.
            code = await healthcheck(path)
        finally:
            await server.stop()
    assert code == 0
