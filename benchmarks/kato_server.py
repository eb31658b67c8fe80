"""A Kato account of any size, served from a process of its own, for scenarios 6 to 8.

``python -m benchmarks.kato_server RECORDS SEED`` renders the simulator's market (10,000
records at most: more are copies of those under new ids) into availability pages of 50,
byte for byte in the shape ``KatoSim`` serves (v2, today's PHP spellings for a share of
the records), serves them on a free loopback port with the client-credentials token
endpoint, and prints ``{"url": ...}``. Commands, one a line on stdin, each answered with
one JSON line once done: ``change N`` changes the text of N records (and, when N is half
the account or more, a third of them in price and a sixth in status); ``prepare N``
renders that change while still serving the pages before it, ``switch`` serves it from
the next request on (a poll that starts meanwhile waits for no rendering); ``requests``
reports how many availability pages were served, ``quit`` exits.

The real ``KatoSim`` renders and filters the whole market for every page it serves
(about half a second for 10,000 records), which would make the server, not listingbot,
the cost of a sweep; pages here are rendered once per market state.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from benchmarks.cycle import change_half, change_text
from listingbot.sim._http import start_app
from listingbot.sim.kato import DEFAULT_CLIENTS, TOKEN_PATH, php_shape, php_variant
from listingbot.sim.market import Market

PAGE_SIZE = 50
BASE_RECORDS = 10_000
COPY_ID_STEP = 10_000_000  # copies get ids far beyond the market's own
PHP_SHARE = 0.3


class RecordedKato:
    """The pages of one market state, and the token endpoint in front of them."""

    def __init__(
        self, records: int, seed: int, *, clients: Mapping[str, str] = DEFAULT_CLIENTS
    ) -> None:
        self.records = records
        self.clients = dict(clients)
        self.market = Market(seed, kotohomes_count=0, kato_count=min(records, BASE_RECORDS))
        self.seed = seed
        self.pages: list[bytes] = []
        self.prepared: list[bytes] = []
        self.tokens: set[str] = set()
        self.served = 0
        self.render()

    def render(self) -> None:
        base = self.market.kato_records()
        copies = -(-self.records // len(base)) if base else 0
        chunk: list[Any] = []
        pages: list[bytes] = []
        total_pages = max(1, -(-self.records // PAGE_SIZE))
        count = 0
        for copy in range(copies):
            for record in base:
                if count >= self.records:
                    break
                variant = php_variant(record, PHP_SHARE)
                shaped = php_shape(record, variant) if variant is not None else dict(record)
                if copy:
                    shaped["id"] = int(record["id"]) + copy * COPY_ID_STEP
                chunk.append(shaped)
                count += 1
                if len(chunk) == PAGE_SIZE:
                    pages.append(self._page(chunk, len(pages) + 1, total_pages))
                    chunk = []
        if chunk or not pages:
            pages.append(self._page(chunk, len(pages) + 1, total_pages))
        self.pages = pages

    def _page(self, chunk: list[Any], page: int, total_pages: int) -> bytes:
        first = (page - 1) * PAGE_SIZE + 1
        block = {
            "from": first if chunk else None,
            "to": first + len(chunk) - 1 if chunk else None,
            "total": self.records,
            "count": len(chunk),
            "per_page": PAGE_SIZE,
            "current_page": page,
            "total_pages": total_pages,
            "links": {"next": f"/v2/availability?page={page + 1}" if page < total_pages else None},
        }
        return json.dumps({"data": chunk, "meta": {"pagination": block}}).encode()

    def change(self, count: int) -> dict[str, int]:
        """Move the market: ``count`` records changed (see the module docstring)."""
        kinds = self.prepare(count)
        self.switch()
        return kinds

    def prepare(self, count: int) -> dict[str, int]:
        """Render the market after ``count`` changes, still serving the pages before."""
        serving = self.pages
        if count * 2 >= len(self.market.ids("kato")):
            kinds = change_half(self.market, self.seed)
        else:
            kinds = change_text(self.market, self.seed, count)
        self.render()
        self.prepared, self.pages = self.pages, serving
        return kinds

    def switch(self) -> None:
        """Serve what ``prepare`` rendered, from the next request on (no work to wait for)."""
        if self.prepared:
            self.pages, self.prepared = self.prepared, []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get("/v2/availability", self._list)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not isinstance(client_id, str) or self.clients.get(client_id) != client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        body = {"token_type": "Bearer", "expires_in": 14 * 86400, "access_token": token}
        return web.json_response(body)

    async def _list(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return web.json_response({"message": "Unauthenticated."}, status=401)
        if request.query.get("limit", str(PAGE_SIZE)) != str(PAGE_SIZE):
            return web.json_response({"message": f"this server serves {PAGE_SIZE}"}, status=422)
        page = int(request.query.get("page", "1"))
        if not 1 <= page <= len(self.pages):
            return web.json_response({"message": "no such page"}, status=422)
        self.served += 1
        return web.Response(body=self.pages[page - 1], content_type="application/json")


async def main(records: int, seed: int) -> None:
    server = RecordedKato(records, seed)
    runner, url = await start_app(server.app(), "127.0.0.1", 0)
    print(json.dumps({"url": url}), flush=True)
    stdin = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    try:
        while line := (await stdin.readline()).decode().split():
            if line[0] == "change":
                print(json.dumps(server.change(int(line[1]))), flush=True)
            elif line[0] == "prepare":
                print(json.dumps(server.prepare(int(line[1]))), flush=True)
            elif line[0] == "switch":
                server.switch()
                print(json.dumps({"switched": True}), flush=True)
            elif line[0] == "requests":
                print(json.dumps({"requests": server.served}), flush=True)
            else:
                break
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
