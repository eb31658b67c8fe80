"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` over aiohttp, and the
``listingbot healthcheck`` probe the container image runs.

``/healthz`` is liveness: 200 while the process's loops turn (the scheduler runs and
ticked recently, the delivery worker and the channel watcher are alive). It never looks
at upstream services, because restarting the process cannot fix them. ``/readyz`` is
readiness: every source polled successfully within 3x its interval, ChatKitty answers
and the outbox drains; a 503 names each failing check, and ``degraded`` names what runs
with a part held (a missing channel, a refused query, a rejected reload). ``/metrics`` is
the Prometheus text format.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from listingbot.app import App
from listingbot.config import OpsConfig, load_config, raw_key
from listingbot.errors import ConfigError, ListingBotError

DEFAULT_LISTEN = OpsConfig().listen


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class OpsServer:
    def __init__(self, app: App, listen: str) -> None:
        self.app = app
        self.host, self.port = split_listen(listen)
        self._runner: web.AppRunner | None = None

    def web_app(self) -> web.Application:
        web_app = web.Application()
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/metrics", self.metrics)
        return web_app

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address is taken or not ours to bind."""
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:  # an ephemeral port (tests): learn which one
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _request: web.Request) -> web.Response:
        alive, body = self.app.liveness()
        body.setdefault("uptime_s", 0.0)
        return web.json_response(body, status=200 if alive else 503)

    async def readyz(self, _request: web.Request) -> web.Response:
        try:
            ready, checks = await self.app.readiness()
        except ListingBotError as err:  # the state file closing under a shutdown, say
            ready, checks = False, {"state": {"ok": False, "error": str(err)}}
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        failing = [name for name, check in checks.items() if not check.get("ok")]
        if failing:
            body["failing"] = failing
        degraded = [name for name, check in checks.items() if check.get("degraded")]
        if degraded:
            body["degraded"] = degraded
        body["checks"] = checks
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        m = self.app.metrics
        m.declare_sources(list(self.app.pollers))
        if self.app.started:
            try:
                pending, oldest = await self.app.store.open_counts()
            except ListingBotError:
                pass  # closing: keep the last values
            else:
                m.outbox_depth.set(pending)
                age = 0.0 if oldest is None else (self.app.clock.now() - oldest).total_seconds()
                m.outbox_oldest_age.set(age)  # negative when the clock stepped back
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---------------------------------------------------------------------------- healthcheck


def listen_address(path: Path) -> str | None:
    """``ops.listen`` of the config file at ``path``.

    The full config is tried first. When it no longer validates (edited in place, and the
    running service rejected the reload and kept its old config), ``ops.listen`` alone is
    read from the YAML: a typo elsewhere must not make a healthy container "unhealthy"
    and get it restarted into the broken config. Raises ``ConfigError`` when neither works.
    """
    try:
        return load_config(path).ops.listen
    except ConfigError as err:
        full_error = err
    try:
        listen = raw_key(path, "ops", "listen", DEFAULT_LISTEN)
        return OpsConfig.model_validate({"listen": listen}).listen
    except (ConfigError, ValidationError):
        raise full_error from None


def probe_url(listen: str, endpoint: str) -> str:
    host, port = split_listen(listen)
    if host in ("0.0.0.0", ""):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/{endpoint}"


def healthcheck(path: Path, endpoint: str = "healthz", timeout_s: float = 5.0) -> int:
    """For the container's HEALTHCHECK: 0 when the endpoint answers 200, else 1.

    ``healthz`` (the default) is liveness, what a restart policy should act on;
    ``readyz`` is readiness.

    Never 2: Docker reserves that exit code for health checks.
    """
    try:
        listen = listen_address(path)
    except ConfigError as err:
        print(f"cannot find ops.listen: {err}")
        return 1
    if not listen:
        print("ops.listen is off: nothing to check")
        return 1
    url = probe_url(listen, endpoint)
    # No proxy: the probe is for this host, whatever HTTP_PROXY the container carries.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            print(response.read().decode("utf-8", "replace"))
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace")
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(f"{url}: HTTP {err.code} {body}")
        return 1
    except OSError as err:
        print(f"{url}: {getattr(err, 'reason', None) or err}")
        return 1
