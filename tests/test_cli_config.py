"""Bad configuration through the command line: every broken file in tests/configs/bad is
refused by `check-config` and by `once` with exit code 2 and a message naming the
problem, never a traceback. A channel ChatKitty does not have is refused by
`check-config --online`; `once` holds just its subscription and exits 1 naming it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from listingbot.cli import main
from listingbot.sim import SimStack
from tests.harness import CHANNELS, SECRETS, config_text, make_sims, write_config, zips

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

BAD = Path(__file__).resolve().parent / "configs" / "bad"
EXPECTED: dict[str, str] = yaml.safe_load((BAD / "expected.yaml").read_text())
CASES = sorted(EXPECTED.items())
# Variables the corpus must not find set (missing_variable.yaml relies on it).
UNSET = ("CHATKITTY_SECRET", "LISTINGBOT_CONFIG", *(f"{name}_FILE" for name in SECRETS))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment a user would have: the five secrets set, nothing else."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def assert_refused(code: int, out: str, err: str, phrase: str) -> None:
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert phrase in err
    assert "Traceback" not in err + out
    for name, value in SECRETS.items():
        assert value not in err + out, f"{name} leaked"


def test_corpus_is_complete() -> None:
    """The index names every broken file, and there are at least 25 of them."""
    files = {p.name for p in BAD.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED)
    assert len(files) >= 25


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("name", "phrase"), CASES)
def test_check_config_refuses_bad_file(
    name: str, phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` on a broken file: exit 2 and the problem named, no traceback."""
    code = main(["check-config", "--config", str(BAD / name)])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, phrase)
    assert str(BAD / name) in err


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("name", "phrase"), CASES)
def test_once_refuses_bad_file(name: str, phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`once` on a broken file: exit 2 and the problem named, before touching anything."""
    code = main(["once", "--config", str(BAD / name)])
    out, err = capsys.readouterr()
    assert_refused(code, out, err, phrase)
    assert not list(BAD.glob("*.sqlite3*")), "a state file was created for a refused config"


def _unknown_channel_config(sims: SimStack, tmp_path: Path) -> Path:
    subs = (
        "- name: ny-homes\n  source: kotohomes\n  channel: 999\n"
        f"  filters: {{states: [NY], zip_codes: {zips('NY')}}}\n"
    )
    text = config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",))
    return write_config(tmp_path, text)


@pytest.mark.usefixtures("world")
async def test_check_config_online_refuses_a_channel_chatkitty_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid file naming a channel ChatKitty lacks: `check-config --online` exits 2
    naming the subscription's key and the channel, after checking the credentials."""
    async with make_sims(channels=CHANNELS) as sims:
        path = _unknown_channel_config(sims, tmp_path)
        # main() runs its own event loop; the simulators keep serving on this one.
        code = await asyncio.to_thread(main, ["check-config", "--online", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "kotohomes: ok (API key accepted)" in out
    assert "chatkitty: ok (credentials accepted, 3 channel(s))" in out
    assert "subscriptions[0].channel (ny-homes): ChatKitty has no channel with id 999" in out


@pytest.mark.usefixtures("world")
async def test_check_config_online_names_a_refused_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config --online` exits 1 naming the API whose credentials are refused."""
    async with make_sims(channels=CHANNELS) as sims:
        sims.kato.clients = {"someone-else": "not-ours"}
        text = config_text(sims, CHANNEL_OK, state_path=tmp_path / "state.sqlite3")
        path = write_config(tmp_path, text)
        code = await asyncio.to_thread(main, ["--config", str(path), "check-config", "--online"])
    out, _err = capsys.readouterr()
    assert code == 1
    assert "kotohomes: ok (API key accepted)" in out
    assert "kato: FAILED: kato: " in out
    assert "channels: ok (all 1 subscription(s))" in out


CHANNEL_OK = "- name: uk\n  source: kato\n  channel: uk\n  filters: {}\n"


async def _run(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "listingbot.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_real_process_refuses_a_bad_file(world: dict[str, str], tmp_path: Path) -> None:
    """As a real process: `once` on a broken file exits 2 with the message, no traceback."""
    name = "syntax_error.yaml"
    code, out, err = await _run("once", "--config", str(BAD / name), env=world, cwd=tmp_path)
    assert_refused(code, out, err, EXPECTED[name])
    assert list(tmp_path.iterdir()) == []  # no state file was created


async def test_real_process_once_names_an_unknown_channel_and_exits_1(
    world: dict[str, str], tmp_path: Path
) -> None:
    """As a real process: `once` with a channel ChatKitty lacks holds that subscription,
    names it and exits 1, no traceback."""
    async with make_sims(channels=CHANNELS) as sims:
        path = _unknown_channel_config(sims, tmp_path)
        code, out, err = await _run("once", "--config", str(path), env=world, cwd=tmp_path)
    assert code == 1, err
    assert "ChatKitty has no channel with id 999" in out + err
    assert "Traceback" not in out + err


@pytest.mark.usefixtures("world")
def test_check_config_warns_about_a_states_only_search_and_still_accepts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` on a states-only Kotohomes search: exit 0, and a warning on stderr
    saying today's API refuses it and which constraint to add."""
    text = (BAD / "bad_state_code.yaml").read_text().replace("[NY, New Jersey]", "[NY, NJ]")
    path = tmp_path / "states_only.yaml"
    path.write_text(text)
    code = main(["check-config", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert ": ok" in out
    assert "warning: subscriptions[0].filters: today's Kotohomes API refuses" in err
    assert "add zip_codes, territory, mls_numbers or latitude + longitude + radius" in err


@pytest.mark.usefixtures("world")
async def test_once_logs_each_config_warning_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A states-only Kotohomes search on the seed's API still runs (exit 0) and the
    warning that today's API refuses it is logged once at start."""
    async with make_sims(channels=CHANNELS, kotohomes_mode="seed") as sims:
        subs = "- name: ny-homes\n  source: kotohomes\n  channel: 702\n  filters: {states: [NY]}\n"
        text = config_text(
            sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",)
        )
        path = write_config(tmp_path, text)
        code = await asyncio.to_thread(main, ["once", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in (out + err).splitlines() if "config_warning" in line]
    assert len(lines) == 1
    assert "today's Kotohomes API refuses a search by states alone" in lines[0]
