"""The command line: parse, load the config, call the app, map outcomes to exit codes.

Exit codes: 0 ok · 1 a source or delivery failed after retries · 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from listingbot import __version__
from listingbot.app import App
from listingbot.config import Config, load_config
from listingbot.errors import ConfigError, ListingBotError, StoreError
from listingbot.logs import configure_logging, register_secret

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = structlog.get_logger("listingbot.cli")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit code 2 with one paragraph, like config errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"listingbot: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="listingbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"listingbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            help="config file (default: $LISTINGBOT_CONFIG, then config/listingbot.yaml)",
        )
        return p

    with_config(sub.add_parser("run", help="poll and deliver on schedule until stopped"))
    once = with_config(sub.add_parser("once", help="one poll of every source + one delivery"))
    once.add_argument(
        "--dry-run", action="store_true", help="print the messages it would send; change nothing"
    )
    with_config(sub.add_parser("check-config", help="validate the config and exit"))
    with_config(sub.add_parser("status", help="state summary from the state file alone"))
    outbox = sub.add_parser("outbox", help="outbox maintenance")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, parser_class=_Parser)
    with_config(outbox_sub.add_parser("retry-failed", help="put failed messages back in queue"))
    health = with_config(sub.add_parser("healthcheck", help="exit 0 when /readyz answers 200"))
    health.add_argument("--endpoint", default="readyz", choices=["readyz", "healthz"])
    demo = sub.add_parser("demo", help="run the whole service against local simulators")
    demo.add_argument("--cycles", type=int, default=6, help="poll cycles to run (default 6)")
    demo.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    demo.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    sub.add_parser("sim", help="serve the three simulators standalone", add_help=False)
    return parser


def config_path(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    env = os.environ.get("LISTINGBOT_CONFIG")
    return Path(env) if env else Path("config/listingbot.yaml")


def _load(arg: Path | None) -> Config:
    config = load_config(config_path(arg))
    for secret in (
        config.chatkitty.client_id,
        config.chatkitty.client_secret,
        *([config.sources.kotohomes.key] if config.sources.kotohomes is not None else []),
        *(
            [config.sources.kato.client_id, config.sources.kato.client_secret]
            if config.sources.kato is not None
            else []
        ),
    ):
        register_secret(secret.get_secret_value())
    configure_logging(level=config.log.level, fmt=config.log.format)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sim"]:
        from listingbot.sim.cli import main as sim_main  # noqa: PLC0415 - optional entry point

        return sim_main(args_list[1:])
    args = _parser().parse_args(args_list)
    try:
        return _dispatch(args)
    except ConfigError as err:
        sys.stderr.write(f"listingbot: configuration error:\n{err}\n")
        return EXIT_USAGE
    except StoreError as err:
        sys.stderr.write(f"listingbot: state file error: {err}\n")
        return EXIT_FAILED
    except ListingBotError as err:
        sys.stderr.write(f"listingbot: {err}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "demo":
        configure_logging(level="warning")
        from listingbot.demo import run_demo  # noqa: PLC0415 - keeps sim code out of `run`

        return asyncio.run(run_demo(cycles=None if args.forever else args.cycles, seed=args.seed))
    if command == "check-config":
        config = load_config(config_path(args.config))
        print(
            f"{config_path(args.config)}: ok · {len(config.subscriptions)} subscription(s), "
            f"sources: {', '.join(s for s in ('kotohomes', 'kato') if getattr(config.sources, s))}"
        )
        return EXIT_OK
    if command == "status":
        from listingbot.status import print_status  # noqa: PLC0415

        return print_status(load_config(config_path(args.config)))
    if command == "outbox":
        from listingbot.status import retry_failed  # noqa: PLC0415

        return retry_failed(load_config(config_path(args.config)))
    if command == "healthcheck":
        from listingbot.ops import healthcheck  # noqa: PLC0415

        return healthcheck(load_config(config_path(args.config)), args.endpoint)
    config = _load(args.config)
    if command == "once":
        return asyncio.run(_once(config, dry_run=args.dry_run))
    if command == "run":
        return asyncio.run(_run(config, config_path(args.config)))
    raise AssertionError(command)  # pragma: no cover - argparse rejects anything else


async def _once(config: Config, *, dry_run: bool) -> int:
    app = App(config)
    try:
        await app.start(dry_run=dry_run)
        ok = await app.once(dry_run=dry_run)
    finally:
        await app.close()
    return EXIT_OK if ok else EXIT_FAILED


async def _run(config: Config, path: Path) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    app = App(config)
    await app.start()

    def request_stop(signame: str) -> None:
        log.info("shutdown_requested", signal=signame)
        stop.set()

    reloads: set[asyncio.Task[None]] = set()

    def request_reload() -> None:
        task = loop.create_task(_reload(app, path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, request_reload)
    ops_server = None
    if config.ops.listen:
        from listingbot.ops import OpsServer  # noqa: PLC0415

        ops_server = OpsServer(app, config.ops.listen)
        await ops_server.start()
    log.info(
        "started",
        version=__version__,
        sources=sorted(app.pollers),
        subscriptions=len(config.subscriptions),
        state=str(config.state.path),
        ops=config.ops.listen,
    )
    try:
        await app.run(stop)
    finally:
        if ops_server is not None:
            await ops_server.stop()
    log.info("stopped")
    return EXIT_OK


async def _reload(app: App, path: Path) -> None:
    try:
        new = load_config(path)
        await app.reload(new)
    except ListingBotError as err:
        log.error("config_reload_rejected", error=str(err), kept="previous configuration")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
