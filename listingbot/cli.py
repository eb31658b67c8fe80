"""The command line: parse, load the config, call the app, map outcomes to exit codes.

Exit codes: 0 ok · 1 a source or delivery failed after retries · 2 bad config or usage, or
the state file is in use by another listingbot process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from listingbot import __version__, sources
from listingbot.app import App
from listingbot.config import Config, config_warnings, load_config
from listingbot.errors import ConfigError, ListingBotError, StateLocked, StoreError
from listingbot.logs import configure_logging, register_secret
from listingbot.polling import PollOutcome
from listingbot.store import OUTBOX_STATES

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


DESCRIPTION = """\
Watches Kotohomes and Kato for property listings that match your subscriptions and posts
each new listing, price change and status change once into your ChatKitty channels."""

EPILOG = """\
getting started:
  listingbot demo                          see it work against local simulators
  listingbot check-config --online         check the config, credentials and channels
  listingbot once --dry-run                show what the first poll would post
  listingbot run                           poll and post until stopped (SIGHUP reloads)

while it runs:
  listingbot status                        sources, subscriptions and the outbox
  listingbot healthcheck [--ready]         liveness (or readiness) probe, exit 0/1

The config file is --config (before or after the command), else $LISTINGBOT_CONFIG,
else config/listingbot.yaml. Exit codes: 0 ok, 1 something failed, 2 bad config or
usage. Run `listingbot COMMAND --help` for a command's options."""

CONFIG_HELP = "config file (default: $LISTINGBOT_CONFIG, then config/listingbot.yaml)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="listingbot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"listingbot {__version__}")
    parser.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # SUPPRESS: given after the command it wins; not given, the one before it stays.
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
        return p

    def with_wait_lock(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--wait-lock",
            type=_seconds,
            default=0.0,
            metavar="SECONDS",
            help="when another process holds the state file, wait up to this long for it "
            "(default: refuse at once, exit 2)",
        )
        return p

    with_wait_lock(
        with_config(sub.add_parser("run", help="poll and post on schedule until stopped"))
    )
    once = with_wait_lock(
        with_config(sub.add_parser("once", help="poll every source once, post what is new, exit"))
    )
    once.add_argument(
        "--dry-run",
        action="store_true",
        help="print the messages it would post and what first runs would record; change nothing",
    )
    check = with_config(sub.add_parser("check-config", help="validate the config file and exit"))
    check.add_argument(
        "--online",
        action="store_true",
        help="also check every API's credentials and that every channel exists",
    )
    with_config(
        sub.add_parser("status", help="sources, subscriptions and outbox, from the state file")
    )
    chat_subs = sub.add_parser("subscriptions", help="the subscriptions made from the chat")
    chat_sub = chat_subs.add_subparsers(
        dest="subscriptions_command", required=True, parser_class=_Parser
    )
    with_config(chat_sub.add_parser("export", help="print them as YAML the config accepts"))
    outbox = sub.add_parser("outbox", help="outbox maintenance")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, parser_class=_Parser)
    with_config(outbox_sub.add_parser("retry-failed", help="put failed messages back in queue"))
    listing = with_config(outbox_sub.add_parser("list", help="show outbox messages, oldest first"))
    listing.add_argument("--state", choices=OUTBOX_STATES, default=None, help="only this state")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    retry = with_config(outbox_sub.add_parser("retry", help="queue one failed message again"))
    retry.add_argument("key", help="its delivery key (see `outbox list`)")
    drop = with_config(outbox_sub.add_parser("drop", help="give up on one message for good"))
    drop.add_argument("key", help="its delivery key (see `outbox list`)")
    health = with_config(
        sub.add_parser(
            "healthcheck",
            help="exit 0 when the running service is alive (--ready: ready), else 1",
        )
    )
    health.add_argument(
        "--ready", action="store_true", help="check readiness (/readyz) instead of liveness"
    )
    health.add_argument("--endpoint", choices=["readyz", "healthz"], help=argparse.SUPPRESS)
    demo = sub.add_parser("demo", help="run the whole service against local simulators")
    demo.add_argument("--cycles", type=int, default=6, help="poll cycles to run (default 6)")
    demo.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    demo.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    sub.add_parser("sim", help="serve the three simulators standalone", add_help=False)
    return parser


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10000000 seconds, got {raw}")
    return value


def config_path(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    env = os.environ.get("LISTINGBOT_CONFIG")
    return Path(env) if env else Path("config/listingbot.yaml")


def _load(arg: Path | None) -> Config:
    config = load_config(config_path(arg))
    _register_secrets(config)
    configure_logging(level=config.log.level, fmt=config.log.format)
    for warning in config_warnings(config):
        # Valid, so the service runs; said once at start so an operator who skipped
        # check-config still learns why a subscription may never match.
        log.warning("config_warning", detail=warning)
    return config


def _register_secrets(config: Config) -> None:
    """Every secret in ``config`` is redacted from log lines from now on."""
    for secret in (
        config.chatkitty.client_id,
        config.chatkitty.client_secret,
        *(secret for source in sources.ALL for secret in source.secrets(config)),
    ):
        register_secret(secret.get_secret_value())


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
    except StateLocked as err:
        sys.stderr.write(f"listingbot: {err}\n")
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
        for warning in config_warnings(config):
            # Warnings, not errors: the file is valid, the search may still match nothing.
            sys.stderr.write(f"listingbot: warning: {warning}\n")
        print(
            f"{config_path(args.config)}: ok · {len(config.subscriptions)} subscription(s), "
            f"sources: {', '.join(s.name for s in sources.ALL if s.settings(config))}"
        )
        if args.online:
            from listingbot.online import check_online  # noqa: PLC0415

            _register_secrets(config)
            return asyncio.run(check_online(config))
        return EXIT_OK
    if command == "status":
        from listingbot.status import print_status, state_path  # noqa: PLC0415

        return print_status(state_path(config_path(args.config)))
    if command == "subscriptions":
        from listingbot.status import export_chat_subscriptions, state_path  # noqa: PLC0415

        return export_chat_subscriptions(state_path(config_path(args.config)))
    if command == "outbox":
        from listingbot import status  # noqa: PLC0415

        config = load_config(config_path(args.config))
        if args.outbox_command == "list":
            return status.outbox_list(config, args.state, args.limit)
        if args.outbox_command == "retry":
            return status.outbox_retry(config, args.key)
        if args.outbox_command == "drop":
            return status.outbox_drop(config, args.key)
        return status.retry_failed(config)
    if command == "healthcheck":
        from listingbot.ops import healthcheck  # noqa: PLC0415

        endpoint = args.endpoint or ("readyz" if args.ready else "healthz")
        return healthcheck(config_path(args.config), endpoint)
    config = _load(args.config)
    if command == "once":
        return asyncio.run(_once(config, dry_run=args.dry_run, wait_lock_s=args.wait_lock))
    if command == "run":
        return asyncio.run(_run(config, config_path(args.config), wait_lock_s=args.wait_lock))
    raise AssertionError(command)  # pragma: no cover - argparse rejects anything else


# Start-up leaves a few hundred thousand long-lived objects (modules, pydantic schemas,
# the config); a sweep of 10,000 records allocates about a million more. With CPython's
# default thresholds (700, 10, 10) one such sweep ran ~500 collections, the full ones
# walking every live object. gc.freeze() takes start-up's objects out of the collector's
# sight, and a larger young generation lets a page's records die by reference counting
# before a collection looks at them: ~7 collections a sweep, 12 % less CPU on a first
# sweep and a third less on a steady one (see README "Performance").
GC_THRESHOLDS = (50_000, 20, 100)


def settle_gc() -> None:
    """Once start-up is done: freeze what it built, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _once(config: Config, *, dry_run: bool, wait_lock_s: float = 0.0) -> int:
    app = App(config, wait_lock_s=wait_lock_s)
    try:
        await app.start(dry_run=dry_run)
        settle_gc()
        ok = await run_once(app, dry_run=dry_run)
    finally:
        await app.close()
    return EXIT_OK if ok else EXIT_FAILED


async def run_once(app: App, *, dry_run: bool) -> bool:
    """``once``: one poll of every source and one delivery pass (a dry run prints what it
    would post instead)."""
    if dry_run:
        app.on_poll.append(print_dry_run)
    return await app.once(dry_run=dry_run)


def print_dry_run(outcome: PollOutcome) -> None:
    """What a dry-run poll would post, and what first runs would record."""
    for message in outcome.messages:
        print(f"--- channel {message.channel_id} · {message.event} · {message.key}")
        print(message.body)
        print()
    for name, count in outcome.baseline_matches.items():
        print(f"--- would record {count} current matches for {name}, post nothing")
        print()


async def _run(config: Config, path: Path, *, wait_lock_s: float = 0.0) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads the config file.

    The handlers go in first, so a signal during start-up is honoured too (as PID 1 in a
    container, a signal without a handler would simply be ignored). The ops endpoint
    starts before the app so /healthz answers, and /readyz says "not started", while the
    app connects; a port that is taken fails start-up at once.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    started = asyncio.Event()
    reload_lock = asyncio.Lock()
    reloads: set[asyncio.Task[None]] = set()
    app = App(config, wait_lock_s=wait_lock_s)

    def request_stop(signame: str) -> None:
        if stop.is_set():
            log.info("shutdown_in_progress", signal=signame)
            return
        log.info("shutdown_requested", signal=signame)
        stop.set()
        # A reload still looking up channels is dropped: App.reload changes nothing
        # before its last await, so cancelling it leaves the running config whole.
        for task in list(reloads):
            task.cancel()

    async def reload_in_turn() -> None:
        await started.wait()
        async with reload_lock:  # two quick SIGHUPs apply one after the other
            if not stop.is_set():
                await _reload(app, path)

    def request_reload() -> None:
        if stop.is_set():
            log.warning("config_reload_ignored", reason="shutting down")
            return
        log.info("config_reload_requested", signal="SIGHUP", path=str(path))
        task = loop.create_task(reload_in_turn())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, request_reload)
    ops_server = None
    try:
        if config.ops.listen:
            from listingbot.ops import OpsServer  # noqa: PLC0415

            ops_server = OpsServer(app, config.ops.listen)
            try:
                await ops_server.start()
            except OSError as err:
                reason = err.strerror or str(err)
                raise ListingBotError(f"ops.listen {config.ops.listen}: {reason}") from None
        if not await _start_unless_stopped(app, stop):
            log.info("stopped", during="start-up")
            return EXIT_OK
        started.set()
        settle_gc()
        log.info(
            "started",
            version=__version__,
            sources=sorted(app.pollers),
            subscriptions=len(config.subscriptions),
            state=str(config.state.path),
            ops=config.ops.listen,
        )
        await app.run(stop)
    finally:
        for task in list(reloads):
            task.cancel()
        await asyncio.gather(*reloads, return_exceptions=True)
        if ops_server is not None:
            await ops_server.stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")
    return EXIT_OK


async def _start_unless_stopped(app: App, stop: asyncio.Event) -> bool:
    """Start the app; False (and the app closed) when a stop signal came first."""
    starting = asyncio.ensure_future(app.start(wait_for_chatkitty=False))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await app.close()
        return False
    try:
        starting.result()
    except BaseException:
        await app.close()
        raise
    return True


async def _reload(app: App, path: Path) -> None:
    """Validate the file, then apply it; anything wrong keeps the running config."""
    old = app.config
    try:
        new = load_config(path)
        _register_secrets(new)
        await app.reload(new)
    except ListingBotError as err:
        log.error("config_reload_rejected", error=str(err), kept="previous configuration")
        app.reload_rejected_now(str(err))
        return
    except Exception as err:
        log.exception("config_reload_failed", kept="previous configuration")
        app.reload_rejected_now(f"{type(err).__name__} (see the log)")
        return
    if new.log != old.log:
        configure_logging(level=new.log.level, fmt=new.log.format)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
