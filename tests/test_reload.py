"""Specification of ReloadPlan: what a reload changes, worked out before anything is."""

from __future__ import annotations

from pathlib import Path

from listingbot.reload import ReloadPlan
from listingbot.sim import SimStack
from tests.harness import config_text, load

KATO = """\
- name: uk-all
  source: kato
  channel: 704
  filters: {}
"""
HOMES = """\
- name: astoria
  source: kotohomes
  channel: 702
  filters: {zip_codes: ["11101"]}
"""


def test_a_new_state_path_or_ops_address_needs_a_restart(sims: SimStack, tmp_path: Path) -> None:
    """Changing state.path or ops.listen is named as needing a restart, each by its key."""
    old = load(tmp_path, config_text(sims, KATO, state_path=tmp_path / "a.sqlite3"))
    moved = config_text(sims, KATO, state_path=tmp_path / "b.sqlite3")
    moved = moved.replace("ops:\n  listen: null\n", "ops:\n  listen: 127.0.0.1:9999\n")
    plan = ReloadPlan.between(old, load(tmp_path, moved))
    assert [p.split(":")[0] for p in plan.restart_needed] == ["state.path", "ops.listen"]


def test_only_the_source_whose_subscriptions_changed_is_touched(
    sims: SimStack, tmp_path: Path
) -> None:
    """A new Kotohomes subscription touches kotohomes only: Kato keeps its schedule and
    no source gets a new client (no source setting changed)."""
    path = tmp_path / "s.sqlite3"
    old = load(tmp_path, config_text(sims, KATO, state_path=path))
    plan = ReloadPlan.between(old, load(tmp_path, config_text(sims, KATO + HOMES, state_path=path)))
    assert (plan.touched, plan.changed_sources) == ({"kotohomes"}, set())
    pollers = ["kotohomes", "kato"]
    assert not plan.keeps_schedule("poll-kotohomes", pollers)
    assert plan.keeps_schedule("poll-kato", pollers)
    assert plan.keeps_schedule("deliver", pollers)


def test_a_state_section_change_is_seen_without_a_source_change(
    sims: SimStack, tmp_path: Path
) -> None:
    """A changed `state.retention` alone is a state change the reload must apply."""
    path = tmp_path / "s.sqlite3"
    text = config_text(sims, KATO, state_path=path)
    shorter = text.replace(f"  path: {path}\n", f"  path: {path}\n  retention: 5d\n")
    plan = ReloadPlan.between(load(tmp_path, text), load(tmp_path, shorter))
    assert plan.state_changed
    assert (plan.changed_sources, plan.touched, plan.restart_needed) == (set(), set(), [])
