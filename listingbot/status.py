"""``listingbot status`` and ``listingbot outbox retry-failed``: read (or fix) the state file
directly, so they work whether or not the service is running (SQLite WAL allows a reader
beside the writer)."""

from __future__ import annotations

from datetime import UTC, datetime

from listingbot.config import Config
from listingbot.errors import StoreError
from listingbot.store import Store


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    ago = max(0, int((now - value).total_seconds()))  # never "-3s ago" on clock skew
    if ago < 120:
        span = f"{ago}s"
    elif ago < 7200:
        span = f"{ago // 60}m"
    elif ago < 172800:
        span = f"{ago // 3600}h"
    else:
        span = f"{ago // 86400}d"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')}Z ({span} ago)"


def _open(config: Config) -> Store:
    if not config.state.path.exists():
        raise StoreError(f"no state file at {config.state.path} (has listingbot run yet?)")
    return Store.open_sync(config.state.path, lambda: datetime.now(UTC))


def print_status(config: Config) -> int:
    store = _open(config)
    now = datetime.now(UTC)
    try:
        print(f"state file: {config.state.path} (schema v{store.schema_version})")
        print("\nsources:")
        statuses = {s.source: s for s in store.source_statuses_sync()}
        for source in ("kotohomes", "kato"):
            if getattr(config.sources, source) is None:
                continue
            st = statuses.get(source)
            if st is None:
                print(f"  {source:<10} not polled yet")
                continue
            print(f"  {source:<10} last success {_when(st.last_success, now)}")
            print(f"  {'':<10} last failure {_when(st.last_failure, now)}")
            if st.last_error and (
                st.last_success is None or (st.last_failure or now) > st.last_success
            ):
                print(f"  {'':<10} failing ({st.consecutive_failures}x): {st.last_error}")
            print(
                f"  {'':<10} last successful poll: {st.last_listings} listings, "
                f"{st.last_events} events"
            )
        print("\nsubscriptions:")
        subs = {s.name: s for s in store.subscription_statuses_sync()}
        for sub in config.subscriptions:
            sst = subs.get(sub.name)
            if sst is None:
                print(f"  {sub.name}: not polled yet")
                continue
            base = "first run pending" if sst.baselined_at is None else "active"
            print(
                f"  {sub.name} ({sub.source}, {base}): {sst.matches} matches, "
                f"last message {_when(sst.last_message_at, now)}"
            )
        summary = store.outbox_summary_sync()
        print("\noutbox:")
        for state in ("pending", "sending", "sent", "failed"):
            print(f"  {state:<8} {summary.counts.get(state, 0)}")
        if summary.oldest_open is not None:
            print(f"  oldest undelivered: {_when(summary.oldest_open, now)}")
        for seq, key, channel, error in summary.failed:
            print(f"  failed #{seq} channel {channel} {key}: {error}")
    finally:
        store.close_sync()
    return 0


def retry_failed(config: Config) -> int:
    store = _open(config)
    try:
        count = store.retry_failed_sync()
    finally:
        store.close_sync()
    print(f"{count} failed message(s) put back in the queue")
    return 0
