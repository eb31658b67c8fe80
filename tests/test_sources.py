"""The sources: the registry, and the service against each source as it behaves today and
as the seed described it.

End to end: the real app, the real clients and SQLite, against the simulators in their
``current`` mode (today's APIs, the default) and, where the APIs differ, their ``seed``
mode. Nothing inside listingbot is patched.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from listingbot import sources
from listingbot.clock import FakeClock
from listingbot.config import parse_config
from listingbot.models import SOURCES
from listingbot.sim import SimStack, us_zip_codes
from tests.harness import SECRETS, config_text, load, make_sims, messages, meta, running, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

NY_ZIPS = f"""\
- name: ny-zips
  source: kotohomes
  channel: 702
  filters: {{zip_codes: {zips("NY")}}}
"""


def _populate(sims: SimStack, count: int) -> list[str]:
    """``count`` NY listings created over the last 90 days, oldest first; their ids."""
    market = sims.market
    now = market.now
    zip_codes = us_zip_codes("NY")
    ids = []
    for n in range(count):
        market.now = now - timedelta(days=90) + timedelta(days=90) * n / count
        ids.append(market.add_kotohomes(state="NY", zip_code=zip_codes[n % len(zip_codes)])["id"])
    market.now = now
    return ids


def _events(sims: SimStack) -> Counter[tuple[str, str]]:
    return Counter((meta(m)["event"], meta(m)["listing_id"]) for m in messages(sims, 702))


@pytest.mark.parametrize(("mode", "count"), [("current", 120), ("seed", 40)])
async def test_new_listings_an_old_price_drop_and_an_old_status_change_post_once(
    tmp_path: Path, clock: FakeClock, mode: str, count: int
) -> None:
    """120 listings in a ZIP-code set on today's API (40 on the seed's, which cannot be
    walked past one page): three new listings, the price drop of the oldest listing and
    the status change of another old one are each posted once, and nothing else."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0, kotohomes_mode=mode) as sims:
        ids = _populate(sims, count)
        config = load(
            tmp_path,
            config_text(
                sims, NY_ZIPS, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",)
            ),
        )
        async with running(config, clock) as app:
            assert await app.once()  # the first run: a baseline, nothing posted
            assert messages(sims, 702) == []
            sims.market.now += timedelta(minutes=5)
            fresh = [sims.market.add_kotohomes(state="NY", zip_code="10001")["id"] for _ in "abc"]
            oldest, old = ids[0], ids[3]
            price = sims.market.find("kotohomes", oldest)["price"]  # type: ignore[index]
            sims.market.update_kotohomes(oldest, price=price - 10_000)
            status = sims.market.find("kotohomes", old)["status"]  # type: ignore[index]
            sims.market.update_kotohomes(old, status="pending" if status == "active" else "active")
            assert await app.once()
            assert await app.once()  # nothing changed since: nothing more is posted
            gaps = app.metrics.registry.get_sample_value(
                "listingbot_possible_gaps_total", {"source": "kotohomes"}
            )
        assert _events(sims) == Counter(
            [
                *(("new", listing_id) for listing_id in fresh),
                ("price_drop", oldest),
                ("status_change", old),
            ]
        )
        assert gaps == 0


UK_ALL = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
  first_run: post
"""


@pytest.mark.parametrize("mode", ["current", "seed"])
async def test_every_kato_listing_is_posted_once_with_a_link_whatever_its_shape(
    tmp_path: Path, clock: FakeClock, mode: str
) -> None:
    """Today's PHP-shaped records and the seed's clean ones: each listing is posted once,
    nothing of it is dropped, and each message links the listing_url template."""
    template = "https://agency.example/property/{reference_number}"
    async with make_sims(clock, kotohomes_count=0, kato_count=40, kato_mode=mode) as sims:
        config = load(
            tmp_path,
            config_text(
                sims,
                UK_ALL,
                state_path=tmp_path / "state.sqlite3",
                sources=("kato",),
                kato=f"listing_url: {template}\n",
            ),
        )
        async with running(config, clock) as app:
            assert await app.once()
            dropped = [
                s
                for metric in app.metrics.registry.collect()
                if metric.name == "listingbot_record_fields_dropped"
                for s in metric.samples
                if s.name.endswith("_total")
            ]
        live = {str(r["id"]): r for r in sims.market.live("kato")}
        posted = messages(sims, 704)
        assert sorted(meta(m)["listing_id"] for m in posted) == sorted(live)
        for message in posted:
            record = live[meta(message)["listing_id"]]
            link = template.format(reference_number=record["reference_number"])
            assert link in message["body"]
        assert sum(s.value for s in dropped) == 0


async def test_a_kato_record_without_a_template_links_its_brochure(
    tmp_path: Path, clock: FakeClock
) -> None:
    """No sources.kato.listing_url: the message links the record's brochure file."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        record = sims.market.add_kato()
        config = load(
            tmp_path,
            config_text(sims, UK_ALL, state_path=tmp_path / "state.sqlite3", sources=("kato",)),
        )
        async with running(config, clock) as app:
            assert await app.once()
        (message,) = messages(sims, 704)
        brochure = next(f["url"] for f in record["files"] if f["type"] == "brochure")
        assert brochure in message["body"]


async def test_several_kato_statuses_post_the_listings_of_each(
    tmp_path: Path, clock: FakeClock
) -> None:
    """status: [available, let] posts the listings of both statuses (one request per
    status upstream; Laravel would keep only the last repeated name)."""
    subs = UK_ALL.replace("filters: {}", "filters: {status: [available, let]}")
    async with make_sims(clock, kotohomes_count=0, kato_count=60) as sims:
        config = load(
            tmp_path,
            config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kato",)),
        )
        async with running(config, clock) as app:
            assert await app.once()
        wanted = {
            str(r["id"]) for r in sims.market.live("kato") if r["status"] in ("available", "let")
        }
        statuses = {r["status"] for r in sims.market.live("kato") if str(r["id"]) in wanted}
        assert statuses == {"available", "let"}
        assert sorted(meta(m)["listing_id"] for m in messages(sims, 704)) == sorted(wanted)


async def test_a_first_poll_too_big_to_walk_never_takes_the_oldest_page_for_the_newest(
    tmp_path: Path, clock: FakeClock
) -> None:
    """1,100 listings on today's API (oldest first): the first poll walks as far as it
    may, then marks where today's creations are; the next poll posts the one listing
    created since - not the old listings the first walk did not reach."""
    async with make_sims(clock, kotohomes_count=0, kato_count=0) as sims:
        _populate(sims, 1100)
        config = load(
            tmp_path,
            config_text(
                sims, NY_ZIPS, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",)
            ),
        )
        async with running(config, clock) as app:
            first = await app.poll("kotohomes")
            sims.market.now += timedelta(minutes=1)
            fresh = sims.market.add_kotohomes(state="NY", zip_code="10001")["id"]
            assert await app.once()
        assert first.requests == 1 + 20  # the update search, then the walk's 20 pages
        assert _events(sims) == Counter([("new", fresh)])


# ---------------------------------------------------------------- the registry

KATO_ONLY = """\
state: {path: state.sqlite3}
chatkitty:
  api_url: https://api.chatkitty.com
  token_url: https://authorization.chatkitty.com/oauth/token
  client_id: ${CHATKITTY_CLIENT_ID}
  client_secret: ${CHATKITTY_CLIENT_SECRET}
sources:
  kato:
    client_id: ${KATO_CLIENT_ID}
    client_secret: ${KATO_CLIENT_SECRET}
    poll_interval: 7m
subscriptions:
  - {name: uk, source: kato, channel: 704, filters: {}}
"""


def test_the_registry_holds_every_source_once_by_its_name() -> None:
    """`sources.ALL` names every source of `SOURCES`, in order; `get` finds each by name."""
    assert tuple(s.name for s in sources.ALL) == SOURCES
    for source in sources.ALL:
        assert sources.get(source.name) is source
    with pytest.raises(KeyError):
        sources.get("zillow")


def test_a_source_reads_only_its_own_section_of_the_config() -> None:
    """An unconfigured source has no settings and no secrets; a configured one has its
    own section's settings and exactly its own credentials."""
    config = parse_config(KATO_ONLY, env=SECRETS, source="test.yaml")
    kotohomes, kato = sources.get("kotohomes"), sources.get("kato")
    assert kotohomes.settings(config) is None
    assert kotohomes.secrets(config) == ()
    settings = kato.settings(config)
    assert settings is not None
    assert settings.poll_interval == timedelta(minutes=7)
    shown = [s.get_secret_value() for s in kato.secrets(config)]
    assert shown == [SECRETS["KATO_CLIENT_ID"], SECRETS["KATO_CLIENT_SECRET"]]
