"""``listingbot status`` and ``listingbot outbox …``: read (or fix) the state file
directly, so they work whether or not the service is running (SQLite WAL allows a reader
beside the writer).

``status`` needs only the state file: it finds it through the config's ``state.path``,
and when the config does not load as a whole (its secrets are not in this shell's
environment, say) it reads ``state.path`` alone from the YAML, so no secret is needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from listingbot import sources
from listingbot.commands.grammar import echo
from listingbot.config import Config, StateConfig, load_config, raw_key
from listingbot.errors import ConfigError, StoreError
from listingbot.records import KIND_PATCH, KIND_PHOTO, OutgoingMessage
from listingbot.store import OUTBOX_STATES, PROBLEM_CHANNEL, QUIET_STATES, Store


def state_path(config_file: Path) -> Path:
    """The state file named by ``config_file``, with or without the secrets it needs."""
    try:
        return load_config(config_file).state.path
    except ConfigError as err:
        full_error = err
    try:
        raw = raw_key(config_file, "state", "path")
        if not isinstance(raw, str) or "$" in raw:
            raise full_error
        checked = StateConfig.model_validate(
            {"path": raw}, context={"base_dir": config_file.parent}
        )
    except (ConfigError, ValidationError):
        raise full_error from None
    return checked.path


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


def _open(path: Path) -> Store:
    if not path.exists():
        raise StoreError(f"no state file at {path} (has listingbot run yet?)")
    return Store.open_sync(path, lambda: datetime.now(UTC))


def print_status(path: Path) -> int:
    store = _open(path)
    now = datetime.now(UTC)
    try:
        print(f"state file: {path} (schema v{store.schema_version})")
        print("\nsources:")
        order: dict[str, int] = {s.name: index for index, s in enumerate(sources.ALL)}
        statuses = sorted(store.source_statuses_sync(), key=lambda st: order.get(st.source, 99))
        if not statuses:
            print("  none polled yet")
        for st in statuses:
            source = st.source
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
        problems = {p.name: p for p in store.subscription_problems_sync()}
        subs = store.subscription_statuses_sync()
        chat = {row.name: row for row in store.chat_subscriptions_sync()}
        if not subs:
            print("  none polled yet")
        for sst in subs:
            base = "first run pending" if sst.baselined_at is None else "active"
            row = chat.get(sst.name)
            if row is not None:
                base = f"chat: channel {row.channel_id}, by {echo(row.created_by, 64)}, " + (
                    "paused" if row.state == "paused" else base
                )
            print(
                f"  {sst.name} ({sst.source}, {base}): {sst.matches} matches, "
                f"last message {_when(sst.last_message_at, now)}"
            )
            problem = problems.get(sst.name)
            if problem is not None:
                what = "HELD" if problem.kind == PROBLEM_CHANNEL else "FAILING"
                print(f"    {what} since {_when(problem.since, now)}: {problem.detail}")
        for name in sorted(problems.keys() - {s.name for s in subs}):
            problem = problems[name]
            what = "HELD" if problem.kind == PROBLEM_CHANNEL else "FAILING"
            print(f"  {name}: {what} since {_when(problem.since, now)}: {problem.detail}")
        for name in sorted(chat.keys() - {s.name for s in subs}):
            row = chat[name]
            print(
                f"  {name} ({row.source}, chat: channel {row.channel_id}, "
                f"by {echo(row.created_by, 64)}, "
                f"{'paused' if row.state == 'paused' else 'first run pending'})"
            )
        counts = store.command_counts_sync()
        if len(counts) > 1 or counts.get("unanswered"):
            print("\nchat commands:")
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "unanswered")
            print(f"  {shown or 'none yet'}; answers not yet posted: {counts['unanswered']}")
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


def export_chat_subscriptions(path: Path) -> int:
    """``listingbot subscriptions export``: the chat's subscriptions as config YAML."""
    from listingbot.commands.export import export_yaml  # noqa: PLC0415

    store = _open(path)
    try:
        print(export_yaml(store.chat_subscriptions_sync(), datetime.now(UTC)), end="")
    finally:
        store.close_sync()
    return 0


def retry_failed(config: Config) -> int:
    store = _open(config.state.path)
    try:
        count = store.retry_failed_sync()
    finally:
        store.close_sync()
    print(f"{count} failed message(s) put back in the queue")
    return 0


# ------------------------------------------------------------------ outbox list/retry/drop
# None of these takes the state file's lock: each change is one compare-and-set on the
# row's state, so they work beside a running service (a row it claimed meanwhile is left
# alone). Exit codes: 0 done, 1 nothing done (unknown key, or a row in another state).


def _where(m: OutgoingMessage) -> str:
    """What a row is beside a channel message (README "Messages": threads, photos)."""
    if m.kind == KIND_PATCH:
        return f" · patch of message {m.thread_id}"
    if m.kind == KIND_PHOTO:
        return f" in the thread of {m.thread_id}" if m.thread_id else ""
    return f" · reply in the thread of {m.thread_id}" if m.thread_id else ""


def outbox_list(config: Config, state: str | None, limit: int) -> int:
    store = _open(config.state.path)
    now = datetime.now(UTC)
    try:
        rows = store.list_rows_sync(state, limit)
        summary = store.outbox_summary_sync(failed_limit=0)
    finally:
        store.close_sync()
    # Quiet-hours states are named only when a message is in one.
    counts = " · ".join(
        f"{s} {summary.counts.get(s, 0)}"
        for s in OUTBOX_STATES
        if s not in QUIET_STATES or summary.counts.get(s, 0)
    )
    print(f"outbox: {counts}")
    if not rows:
        print(f"no {state} messages" if state else "no messages")
        return 0
    for row in rows:
        m = row.message
        print(
            f"{m.key}\n  {row.state} · channel {m.channel_id} · {m.event}{_where(m)} · "
            f"{m.source} {m.listing_id} · {row.attempts} send(s)"
        )
        print(f"  queued {_when(row.created_at, now)}")
        if row.state in ("pending", "sending"):
            print(f"  next attempt {_when(row.next_attempt_at, now)}")
        if row.sent_at is not None:
            print(f"  {'sent' if row.state == 'sent' else 'closed'} {_when(row.sent_at, now)}")
        if row.may_be_sent and row.state in ("sending", "failed"):
            print("  may have been posted: searched for in the channel before any resend")
        if row.last_error:
            print(f"  last error: {row.last_error}")
    total = sum(summary.counts.get(s, 0) for s in ([state] if state else OUTBOX_STATES))
    if total > len(rows):
        print(f"({len(rows)} of {total} shown; --limit N shows more)")
    return 0


def outbox_retry(config: Config, key: str) -> int:
    return _act(config, key, "retry")


def outbox_drop(config: Config, key: str) -> int:
    return _act(config, key, "drop")


def _act(config: Config, key: str, action: str) -> int:
    store = _open(config.state.path)
    try:
        row = store.row_sync(key)
        if row is None:
            print(f"no outbox message with key {key!r} (see `listingbot outbox list`)")
            return 1
        done = store.retry_sync(key) if action == "retry" else store.drop_sync(key)
        after = store.row_sync(key)
    finally:
        store.close_sync()
    if not done:
        why = {
            "sending": "its send is in flight or its outcome is being checked in the channel",
            "sent": "it has been delivered",
            "dropped": "it was dropped",
        }.get(row.state, f"it is {row.state}")
        print(f"{key}: not changed: {why} (only failed or pending messages can be {action}ped)")
        return 1
    if action == "drop":
        print(f"{key}: dropped; it will not be sent")
    elif after is not None and after.state == "sending":
        print(f"{key}: queued again; it may have been posted, so its channel is searched first")
    else:
        print(f"{key}: queued again; the service sends it on its next delivery pass")
    return 0
