"""``listingbot demo``: the real service against the three simulators, on a fast schedule.

Everything happens on loopback and in a temporary directory: no credentials, no network.
The demo writes an ordinary config file, loads it the way ``listingbot run`` does, and runs
the same ``App.run`` loop; only the intervals are short and the market moves quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from listingbot import sources
from listingbot.app import App
from listingbot.config import load_config
from listingbot.delivery import DeliveryOutcome
from listingbot.polling import PollOutcome
from listingbot.sim import SimStack

CHANNELS = (
    (702, "nyc-homes", "NYC homes"),
    (703, "west-coast", "West coast homes"),
    (704, "uk-offices", "UK commercial"),
)

LAST_PASSES = 5  # delivery passes after the last poll before the demo stops regardless
CYCLE_SOURCE = sources.ALL[0].name  # the demo's clock: a cycle per poll of this source
SIMULATED = (*(s.name for s in sources.ALL), "chatkitty")  # SimStack serves each by name

DEMO_ENV = {
    "CHATKITTY_CLIENT_ID": "test-ck-id",
    "CHATKITTY_CLIENT_SECRET": "test-ck-secret",
    "KOTOHOMES_API_KEY": "test-kotohomes-key",
    "KATO_CLIENT_ID": "test-kato-id",
    "KATO_CLIENT_SECRET": "test-kato-secret",
}


def demo_config(sims: SimStack, state_path: Path, *, poll_s: float = 1.0) -> str:
    """The demo's config file: two sources, five subscriptions, three channels."""
    return f"""\
state:
  path: {state_path}
chatkitty:
  api_url: {sims.chatkitty_url}
  path_prefix: /v1
  token_url: {sims.chatkitty_token_url}
  client_id: ${{CHATKITTY_CLIENT_ID}}
  client_secret: ${{CHATKITTY_CLIENT_SECRET}}
sources:
  kotohomes:
    api_url: {sims.kotohomes_url}
    key: ${{KOTOHOMES_API_KEY}}
    poll_interval: {poll_s}s
    poll_jitter: 0s
  kato:
    api_url: {sims.kato_url}
    api_version: v2
    client_id: ${{KATO_CLIENT_ID}}
    client_secret: ${{KATO_CLIENT_SECRET}}
    poll_interval: {poll_s * 1.5}s
    poll_jitter: 0s
subscriptions:
  - name: nyc-family-homes
    label: NYC family homes
    source: kotohomes
    channel: nyc-homes
    filters: {{latitude: 40.75, longitude: -73.99, radius: 40, bedrooms_min: 3}}
  - name: nyc-under-1m
    label: NYC under $1m
    source: kotohomes
    channel: 702
    filters: {{latitude: 40.75, longitude: -73.99, radius: 40, price_max: 1000000}}
    notify: [new, price_drop]
  - name: bay-area
    label: Bay Area
    source: kotohomes
    channel: west-coast
    filters: {{latitude: 37.77, longitude: -122.42, radius: 60}}
    first_run: post
    photos: true
  - name: uk-offices
    label: UK offices
    source: kato
    channel: uk-offices
    filters: {{property_types: [office]}}
  - name: uk-to-let
    label: UK to let
    source: kato
    channel: uk-offices
    filters: {{to_let: true}}
    notify: [new, price_drop, status_change]
ops:
  listen: null
delivery:
  interval: {poll_s}s
commands:
  enabled_channels: [nyc-homes]
  allow: members
  poll_interval: {poll_s}s
"""


# What a member of #nyc-homes types after the first poll (see "From the chat" in the README).
CHAT_COMMAND = (
    "/listings subscribe kotohomes lat=40.68 lon=-73.94 radius=15 price<=900k beds>=2 "
    "name=brooklyn-under-900k"
)
CHAT_MEMBER = "ana"


def _indented(body: str) -> str:
    return "\n".join("    " + line for line in body.splitlines())


def _shown(message: dict[str, object]) -> str:
    """A message's text; a photo (a FILE message) as its file's name, size and link."""
    file = message.get("file")
    if isinstance(file, dict):
        return f"📷 {file.get('name')} · {file.get('size')} bytes · {file.get('url')}"
    return str(message.get("body", ""))


class Transcript:
    """Prints each channel's new messages as they arrive."""

    def __init__(self, sims: SimStack, out: TextIO) -> None:
        self.sims = sims
        self.out = out
        self.shown: dict[int, int] = {}
        # Messages whose threads are shown: members' (the answers to their commands) and
        # listingbot's (a listing's later events reply under its first post).
        self.threads: dict[int, str] = {}
        self.replies: dict[int, int] = {}
        self.names = {cid: name for cid, name, _ in CHANNELS}

    def flush(self) -> int:
        printed = 0
        chat = self.sims.chatkitty
        for channel_id, messages in sorted(chat.messages.items()):
            start = self.shown.get(channel_id, 0)
            name = self.names.get(channel_id, str(channel_id))
            for message in messages[start:]:
                body = _indented(_shown(message))
                user = message.get("user")
                if isinstance(user, dict):
                    self.out.write(f"{user.get('name')} in #{name}:\n{body}\n\n")
                    self.threads[int(message["id"])] = "listingbot, in the thread:"
                else:
                    self.out.write(f"#{name}\n{body}\n\n")
                    first = _shown(message).split("\n", 1)[0][:60]
                    self.threads[int(message["id"])] = f"#{name}, in the thread of “{first}”:"
                    printed += 1
            self.shown[channel_id] = len(messages)
        for parent, heading in self.threads.items():
            replies = chat.thread(parent)
            for reply in replies[self.replies.get(parent, 0) :]:
                body = _indented(_shown(reply))
                self.out.write(f"  {heading}\n{body}\n\n")
            self.replies[parent] = len(replies)
        self.out.flush()
        return printed


async def run_demo(
    *, cycles: int | None = 6, seed: int = 7, out: TextIO | None = None, poll_s: float = 1.0
) -> int:
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="listingbot-demo-") as tmp:
        async with SimStack(seed=seed, channels=CHANNELS) as sims:
            path = Path(tmp) / "listingbot.yaml"
            path.write_text(demo_config(sims, Path(tmp) / "state.sqlite3", poll_s=poll_s))
            config = load_config(path, env=DEMO_ENV)
            app = App(config)
            await app.start()
            transcript = Transcript(sims, out)
            stop = asyncio.Event()
            polls = {CYCLE_SOURCE: 0}
            # A cycle is one poll of the first source (Kotohomes) and the delivery after it.
            # After the last poll the demo stops once the outbox is empty, so the last cycle
            # is posted too (or after a few delivery passes, should sends keep being retried).
            after_last_poll = {"deliveries": -1}

            def on_poll(outcome: PollOutcome) -> None:
                if outcome.source == CYCLE_SOURCE:
                    polls[CYCLE_SOURCE] += 1
                    if polls[CYCLE_SOURCE] == 1:
                        # A member shapes their own subscription from the chat.
                        sims.chatkitty.post_as(CHANNELS[0][0], CHAT_MEMBER, CHAT_COMMAND)
                    if cycles is not None and polls[CYCLE_SOURCE] == cycles:
                        after_last_poll["deliveries"] = 0
                    elif cycles is None or polls[CYCLE_SOURCE] < cycles:
                        # The market moves between polls: an hour of market time per cycle
                        # (and no more after the last one: polls go on while the demo
                        # waits for its last messages, they never wait on delivery).
                        sims.market.advance(3600)

            async def on_delivery(_outcome: DeliveryOutcome) -> None:
                transcript.flush()
                if after_last_poll["deliveries"] >= 0 and app.store is not None:
                    after_last_poll["deliveries"] += 1
                    # Counted now, after the last poll committed: a pass that was already
                    # under way when it did could not have seen its messages.
                    undelivered, _oldest = await app.store.open_counts()
                    if undelivered == 0 or after_last_poll["deliveries"] >= LAST_PASSES:
                        stop.set()

            app.on_poll.append(on_poll)
            app.on_delivery.append(on_delivery)
            out.write(
                f"listingbot demo · market seed {seed} · "
                f"{'until Ctrl-C' if cycles is None else f'{cycles} poll cycles'}\n"
                "simulators: "
                + " · ".join(f"{name} {getattr(sims, f'{name}_url')}" for name in SIMULATED)
                + "\n\n"
            )
            runner = asyncio.ensure_future(app.run(stop))
            try:
                await runner
            except asyncio.CancelledError:
                stop.set()
                with contextlib.suppress(Exception):
                    await app.shutdown()
                raise
            transcript.flush()
            _summary(out, app, sims)
    return 0


def _summary(out: TextIO, app: App, sims: SimStack) -> None:
    totals = app.totals
    # listingbot's channel messages (members' commands and the answers in their threads
    # are shown in the transcript but are not listings posted).
    channels = sims.chatkitty.messages.values()
    ours = [m for messages in channels for m in messages if "user" not in m]
    replies = [r for m in ours for r in sims.chatkitty.thread(int(m["id"]))]
    photos = sum(1 for m in ours if "file" in m)
    digests = sum(1 for m in ours if _event(m) == "digest")
    requests = ", ".join(f"{name} {len(getattr(sims, name).requests)}" for name in SIMULATED)
    out.write(
        "summary\n"
        f"  polls:            {totals.polls} ({totals.failed_polls} failed)\n"
        f"  listings seen:    {totals.listings}\n"
        f"  events:           {totals.events}\n"
        f"  messages posted:  {len(ours)} across {len(sims.chatkitty.messages)} channels"
        f" ({digests} digests, {photos} photos)\n"
        f"  thread replies:   {len(replies)}\n"
        f"  upstream requests: {requests}\n"
    )
    out.flush()


def _event(message: dict[str, object]) -> object:
    props = message.get("properties")
    envelope = props.get("listingbot") if isinstance(props, dict) else None
    return envelope.get("event") if isinstance(envelope, dict) else None
