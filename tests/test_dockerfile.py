"""The image is built from the same pinned dependencies and the same install commands the
tests run, so it cannot drift from what is tested (no Docker engine is needed here)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def run_steps() -> list[str]:
    """The RUN instructions, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_image_installs_the_lock_file_then_the_app_without_resolving_again() -> None:
    """The dependency layer installs requirements.lock; the app layer adds no dependency."""
    steps = run_steps()
    assert "/opt/listingbot/bin/pip install -r requirements.lock" in steps
    assert "/opt/listingbot/bin/pip install --no-deps ." in steps
    assert steps.index("/opt/listingbot/bin/pip install -r requirements.lock") < steps.index(
        "/opt/listingbot/bin/pip install --no-deps ."
    )


def test_tested_environment_runs_exactly_the_pinned_versions() -> None:
    """Every pinned runtime dependency is installed here at exactly the pinned version."""
    for name, version in pinned().items():
        assert metadata.version(name) == version, name


def test_lock_covers_every_declared_runtime_dependency() -> None:
    """Each dependency in pyproject.toml is pinned in requirements.lock."""
    declared = metadata.requires("listingbot") or []
    runtime = [r for r in declared if "extra ==" not in r]
    names = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in runtime}
    assert names <= set(pinned())


def test_entry_point_is_exec_form_with_a_cli_healthcheck_as_non_root() -> None:
    """SIGTERM reaches Python (exec form), health goes through the CLI, the user is not root."""
    assert 'ENTRYPOINT ["listingbot"]' in DOCKERFILE
    assert 'CMD ["listingbot", "healthcheck"]' in DOCKERFILE
    assert re.search(r"^USER listingbot$", DOCKERFILE, re.MULTILINE)
    assert 'VOLUME ["/data"]' in DOCKERFILE
    assert "LISTINGBOT_CONFIG=/config/listingbot.yaml" in DOCKERFILE
    assert "curl" not in DOCKERFILE.replace("no curl", "")


def test_app_layer_install_step_builds_a_working_package(tmp_path: Path) -> None:
    """The image's `pip install --no-deps .` (offline here) yields an importable CLI."""
    target = tmp_path / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(target),
        str(ROOT),
    ]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=120)
    assert (target / "listingbot" / "py.typed").exists()
    assert (target / "listingbot" / "sim" / "market.py").exists()
    probe = subprocess.run(
        [sys.executable, "-c", "import listingbot.cli, sys; print(listingbot.cli.__file__)"],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert probe.stdout.strip().startswith(str(target))
