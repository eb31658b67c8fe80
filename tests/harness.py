"""The end-to-end test bed: the real app, real clients and a real SQLite file, against the
in-package simulators on loopback. Nothing inside listingbot is patched."""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from listingbot.app import App
from listingbot.clock import FakeClock
from listingbot.config import Config, load_config
from listingbot.sim import SimStack, us_zip_codes

# Distinctive values: any of them showing up in a log, an error or a message is a leak.
SECRETS: dict[str, str] = {
    "KOTOHOMES_API_KEY": "kotoKEY-s3cr3t-91f4c2",
    "KATO_CLIENT_ID": "katoID-s3cr3t-5a7e0b",
    "KATO_CLIENT_SECRET": "katoSECRET-s3cr3t-c81d3f",
    "CHATKITTY_CLIENT_ID": "ckID-s3cr3t-2b9f6a",
    "CHATKITTY_CLIENT_SECRET": "ckSECRET-s3cr3t-e47a10",
}

CHANNELS = ((702, "nyc-homes", "NYC homes"), (703, "west-coast", "West coast"), (704, "uk", "UK"))


def zips(*states: str) -> str:
    """The market's ZIP codes in ``states`` as a YAML flow list: a Kotohomes constraint
    (today's API refuses ``states`` alone) that selects exactly those states' listings."""
    return "[" + ", ".join(f"'{z}'" for z in us_zip_codes(*states)) + "]"


def make_sims(clock: FakeClock | None = None, **kwargs: Any) -> SimStack:
    """Simulators that accept exactly the test secrets.

    Kotohomes follows today's API unless asked otherwise. Scripts written before it did
    (the evidence reproductions search by ``states`` alone, which today's API refuses)
    can run against the seed's API with ``LISTINGBOT_SIM_KOTOHOMES_MODE=seed``; the test
    suite never sets it.
    """
    kwargs.setdefault("kotohomes_mode", os.environ.get("LISTINGBOT_SIM_KOTOHOMES_MODE", "current"))
    kwargs.setdefault("seed", 11)
    kwargs.setdefault("channels", CHANNELS)
    if "market" not in kwargs:
        kwargs.setdefault("kotohomes_count", 60)
        kwargs.setdefault("kato_count", 24)
    sims = SimStack(clock=clock, **kwargs)
    sims.kotohomes.api_keys = {SECRETS["KOTOHOMES_API_KEY"]}
    sims.kato.clients = {SECRETS["KATO_CLIENT_ID"]: SECRETS["KATO_CLIENT_SECRET"]}
    sims.chatkitty.clients = {SECRETS["CHATKITTY_CLIENT_ID"]: SECRETS["CHATKITTY_CLIENT_SECRET"]}
    return sims


def config_text(
    sims: SimStack,
    subscriptions: str,
    *,
    state_path: Path,
    kotohomes: str = "",
    kato: str = "",
    sources: tuple[str, ...] = ("kotohomes", "kato"),
    digest_over: int | None = 0,
    threads: bool | None = False,
    messages: str = "",
    extra: str = "",
) -> str:
    """A config for the app against ``sims``.

    ``digest_over`` is 0 (no digests) unless a test asks for one, so that tests see one
    message per event; None leaves it out (the documented default, 10). ``threads`` is
    False (every message in the channel, none in a thread) unless a test asks for threads,
    for the same reason; None leaves it out (the default, on). ``messages``: more keys of
    the ``messages`` section.
    """
    parts = [
        f"state:\n  path: {state_path}\n",
        "chatkitty:\n"
        f"  api_url: {sims.chatkitty_url}\n"
        f"  path_prefix: {sims.chatkitty_prefix}\n"
        f"  token_url: {sims.chatkitty_token_url}\n"
        "  client_id: ${CHATKITTY_CLIENT_ID}\n"
        "  client_secret: ${CHATKITTY_CLIENT_SECRET}\n"
        "  timeout_s: 2\n",
        "sources:\n",
    ]
    if "kotohomes" in sources:
        parts.append(
            "  kotohomes:\n"
            f"    api_url: {sims.kotohomes_url}\n"
            "    key: ${KOTOHOMES_API_KEY}\n"
            "    poll_interval: 5m\n"
            "    timeout_s: 2\n" + textwrap.indent(textwrap.dedent(kotohomes), "    ")
        )
    if "kato" in sources:
        parts.append(
            "  kato:\n"
            f"    api_url: {sims.kato_url}\n"
            "    client_id: ${KATO_CLIENT_ID}\n"
            "    client_secret: ${KATO_CLIENT_SECRET}\n"
            "    poll_interval: 10m\n"
            "    timeout_s: 2\n" + textwrap.indent(textwrap.dedent(kato), "    ")
        )
    parts.append("subscriptions:\n" + textwrap.indent(textwrap.dedent(subscriptions), "  "))
    parts.append("ops:\n  listen: null\n")
    section = "" if digest_over is None else f"digest_over: {digest_over}\n"
    section += "" if threads is None else f"threads: {str(threads).lower()}\n"
    section += textwrap.dedent(messages)
    if section:
        parts.append("messages:\n" + textwrap.indent(section, "  "))
    parts.append(textwrap.dedent(extra))
    return "".join(parts)


def write_config(tmp_path: Path, text: str, name: str = "listingbot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write_config(tmp_path, text), env=SECRETS)


@asynccontextmanager
async def running(config: Config, clock: FakeClock) -> AsyncIterator[App]:
    """A started app on the fake clock, closed afterwards."""
    app = App(config, clock=clock)
    await app.start()
    try:
        yield app
    finally:
        await app.close()


def messages(sims: SimStack, channel: int) -> list[dict[str, Any]]:
    return list(sims.chatkitty.messages.get(channel, []))


def sample(app: App, name: str, **labels: str) -> float:
    """A sample of the app's metrics as /metrics shows it (``name`` with its ``_total``),
    read through prometheus-client's public API; 0 for a label set never counted."""
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def meta(message: dict[str, Any]) -> dict[str, Any]:
    props = message["properties"]
    assert isinstance(props, dict)
    value = props["listingbot"]
    assert isinstance(value, dict)
    return value


class LogCapture(io.StringIO):
    """Where structlog writes during a test (JSON lines)."""
