"""`listingbot demo`: the whole service on a fresh machine, no credentials, no network."""

from __future__ import annotations

import io
import subprocess
import sys

from listingbot.demo import run_demo


async def test_demo_runs_the_service_and_prints_a_transcript_and_summary() -> None:
    """The demo posts messages into several channels, prints them and a summary, returns 0."""
    out = io.StringIO()
    assert await run_demo(cycles=3, seed=7, out=out, poll_s=0.2) == 0
    text = out.getvalue()
    assert "#west-coast" in text  # first_run: post announces current matches
    assert "summary" in text
    posted = int(text.split("messages posted:")[1].split()[0])
    assert posted > 0


async def test_demo_posts_the_messages_of_its_last_cycle() -> None:
    """`demo --cycles 1` delivers what its only poll found (first_run: post) before it
    stops: every message posted is printed, and the posted count matches."""
    out = io.StringIO()
    assert await run_demo(cycles=1, seed=7, out=out, poll_s=0.2) == 0
    text = out.getvalue()
    posted = int(text.split("messages posted:")[1].split()[0])
    assert posted > 0
    assert text.count("\n#") == posted  # one transcript entry per posted message
    assert "#west-coast" in text


def test_demo_command_exits_zero_from_the_command_line() -> None:
    """`listingbot demo --cycles 2` is a real entry point that exits 0 by itself."""
    result = subprocess.run(
        [sys.executable, "-m", "listingbot.cli", "demo", "--cycles", "2", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stdout
    assert "Traceback" not in result.stderr
