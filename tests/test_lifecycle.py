"""The service as ops runs it: `python -m listingbot.cli run` in a subprocess, against
simulators served from the test's event loop, driven by signals. Time is real here (the
process has its own clock), so intervals are short and every wait has a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listingbot.app import App
from listingbot.clock import SystemClock
from listingbot.records import OutboxRow
from listingbot.sim import SimStack
from listingbot.store import Store
from tests.harness import (
    SECRETS,
    LogCapture,
    config_text,
    load,
    make_sims,
    meta,
    write_config,
    zips,
)

GRACE_S = 2.0
DEADLINE_S = 15.0

ALL_HOMES = f"""\
- name: all-homes
  source: kotohomes
  channel: 702
  filters: {{states: [CA, FL, IL, MA, NJ, NY, TX, WA], zip_codes: {zips()}}}
  first_run: post
"""
NY_SUB = f"""\
- name: ny-homes
  source: kotohomes
  channel: 702
  filters: {{states: [NY], zip_codes: {zips("NY")}}}
"""
CA_SUB = f"""\
- name: ca-homes
  source: kotohomes
  channel: 703
  filters: {{states: [CA], zip_codes: {zips("CA")}}}
"""
UK_SUB = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_config(
    sims: SimStack,
    tmp_path: Path,
    subs: str,
    *,
    port: int,
    sources: tuple[str, ...] = ("kotohomes",),
    grace_s: float = GRACE_S,
) -> str:
    """Fast intervals, no jitter, JSON logs, the ops endpoint on ``port``."""
    text = config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=sources)
    text = text.replace("poll_interval: 5m\n", "poll_interval: 300ms\n    poll_jitter: 0s\n")
    text = text.replace(
        "poll_interval: 10m\n",
        "poll_interval: 300ms\n    poll_jitter: 0s\n    requests_per_minute: 6000\n",
    )
    return text.replace(
        "ops:\n  listen: null\n",
        f"ops:\n  listen: 127.0.0.1:{port}\n"
        f"delivery:\n  interval: 300ms\n  grace_period_s: {grace_s}\n"
        # a send cut off by shutdown is concluded "not sent" 2.5 s after its claim
        "  late_store_margin_s: 0.5\n"
        "log:\n  level: info\n  format: json\n",
    )


class Service:
    """One `listingbot run` process and what it logged (JSON lines, parsed)."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.config_path = config_path
        self.base = f"http://127.0.0.1:{port}"
        self.events: list[dict[str, Any]] = []
        self.output: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self.signalled_at: float | None = None

    async def start(self) -> None:
        env = {**os.environ, **SECRETS, "PYTHONUNBUFFERED": "1"}
        env.pop("LISTINGBOT_CONFIG", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "listingbot.cli",
            "run",
            "--config",
            str(self.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout)),
            asyncio.create_task(self._read(self.proc.stderr)),
        ]

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.output.append(text)
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append(event)

    def logged(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"service exited while waiting for {what}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.tail()}")
            await asyncio.sleep(0.02)

    async def until_logged(self, name: str, count: int = 1, **fields: Any) -> None:
        await self.until(lambda: len(self.logged(name, **fields)) >= count, f"{count}x {name}")

    async def readyz(self) -> int:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.base}/readyz") as response,
            ):
                return response.status
        except aiohttp.ClientConnectionError:
            return 0

    async def until_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while await self.readyz() != 200:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"service exited before it was ready: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in time: {self.tail()}")
            await asyncio.sleep(0.05)

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.signalled_at = time.monotonic()
        self.proc.send_signal(signum)

    async def exit_code(self, timeout_s: float = DEADLINE_S) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        """Teardown: make sure nothing outlives the test."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def tail(self) -> str:
        return "\n".join(self.output[-15:])


@pytest.fixture
async def sims() -> AsyncIterator[SimStack]:
    """Simulators on the real clock (the service under test runs in another process)."""
    async with make_sims(kato_rpm=6000) as stack:
        yield stack


@pytest.fixture
async def services() -> AsyncIterator[Callable[[Path, int], Service]]:
    """Makes services; kills any still running when the test ends, and checks that no
    secret reached their output."""
    made: list[Service] = []

    def make(config_path: Path, port: int) -> Service:
        service = Service(config_path, port)
        made.append(service)
        return service

    yield make
    for service in made:
        await service.kill()
    for service in made:
        text = "\n".join(service.output)
        for name, value in SECRETS.items():
            assert value not in text, f"{name} leaked into the service's output"


def outbox(state: Path) -> list[OutboxRow]:
    store = Store.open_sync(state, SystemClock().now)
    try:
        return store.all_rows_sync()
    finally:
        store.close_sync()


def listing_requests(sims: SimStack) -> int:
    return sum(1 for r in sims.kotohomes.requests if r.path == "/v1/listings")


# ------------------------------------------------------------------------------ SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_exits_0_within_the_grace_period_leaving_a_consistent_state_file(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service], signum: int
) -> None:
    """SIGTERM/SIGINT: exit 0 within the grace period; the state file is whole and settled."""
    port = free_port()
    path = write_config(tmp_path, service_config(sims, tmp_path, ALL_HOMES, port=port))
    service = services(path, port)
    await service.start()
    await service.until_ready()
    await service.until(lambda: len(sims.chatkitty.messages[702]) > 0, "messages")
    service.send(signum)
    assert await service.exit_code() == 0
    assert service.signalled_at is not None
    assert time.monotonic() - service.signalled_at < GRACE_S + 1.5
    assert service.logged("shutdown_requested", signal=signal.Signals(signum).name)
    assert service.logged("stopped")
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    rows = outbox(tmp_path / "state.sqlite3")
    assert rows
    assert not [r for r in rows if r.state == "sending"]  # every send in flight finished
    assert await service.readyz() == 0  # the ops endpoint is closed too


@pytest.mark.parametrize("grace_s", [GRACE_S, 0.0], ids=["sends-finish", "sends-cut-off"])
async def test_sigterm_mid_delivery_then_restart_sends_every_message_exactly_once(
    sims: SimStack,
    tmp_path: Path,
    services: Callable[[Path, int], Service],
    grace_s: float,
) -> None:
    """SIGTERM while a delivery pass is posting loses and duplicates nothing across a restart,
    whether the sends in flight finish in the grace period or are cut off mid-request."""
    port = free_port()
    text = service_config(sims, tmp_path, ALL_HOMES, port=port, grace_s=grace_s)
    path = write_config(tmp_path, text)
    sims.faults.enabled_for = {"chatkitty"}
    sims.faults.set(rate_slow=1.0, slow_s=0.05)
    first = services(path, port)
    await first.start()
    await first.until(lambda: len(sims.chatkitty.messages[702]) >= 5, "the first sends")
    first.send(signal.SIGTERM)
    assert await first.exit_code() == 0
    left = [r for r in outbox(tmp_path / "state.sqlite3") if r.state != "sent"]
    assert len(left) > 10, "SIGTERM should have landed in the middle of the pass"
    if grace_s:  # the send in flight had time to finish: nothing of unknown outcome
        assert {r.state for r in left} == {"pending"}

    sims.faults.clear()
    second = services(path, port)
    await second.start()
    await second.until(
        lambda: all(r.state == "sent" for r in outbox(tmp_path / "state.sqlite3")), "drained"
    )
    second.send(signal.SIGTERM)
    assert await second.exit_code() == 0

    rows = outbox(tmp_path / "state.sqlite3")
    posted = Counter(meta(m)["key"] for m in sims.chatkitty.messages[702])
    assert [key for key, n in posted.items() if n > 1] == []
    assert set(posted) == {r.message.key for r in rows}
    assert {r.state for r in rows} == {"sent"}
    assert len(rows) > 40


# ------------------------------------------------------------------------------ SIGHUP


async def test_sighup_with_a_broken_config_keeps_the_old_one_running(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """SIGHUP with an invalid file logs config_reload_rejected and keeps polling, still ready."""
    port = free_port()
    text = service_config(sims, tmp_path, NY_SUB, port=port)
    path = write_config(tmp_path, text)
    service = services(path, port)
    await service.start()
    await service.until_ready()
    path.write_text(text.replace("poll_interval: 300ms", "poll_interval: soon"))
    service.send(signal.SIGHUP)
    await service.until_logged("config_reload_rejected")
    (rejected,) = service.logged("config_reload_rejected")
    assert rejected["level"] == "error"
    assert "sources.kotohomes.poll_interval: invalid interval 'soon'" in rejected["error"]
    before = listing_requests(sims)
    await service.until(lambda: listing_requests(sims) >= before + 4, "two more polls")
    assert await service.readyz() == 200
    assert not service.logged("config_reloaded")
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0


async def test_sighup_with_a_valid_config_adds_a_subscription_without_a_restart(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """SIGHUP with a valid file that adds a subscription polls its query in the same process."""
    port = free_port()
    path = write_config(tmp_path, service_config(sims, tmp_path, NY_SUB, port=port))
    service = services(path, port)
    await service.start()
    await service.until_ready()

    def ca_polled() -> bool:
        return any(("states", "CA") in r.query for r in sims.kotohomes.requests)

    assert not ca_polled()
    path.write_text(service_config(sims, tmp_path, NY_SUB + CA_SUB, port=port))
    service.send(signal.SIGHUP)
    await service.until_logged("config_reloaded")
    (reloaded,) = service.logged("config_reloaded")
    assert reloaded["added"] == ["ca-homes"]
    assert reloaded["removed"] == []
    await service.until(ca_polled, "a poll of the new subscription's query")
    assert len(service.logged("started")) == 1
    assert await service.readyz() == 200
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0


# ------------------------------------------------------------------------------ logs


async def test_a_failing_source_is_logged_once_failing_and_once_recovered(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """A source failing for several polls logs source_failing once, then source_recovered once."""
    port = free_port()
    text = service_config(sims, tmp_path, UK_SUB, port=port, sources=("kato",))
    path = write_config(tmp_path, text)
    service = services(path, port)
    await service.start()
    await service.until_ready()
    clients = dict(sims.kato.clients)
    sims.kato.clients = {}  # Kato now refuses the credentials...
    sims.kato.expire_tokens()  # ...and the token in hand
    await service.until_logged("poll_finished", 3, source="kato", outcome="failed")
    sims.kato.clients = clients
    ok_before = len(service.logged("poll_finished", source="kato", outcome="ok"))
    await service.until_logged("poll_finished", ok_before + 3, source="kato", outcome="ok")
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0
    failing = service.logged("source_failing")
    recovered = service.logged("source_recovered")
    assert [(e["source"], e["level"]) for e in failing] == [("kato", "error")]
    assert [(e["source"], e["level"]) for e in recovered] == [("kato", "info")]
    assert "refused the client credentials" in failing[0]["error"]


async def test_every_poll_and_every_delivery_pass_logs_one_canonical_line(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """poll_finished lines match the polls the source saw; delivery_finished lines add up to
    the messages ChatKitty stored."""
    port = free_port()
    path = write_config(tmp_path, service_config(sims, tmp_path, ALL_HOMES, port=port))
    service = services(path, port)
    await service.start()
    await service.until_logged("poll_finished", 4)
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0
    polls = service.logged("poll_finished")
    # One query: two requests a poll, more while the first poll walks its 60 listings.
    assert sum(poll["requests"] for poll in polls) == listing_requests(sims)
    for poll in polls:
        assert poll["source"] == "kotohomes"
        assert poll["outcome"] == "ok"
        assert poll["requests"] >= 2
        assert {"queries", "listings", "events", "duration_s", "timestamp"} <= set(poll)
    passes = service.logged("delivery_finished")
    assert passes
    assert sum(p["sent"] for p in passes) == len(sims.chatkitty.messages[702]) > 0


def in_process_config(sims: SimStack, tmp_path: Path, subs: str, kotohomes_interval: str) -> str:
    text = service_config(sims, tmp_path, subs, port=0, sources=("kotohomes", "kato"))
    text = text.replace("  listen: 127.0.0.1:0\n", "  listen: null\n")
    # The first poll_interval is Kotohomes'.
    return text.replace("poll_interval: 300ms\n", f"poll_interval: {kotohomes_interval}\n", 1)


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.usefixtures("no_secret_leaks")
async def test_reload_swaps_subscriptions_and_reschedules_only_the_changed_source(
    sims: SimStack, tmp_path: Path, logs: LogCapture
) -> None:
    """A reload that swaps a source's subscriptions and interval polls the new query at once
    (and never the removed one) on the new schedule; the untouched source keeps its client."""
    before = in_process_config(sims, tmp_path, NY_SUB + UK_SUB, kotohomes_interval="1h")
    app = App(load(tmp_path, before))
    await app.start()
    polls: Counter[str] = Counter()
    app.on_poll.append(lambda outcome: polls.update([outcome.source]))
    stop = asyncio.Event()
    runner = asyncio.create_task(app.run(stop))
    try:
        await wait_for(lambda: polls["kotohomes"] == 1 and polls["kato"] >= 1, "first polls")
        kato_polls = polls["kato"]
        await wait_for(lambda: polls["kato"] > kato_polls, "the first Kotohomes job to end")
        tokens, seen = sims.kato.tokens_issued, len(sims.kotohomes.requests)
        after = in_process_config(sims, tmp_path, CA_SUB + UK_SUB, kotohomes_interval="2h")
        await app.reload(load(tmp_path, after))
        await wait_for(lambda: polls["kotohomes"] == 2, "a poll of the new query")
        kato_polls = polls["kato"]
        await wait_for(lambda: polls["kato"] >= kato_polls + 2, "Kato polls after the reload")
        assert app.scheduler is not None
        job = app.scheduler.get_job("poll-kotohomes")
        assert job.trigger.interval == timedelta(hours=2)
    finally:
        stop.set()
        await asyncio.wait_for(runner, DEADLINE_S)
    new_requests = sims.kotohomes.requests[seen:]
    assert [q for r in new_requests for q in r.query if q[0] == "states"] == [
        ("states", "CA"),
        ("states", "CA"),
    ]
    assert sims.kato.tokens_issued == tokens  # Kato kept its client (and its token)
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    (reloaded,) = [e for e in events if e["event"] == "config_reloaded"]
    assert reloaded["added"] == ["ca-homes"]
    assert reloaded["removed"] == ["ny-homes"]
    assert reloaded["sources_changed"] == ["kotohomes"]
