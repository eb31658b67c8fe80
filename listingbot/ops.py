"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` over aiohttp.

``/healthz`` answers from inside the event loop, so a 200 proves the loop is turning.
``/readyz`` reports freshness, not just "the port answers": every source must have
polled successfully within 3x its interval and the outbox must be draining.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from listingbot.app import App
from listingbot.config import Config


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
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port nowhere else
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _request: web.Request) -> web.Response:
        started = self.app.started_at
        uptime = 0.0 if started is None else (self.app.clock.now() - started).total_seconds()
        return web.json_response({"status": "ok", "uptime_s": round(uptime, 1)})

    async def readyz(self, _request: web.Request) -> web.Response:
        ready, checks = await self.app.readiness()
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        if self.app.store is not None:
            pending, oldest = await self.app.store.open_counts()
            self.app.metrics.outbox_depth.set(pending)
            age = 0.0 if oldest is None else (self.app.clock.now() - oldest).total_seconds()
            self.app.metrics.outbox_oldest_age.set(max(0.0, age))
        return web.Response(
            body=self.app.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def healthcheck(config: Config, endpoint: str = "readyz", timeout_s: float = 5.0) -> int:
    """For the container's HEALTHCHECK: 0 when the endpoint answers 200, else 1."""
    if not config.ops.listen:
        print("ops.listen is off: nothing to check")
        return 1
    host, port = split_listen(config.ops.listen)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    url = f"http://{host}:{port}/{endpoint}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            print(response.read().decode("utf-8", "replace"))
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace")
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(body)
        return 1
    except OSError as err:
        print(f"{url}: {err}")
        return 1
