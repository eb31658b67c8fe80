"""One failing part never stops the rest, as ops runs it: `listingbot run` in a subprocess
against simulators served from the test's event loop (real time, short intervals, every
wait with a deadline). ChatKitty unreachable at start-up, a source outage, a rejected
reload."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from listingbot.sim import SimStack
from listingbot.sim._http import start_app
from tests.harness import meta, write_config
from tests.test_lifecycle import (
    ALL_HOMES,
    UK_SUB,
    Service,
    free_port,
    service_config,
    services,
    sims,
)

__all__ = ["services", "sims"]  # fixtures

DEADLINE_S = 30.0


async def get(url: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def until_answer(
    url: str, condition: Callable[[int, dict[str, Any]], bool], what: str, service: Service
) -> dict[str, Any]:
    """Poll ``url`` until its JSON answer satisfies ``condition``; that answer."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, text = await get(url)
        body = json.loads(text) if text else {}
        if status and condition(status, body):
            return body
        assert service.proc is not None
        assert service.proc.returncode is None, f"service exited: {service.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status} {body}"
        await asyncio.sleep(0.05)


def metric(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


async def test_chatkitty_down_at_start_up_polls_and_queues_then_delivers_each_once(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """`run` starts while ChatKitty refuses connections: it polls and queues, readiness says
    `chatkitty: unreachable since …`; once ChatKitty is up every queued message is
    delivered exactly once; SIGTERM then exits 0."""
    chatkitty_port, port = free_port(), free_port()
    text = service_config(sims, tmp_path, ALL_HOMES, port=port)
    text = text.replace(sims.chatkitty_url, f"http://127.0.0.1:{chatkitty_port}")
    service = services(write_config(tmp_path, text), port)
    await service.start()
    runner = None
    try:
        body = await until_answer(
            f"{service.base}/readyz",
            lambda status, b: status == 503 and "chatkitty" in b.get("failing", []),
            "readiness to name ChatKitty",
            service,
        )
        assert body["checks"]["chatkitty"]["error"].startswith("unreachable since ")
        await service.until(
            lambda: any(e["queued"] > 0 for e in service.logged("poll_finished")), "a queue"
        )
        polls = len(service.logged("poll_finished"))
        await service.until(
            lambda: len(service.logged("poll_finished")) >= polls + 2, "polls to go on"
        )
        queued = sum(e["queued"] for e in service.logged("poll_finished"))
        assert sims.chatkitty.all_messages() == []
        runner, _url = await start_app(sims.chatkitty.app(), "127.0.0.1", chatkitty_port)
        await service.until(lambda: bool(service.logged("chatkitty_reachable")), "recovery")
        await until_answer(
            f"{service.base}/readyz",
            lambda status, b: status == 200 and b["checks"]["outbox"]["pending"] == 0,
            "the outbox to drain",
            service,
        )
        service.send(signal.SIGTERM)
        assert await service.exit_code() == 0
    finally:
        if runner is not None:
            await runner.cleanup()
    keys = [meta(m)["key"] for m in sims.chatkitty.all_messages()]
    assert len(keys) >= queued > 0
    assert len(keys) == len(set(keys))  # each delivered once
    assert len(service.logged("chatkitty_unreachable")) == 1


async def test_a_source_outage_keeps_liveness_200_while_readiness_goes_503(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """Kato answering 500s for longer than 3x its interval: /readyz goes 503 naming Kato,
    /healthz (and `listingbot healthcheck`) stay 200: restarting would not help."""
    port = free_port()
    text = service_config(
        sims, tmp_path, ALL_HOMES + UK_SUB, port=port, sources=("kotohomes", "kato")
    )
    service = services(write_config(tmp_path, text), port)
    await service.start()
    await service.until_ready()
    sims.faults.enabled_for = {"kato"}
    sims.faults.set(rate_500=1.0)
    body = await until_answer(
        f"{service.base}/readyz",
        lambda status, b: (
            status == 503
            and b.get("failing") == ["source:kato"]
            and "HTTP 500" in b["checks"]["source:kato"]["error"]
        ),
        "readiness to name Kato and its 500s",
        service,
    )
    assert body["checks"]["source:kotohomes"]["ok"] is True
    status, health = await get(f"{service.base}/healthz")
    assert status == 200, health
    assert json.loads(health)["status"] == "ok"
    probe = await asyncio.create_subprocess_exec(
        *_cli("healthcheck", "--config", str(service.config_path)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    ready_probe = await asyncio.create_subprocess_exec(
        *_cli("healthcheck", "--ready", "--config", str(service.config_path)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(probe.wait(), DEADLINE_S) == 0
    assert await asyncio.wait_for(ready_probe.wait(), DEADLINE_S) == 1
    sims.faults.clear()
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0


async def test_a_rejected_reload_shows_in_readiness_and_a_metric(
    sims: SimStack, tmp_path: Path, services: Callable[[Path, int], Service]
) -> None:
    """SIGHUP with a broken file: the old config keeps running, /readyz stays 200 and names
    the rejected reload, and listingbot_config_last_reload_ok drops to 0."""
    port = free_port()
    path = write_config(tmp_path, service_config(sims, tmp_path, ALL_HOMES, port=port))
    service = services(path, port)
    await service.start()
    await service.until_ready()
    good = path.read_text()
    path.write_text(good.replace("poll_interval: 300ms", "poll_interval: soon", 1))
    service.send(signal.SIGHUP)
    body = await until_answer(
        f"{service.base}/readyz",
        lambda status, b: "config" in b.get("degraded", []),
        "the rejected reload in readiness",
        service,
    )
    assert body["status"] == "ready"
    assert body["checks"]["config"]["error"].startswith("reload rejected at ")
    assert "poll_interval" in body["checks"]["config"]["error"]
    _, text = await get(f"{service.base}/metrics")
    assert metric(text, "listingbot_config_last_reload_ok") == 0.0
    assert metric(text, "listingbot_config_reloads_total") is not None
    path.write_text(good)
    service.send(signal.SIGHUP)
    await until_answer(
        f"{service.base}/readyz",
        lambda status, b: status == 200 and "config" not in b.get("degraded", []),
        "a good reload to clear it",
        service,
    )
    service.send(signal.SIGTERM)
    assert await service.exit_code() == 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "listingbot.cli", *args]
