"""What a reload changes, worked out from the old and the new config before anything is
touched. :meth:`listingbot.app.App.reload` applies it.

- ``state.path``, the ChatKitty account and ``ops.listen`` cannot change while running: a
  config that changes them is refused as a whole (``restart_needed``).
- A source whose settings changed gets a new client and poller; one whose settings did
  not keeps its client (token, rate-limit window) and its schedule.
- A source whose settings or subscriptions changed is polled at once (``touched``).
- The state section's other keys (retention, gone checks) apply to every poller in place.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from listingbot import sources
from listingbot.config import Config
from listingbot.models import Source


@dataclass(frozen=True)
class ReloadPlan:
    old: Config
    new: Config
    restart_needed: list[str]
    changed_sources: set[Source]
    touched: set[Source]

    @classmethod
    def between(cls, old: Config, new: Config) -> ReloadPlan:
        restart_needed = [
            f"{key}: cannot change while running; restart to apply"
            for key, changed in (
                ("state.path", new.state.path != old.state.path),
                ("chatkitty", new.chatkitty != old.chatkitty),
                ("ops.listen", new.ops.listen != old.ops.listen),
            )
            if changed
        ]
        changed = {s.name for s in sources.ALL if s.settings(new) != s.settings(old)}
        touched = changed | {
            s.name
            for s in sources.ALL
            if [x for x in new.subscriptions if x.source == s.name]
            != [x for x in old.subscriptions if x.source == s.name]
        }
        return cls(old, new, restart_needed, changed, touched)

    @property
    def state_changed(self) -> bool:
        """Retention or the gone checks changed (the path cannot: see restart_needed)."""
        return self.new.state != self.old.state

    def keeps_schedule(self, job_id: str, pollers: Collection[str]) -> bool:
        """Whether a scheduled job keeps its next run time: the delivery job while its
        interval is the same, the command reader likewise, a poll job while its source
        is neither new nor touched."""
        if job_id == "deliver":
            return self.new.delivery.interval == self.old.delivery.interval
        if job_id == "commands":
            return self.new.commands.poll_interval == self.old.commands.poll_interval
        name = job_id.removeprefix("poll-")
        return name in pollers and name not in self.touched

    def summary(self) -> dict[str, Any]:
        """The ``config_reloaded`` log line's fields."""
        old, new = self.old.subscriptions, self.new.subscriptions
        old_names = {s.name for s in old}
        new_names = {s.name for s in new}
        return {
            "subscriptions": len(new),
            "added": sorted(new_names - old_names),
            "removed": sorted(old_names - new_names),
            "changed": sorted(s.name for s in new if s.name in old_names and s not in old),
            "sources_changed": sorted(self.changed_sources),
        }
