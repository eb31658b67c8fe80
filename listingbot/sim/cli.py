"""``listingbot sim``: serve the three simulators standalone until SIGINT/SIGTERM.

Prints, on start, the ``chatkitty`` and ``sources`` config sections that point at the
simulators (base URLs, as ``api_url`` takes them, and the test credentials), then every
market event as the market ticks (``--tick-every``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from listingbot.sim import SimStack
from listingbot.sim.faults import RATE_KEYS, Faults
from listingbot.sim.market import MarketEvent

DEFAULT_PORTS = {"kotohomes": 8701, "kato": 8702, "chatkitty": 8703}


def _fault(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=RATE, got {text!r}")
    try:
        Faults().set(**{name: float(value)})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, float(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listingbot sim",
        description="Serve local simulators of Kotohomes, Kato and ChatKitty.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=port,
            metavar="N",
            help=f"port for the {name} simulator (default {port}; 0 picks a free one)",
        )
    parser.add_argument("--seed", type=int, default=1, help="market seed (default 1)")
    parser.add_argument(
        "--tick-every",
        type=float,
        default=0.0,
        metavar="S",
        help="advance the market one tick every S real seconds (default: never)",
    )
    parser.add_argument(
        "--chatkitty-prefix",
        default="/v1",
        help='ChatKitty path prefix: "/v1" (default), "" or "/v1/applications/<id>"',
    )
    parser.add_argument("--kato-rpm", type=int, default=60, help="Kato requests per minute")
    for api in ("kotohomes", "kato"):
        parser.add_argument(
            f"--{api}-mode",
            choices=("current", "seed"),
            default="current",
            help=f"{api.capitalize()} as its API behaves today (default) or as the seed "
            "documents it",
        )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=RATE",
        help=f"inject a fault, e.g. rate_500=0.1 (names: {', '.join(RATE_KEYS)}, "
        "timeout_hold_s, slow_s); repeatable",
    )
    parser.add_argument(
        "--hostile-rate",
        type=float,
        default=0.0,
        help="share of records served malformed or hostile (default 0)",
    )
    return parser


def config_fragment(stack: SimStack) -> str:
    """The ``chatkitty`` and ``sources`` sections for the running simulators, ready to paste
    into a config file: base URLs (the clients add the API paths) and the test credentials."""
    return (
        "# paste into your config (the simulators' test credentials):\n"
        "chatkitty:\n"
        f"  api_url: {stack.chatkitty_url}\n"
        f"  path_prefix: {json.dumps(stack.chatkitty_prefix)}\n"
        f"  token_url: {stack.chatkitty_token_url}\n"
        f"  client_id: {stack.chatkitty_client_id}\n"
        f"  client_secret: {stack.chatkitty_client_secret}\n"
        "sources:\n"
        "  kotohomes:\n"
        f"    api_url: {stack.kotohomes_url}\n"
        f"    key: {stack.kotohomes_key}\n"
        "  kato:\n"
        f"    api_url: {stack.kato_url}\n"
        "    api_version: v2\n"
        f"    client_id: {stack.kato_client_id}\n"
        f"    client_secret: {stack.kato_client_secret}\n"
    )


def _describe(event: MarketEvent) -> str:
    change = ""
    if event.kind in ("price_changed", "status_changed"):
        change = f" {event.old} -> {event.new}"
    elif event.kind == "created" and event.new is not None:
        change = f" at {event.new}"
    return f"market {event.at:%H:%M:%S} {event.source} {event.listing_id} {event.kind}{change}"


async def serve(
    args: argparse.Namespace, *, stop: asyncio.Event | None = None, out: TextIO = sys.stdout
) -> None:
    """Run the simulators until ``stop`` is set (or SIGINT/SIGTERM when it is None)."""
    faults = Faults(args.seed)
    faults.set(**dict(args.fault))
    stack = SimStack(
        seed=args.seed,
        faults=faults,
        chatkitty_prefix=args.chatkitty_prefix,
        kato_rpm=args.kato_rpm,
        kotohomes_mode=args.kotohomes_mode,
        kato_mode=args.kato_mode,
        host=args.host,
        kotohomes_port=args.kotohomes_port,
        kato_port=args.kato_port,
        chatkitty_port=args.chatkitty_port,
        hostile_rate=args.hostile_rate,
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    async with stack:
        channels = ", ".join(f"{c['id']} ({c['name']})" for c in stack.chatkitty.channels.values())
        print(
            f"listingbot simulators running (Ctrl-C stops them): kotohomes {stack.kotohomes_url}"
            f" · kato {stack.kato_url} · chatkitty {stack.chatkitty_url}\n"
            f"{config_fragment(stack)}\n"
            f"channels: {channels}\n"
            f"market: seed {args.seed}, {len(stack.market.ids('kotohomes'))} US and "
            f"{len(stack.market.ids('kato'))} UK listings, "
            f"market time {stack.market.now:%Y-%m-%d %H:%M}",
            file=out,
            flush=True,
        )
        ticker = None
        if args.tick_every > 0:
            ticker = asyncio.create_task(_tick(stack, args.tick_every, out))
        try:
            await stop.wait()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
    print("simulators stopped", file=out, flush=True)


async def _tick(stack: SimStack, every_s: float, out: TextIO) -> None:
    while True:
        await stack.clock.sleep(every_s)
        for event in stack.market.step():
            print(_describe(event), file=out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``listingbot sim``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tick_every < 0:
        parser.error("--tick-every must be >= 0")
    try:
        asyncio.run(serve(args))
    except OSError as exc:  # typically: the port is taken
        print(f"listingbot sim: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0
