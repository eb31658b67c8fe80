"""The configuration users write: YAML in, a validated and frozen ``Config`` out.

``load_config`` reads the file, ``parse_config`` does the rest: YAML with a few YAML 1.1
surprises switched off (``_yaml``), ``${VAR}`` interpolation from the environment
(``_env``), validation by the models (``settings``: the sections and ``Config``;
``subscriptions``; ``filters``: each source's filters; ``_types``: the base model and
scalar types), and one ``ConfigError`` listing every problem by key path
(``subscriptions[1].filters.price_max: must be >= price_min (900000 < 1000000)``), worded
by ``_errors``. No message ever carries a secret or a value that came from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from listingbot.config._env import MAX_NODES, interpolate, is_tainted
from listingbot.config._errors import config_error, error_lines, message
from listingbot.config._types import parse_interval
from listingbot.config._yaml import load_yaml, raw_key
from listingbot.config.filters import (
    KATO_PROPERTY_TYPES,
    KATO_STATUSES,
    KOTOHOMES_PROPERTY_TYPES,
    US_STATE_CODES,
    KatoFilters,
    KotohomesFilters,
    LocalFilters,
)
from listingbot.config.settings import (
    KATO_URL_FIELDS,
    ChatKittyConfig,
    CommandsConfig,
    Config,
    DeliveryConfig,
    KatoConfig,
    KotohomesConfig,
    LogConfig,
    MessagesConfig,
    OpsConfig,
    SourcesConfig,
    StateConfig,
    config_warnings,
    unknown_key,
)
from listingbot.config.subscriptions import Subscription, raw_cross_lines
from listingbot.errors import ConfigError

__all__ = [
    "KATO_PROPERTY_TYPES",
    "KATO_STATUSES",
    "KATO_URL_FIELDS",
    "KOTOHOMES_PROPERTY_TYPES",
    "US_STATE_CODES",
    "ChatKittyConfig",
    "CommandsConfig",
    "Config",
    "DeliveryConfig",
    "KatoConfig",
    "KatoFilters",
    "KotohomesConfig",
    "KotohomesFilters",
    "LocalFilters",
    "LogConfig",
    "MessagesConfig",
    "OpsConfig",
    "SourcesConfig",
    "StateConfig",
    "Subscription",
    "config_warnings",
    "error_message",
    "load_config",
    "parse_config",
    "parse_interval",
    "raw_key",
]


def parse_config(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
    base_dir: Path | None = None,
) -> Config:
    """Parse, interpolate and validate configuration text.

    ``source`` names the file in messages; relative paths in the file (``state.path``)
    are resolved against ``base_dir`` when it is given.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    try:
        data = load_yaml(text)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if data is None:
        raise ConfigError(f"{source}: the configuration file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys "
            "(state, chatkitty, sources, subscriptions, ...), not a list or a single value"
        )
    try:
        interp = interpolate(data, environ, max_nodes=max(MAX_NODES, len(text)))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if interp.problems:
        raise config_error(source, interp.problems, interp.secrets)
    try:
        commands = interp.data.get("commands")
        enabled = commands.get("enabled_channels") if isinstance(commands, dict) else None
        context = {"base_dir": base_dir, "raw_commands": bool(enabled)}
        return Config.model_validate(interp.data, context=context)
    except ValidationError as err:
        lines = error_lines(
            err,
            tainted=lambda loc: is_tainted(loc, interp),
            unknown_key=lambda loc: unknown_key(loc, interp.data),
        )
        lines += raw_cross_lines(interp.data)
        # ``from None``: the pydantic error quotes input values, secrets included.
        raise config_error(source, lines, interp.secrets) from None


def error_message(error: Any, raw: Any, *, safe: bool = False) -> str:
    """The words ``check-config`` gives one pydantic ``error`` in ``raw`` (the file's data);
    ``safe``: without quoting the value (it came from the environment or is a secret)."""
    return message(error, safe, lambda loc: unknown_key(loc, raw))


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{path}: cannot read the configuration file ({reason})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    return parse_config(text, env=env, source=str(path), base_dir=path.parent)
