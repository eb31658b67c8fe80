"""Figures from several runs, the one results table, and the files it is written to."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results"
RESULTS_MD = ROOT / "RESULTS.md"


@dataclass
class Figure:
    """One measured quantity over several runs."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "runs": len(self.values),
            "values": self.values,
        }


@dataclass
class Row:
    """One line of the table: a figure, its target, and whether the target was met."""

    scenario: str
    case: str
    metric: str
    figure: Figure
    unit: str
    target: str = ""
    met: bool | None = None  # None: no target for this figure
    digits: int = 2
    details: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # shown instead of the figure (a series, not repeated runs)
    correctness: bool = False  # a missed correctness target fails the run; a slow one does not
    # The machine's 1-minute load average when the figure was taken: the cores are shared,
    # so a figure means little without it (ratios measured in the same run mean more).
    load: float = field(default_factory=lambda: os.getloadavg()[0])

    def shown(self) -> str:
        if self.text is not None:
            return self.text
        fmt = f"{{:,.{self.digits}f}}"
        text = fmt.format(self.figure.median)
        if len(self.figure.values) > 1 and self.figure.low != self.figure.high:
            text += f" ({fmt.format(self.figure.low)}..{fmt.format(self.figure.high)})"
        return f"{text} {self.unit}".rstrip()

    def verdict(self) -> str:
        return {None: "", True: "met", False: "MISSED"}[self.met]


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures across machines."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def table(rows: Sequence[Row]) -> str:
    """The results as one Markdown table (also readable as plain text)."""
    header = ("scenario", "case", "metric", "median (min..max)", "target", "", "load")
    lines = [
        [r.scenario, r.case, r.metric, r.shown(), r.target, r.verdict(), f"{r.load:.1f}"]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(fmt(line) for line in lines)
    return "\n".join(out)


def write(
    rows: Sequence[Row], notes: Sequence[str], analysis: str, *, command: str
) -> tuple[Path, Path]:
    """``results/latest.json`` (git-ignored) and ``RESULTS.md`` (for committing)."""
    facts = machine()
    when = datetime.now(UTC).replace(microsecond=0).isoformat()
    RESULTS_DIR.mkdir(exist_ok=True)
    latest = RESULTS_DIR / "latest.json"
    payload = {
        "when": when,
        "command": command,
        "machine": facts,
        "results": [
            {
                **{
                    k: v
                    for k, v in asdict(r).items()
                    if k not in ("figure", "digits", "text", "correctness")
                },
                "figure": r.figure.as_json(),
            }
            for r in rows
        ],
        "notes": list(notes),
    }
    latest.write_text(json.dumps(payload, indent=2) + "\n")
    md = [
        "# listingbot benchmark results",
        "",
        f"`{command}` on {when}: {facts['nproc']} CPUs ({facts['cpu']}), "
        f"{facts['implementation']} {facts['python']}, SQLite {facts['sqlite']}, "
        f"commit {facts['commit'] or 'unknown'}.",
        "",
        "Each figure is the median of several runs, with the smallest and largest in brackets;",
        "`load` is the machine's 1-minute load average when the figure was taken.",
        "",
        table(rows),
        "",
    ]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if analysis:
        md += [analysis.strip(), ""]
    RESULTS_MD.write_text("\n".join(md))
    return latest, RESULTS_MD


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f"python -m benchmarks {args}".strip()
