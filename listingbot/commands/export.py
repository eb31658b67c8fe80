"""``listingbot subscriptions export``: the chat-made subscriptions as YAML the config takes.

Each one is written exactly as a ``subscriptions:`` entry (name, source, channel id,
filters, first_run), so an operator can paste them into the file and manage them there
(then ``/listings unsubscribe`` the chat copy, or the config's copy shadows it). A paused
one is exported commented out: pasting it must not start it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import yaml

from listingbot.commands.grammar import echo
from listingbot.store import ChatSubscriptionRow

__all__ = ["export_yaml"]


def _entry(row: ChatSubscriptionRow) -> dict[str, object]:
    return {
        "name": row.name,
        "source": row.source,
        "channel": row.channel_id,
        "filters": row.filters,
        "first_run": row.first_run,
    }


def export_yaml(rows: Sequence[ChatSubscriptionRow], now: datetime) -> str:
    """A YAML document with a ``subscriptions:`` list of ``rows`` (paused ones commented)."""
    lines = [
        f"# Subscriptions made from the chat, exported {now:%Y-%m-%d %H:%M} UTC.",
        "# Each entry is a valid `subscriptions:` item of the configuration file.",
        "subscriptions:" if rows else "subscriptions: []",
    ]
    for row in rows:
        text = yaml.safe_dump([_entry(row)], sort_keys=False, allow_unicode=True).rstrip("\n")
        # A username is chat text: one line, or it could end the comment and add YAML.
        who = echo(row.created_by, 64)
        where = f"# channel {row.channel_id}, made by {who} {row.created_at:%Y-%m-%d}"
        lines.append(f"{where}, {row.state}")
        if row.state == "paused":
            lines += [f"# {line}" for line in text.splitlines()]
        else:
            lines += text.splitlines()
    return "\n".join(lines) + "\n"
