"""The container files, checked without a container engine (CI has none).

The image is built from the same pinned dependencies and the same install commands the
tests run, so it cannot drift from what is tested; its health check is the liveness check;
compose.yaml and config/listingbot.container.yaml agree with the Dockerfile. (The real
build and run is ../shared/tools/build-image.sh, see the README's Container section.)
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from listingbot.clock import FakeClock
from listingbot.config import load_config, parse_interval
from listingbot.ops import OpsServer
from listingbot.sim import SimStack
from tests.harness import SECRETS, config_text, load, running, write_config, zips

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
CONTAINER_CONFIG = ROOT / "config" / "listingbot.container.yaml"
SECRET_NAMES = (
    "KOTOHOMES_API_KEY",
    "KATO_CLIENT_ID",
    "KATO_CLIENT_SECRET",
    "CHATKITTY_CLIENT_ID",
    "CHATKITTY_CLIENT_SECRET",
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped, continuation lines joined."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def run_commands(stage: list[tuple[str, str]]) -> list[str]:
    """The shell commands of a stage's RUN instructions, split at `&&`."""
    return [part.strip() for word, args in stage if word == "RUN" for part in args.split("&&")]


def healthcheck_command() -> list[str]:
    (args,) = [args for word, args in instructions() if word == "HEALTHCHECK"]
    command = json.loads(args.split(" CMD ", 1)[1])
    assert isinstance(command, list)
    return command


def pinned(lock: str = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile_has_no_syntax_directive() -> None:
    """No `# syntax=` line: it makes BuildKit pull a frontend image, and nothing needs it."""
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE, re.MULTILINE | re.IGNORECASE)


def test_runtime_stage_copies_only_a_venv_made_without_pip() -> None:
    """The runtime image gets the app's venv and nothing else from the build stage, and that
    venv is created without pip (so it carries neither pip nor setuptools)."""
    build, runtime = stages()
    assert "python -m venv --without-pip /opt/listingbot" in run_commands(build)
    copies = [args for word, args in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/listingbot /opt/listingbot"]
    assert not any("pip" in command for command in run_commands(runtime))


def test_image_installs_the_lock_files_then_a_wheel_without_resolving_again() -> None:
    """Build tools come from requirements-build.lock, the dependency layer installs
    requirements.lock, and the app layer builds its wheel with those tools (no isolated
    build environment: nothing downloaded) and installs it without resolving."""
    commands = run_commands(stages()[0])
    into_app = "/opt/build/bin/pip --python /opt/listingbot/bin/python install --no-deps"
    expected = [
        "/opt/build/bin/pip install --no-deps -r requirements-build.lock",
        f"{into_app} -r requirements.lock",
        "/opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .",
        f"{into_app} /wheels/*.whl",
    ]
    assert [c for c in commands if c.startswith("/opt/build/bin/pip ")] == expected


def test_build_tools_satisfy_the_build_system_and_match_the_tested_environment() -> None:
    """requirements-build.lock pins what pyproject's build-system requires, at the version
    installed here (which the wheel test below builds with)."""
    build_pins = pinned("requirements-build.lock")
    text = (ROOT / "pyproject.toml").read_text()
    requires = re.search(r"^requires = \[(.*)\]$", text, re.MULTILINE)
    assert requires is not None
    for requirement in json.loads(f"[{requires.group(1)}]"):
        name, minimum = re.split(r">=", requirement)
        version = build_pins[name.strip()]
        assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))
    for name, version in build_pins.items():
        assert metadata.version(name) == version, name


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


def test_healthcheck_is_the_liveness_check() -> None:
    """HEALTHCHECK runs `listingbot healthcheck` (liveness, /healthz), never the readiness
    check: a source or ChatKitty outage is not something a restart fixes."""
    assert healthcheck_command() == ["listingbot", "healthcheck"]
    assert "--ready" not in DOCKERFILE.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]


@pytest.mark.usefixtures("no_secret_leaks")
async def test_image_healthcheck_stays_healthy_through_a_source_outage(
    sims: SimStack, tmp_path: Path, clock: FakeClock
) -> None:
    """The Dockerfile's HEALTHCHECK command, run as the engine runs it, exits 0 against a
    live service whose only source is down (not ready: `--ready` exits 1), so an outage
    does not get the container restarted."""
    subs = (
        f"- {{name: ny, source: kotohomes, channel: 702, filters: {{zip_codes: {zips('NY')}}}}}\n"
    )
    text = config_text(sims, subs, state_path=tmp_path / "state.sqlite3", sources=("kotohomes",))
    async with running(load(tmp_path, text), clock) as app:
        assert await app.once()
        sims.faults.enabled_for = {"kotohomes"}
        sims.faults.set(rate_500=1.0)
        clock.advance(16 * 60)  # past readiness's 3 x 5m poll interval
        await app.once()
        server = OpsServer(app, "127.0.0.1:0")
        await server.start()
        try:
            probe = write_config(
                tmp_path, text.replace("listen: null", f"listen: 127.0.0.1:{server.port}"), "p.yaml"
            )
            env = {"PATH": str(Path(sys.executable).parent), **SECRETS}
            codes = []
            for extra in ([], ["--ready"]):
                command = healthcheck_command() + extra + ["--config", str(probe)]
                child = await asyncio.create_subprocess_exec(
                    *command, env=env, stdout=asyncio.subprocess.DEVNULL
                )
                codes.append(await asyncio.wait_for(child.wait(), timeout=30))
        finally:
            await server.stop()
    assert codes == [0, 1]


def test_entry_point_is_exec_form_as_non_root_with_state_on_the_volume() -> None:
    """SIGTERM reaches Python (exec form), the user is not root, /data is the volume."""
    runtime = stages()[1]
    assert ("ENTRYPOINT", '["listingbot"]') in runtime
    assert ("USER", "listingbot") in runtime
    assert ("VOLUME", '["/data"]') in runtime
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    assert "LISTINGBOT_CONFIG=/config/listingbot.yaml" in DOCKERFILE
    assert "curl" not in DOCKERFILE.replace("no curl", "")


def test_app_layer_builds_a_wheel_offline_that_installs_into_a_venv_without_pip(
    tmp_path: Path,
) -> None:
    """The image's app-layer commands, run here offline: `pip wheel --no-deps
    --no-build-isolation` builds the wheel with the installed setuptools, and `pip --python
    VENV install --no-deps` puts a working `listingbot` into a venv that has no pip."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

    def offline(*args: str | Path) -> None:
        subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=120, check=True)

    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    offline(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, ROOT)
    offline(sys.executable, "-m", "venv", "--without-pip", venv)
    (wheel,) = wheels.glob("listingbot-*.whl")
    offline(*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel)
    (site,) = venv.glob("lib/python3*/site-packages")
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert installed == {"listingbot"}  # no pip, no setuptools
    assert (site / "listingbot" / "py.typed").exists()
    assert (site / "listingbot" / "sim" / "market.py").exists()
    # The console script runs; the dependencies come from this environment (the image's
    # venv has them from requirements.lock).
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages")
    result = subprocess.run(
        [venv / "bin" / "listingbot", "--version"],
        env={"PYTHONPATH": str(deps)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.stdout.strip() == f"listingbot {metadata.version('listingbot')}"


# ------------------------------------------------------------------------ compose.yaml


def service() -> dict[str, Any]:
    services = COMPOSE["services"]
    assert list(services) == ["listingbot"]
    value = services["listingbot"]
    assert isinstance(value, dict)
    return value


def test_compose_healthcheck_is_the_images_liveness_check() -> None:
    """compose.yaml's healthcheck runs the same command as the Dockerfile's HEALTHCHECK."""
    test = service()["healthcheck"]["test"]
    assert test == ["CMD", *healthcheck_command()]


def test_compose_keeps_state_in_a_named_volume_and_mounts_the_config_read_only() -> None:
    """/data is a named volume declared at the top level; /config is read-only."""
    volumes = service()["volumes"]
    assert "listingbot-data:/data" in volumes
    assert "listingbot-data" in COMPOSE["volumes"]
    assert "./config:/config:ro" in volumes


def test_compose_passes_every_secret_as_a_file() -> None:
    """Each secret the container config reads is NAME_FILE pointing at a compose secret
    under /run/secrets/, and no secret value is in the environment."""
    env = service()["environment"]
    declared = COMPOSE["secrets"]
    for name in SECRET_NAMES:
        assert name not in env
        target = env[f"{name}_FILE"]
        secret = name.lower()
        assert target == f"/run/secrets/{secret}"
        assert secret in service()["secrets"]
        assert declared[secret]["file"] == f"./secrets/{secret}"
    lines = CONTAINER_CONFIG.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(SECRET_NAMES)


def test_compose_stop_grace_period_outlasts_the_services_grace_period() -> None:
    """Compose waits longer after SIGTERM than listingbot gives in-flight sends, so a stop
    is a clean shutdown, not a SIGKILL."""
    assert service()["stop_signal"] == "SIGTERM"
    stop_grace = parse_interval(service()["stop_grace_period"])
    grace_s = yaml.safe_load(CONTAINER_CONFIG.read_text())["delivery"]["grace_period_s"]
    assert stop_grace >= timedelta(seconds=grace_s) + timedelta(seconds=10)


# --------------------------------------------------------- config/listingbot.container.yaml


def test_container_config_keeps_state_on_the_volume_and_listens_on_all_interfaces(
    tmp_path: Path,
) -> None:
    """The container config loads with secrets given as NAME_FILE files; its state is on
    /data and its ops endpoint is reachable from outside the container."""
    env = {}
    for name in SECRET_NAMES:
        (tmp_path / name).write_text(f"value-of-{name}\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    config = load_config(CONTAINER_CONFIG, env=env)
    assert config.state.path == Path("/data/listingbot.sqlite3")
    assert config.ops.listen == "0.0.0.0:9108"
    assert config.chatkitty.client_secret.get_secret_value() == "value-of-CHATKITTY_CLIENT_SECRET"


def test_container_config_passes_check_config(tmp_path: Path) -> None:
    """`listingbot check-config` accepts the container config (exit 0)."""
    env = {"PATH": "/usr/bin:/bin"}
    for name in SECRET_NAMES:
        (tmp_path / name).write_text("x\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-m", "listingbot.cli", "check-config", "--config", CONTAINER_CONFIG],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": ok" in result.stdout
