"""YAML loading without YAML 1.1's surprises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from listingbot.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's traps, and strict about duplicate keys.

    Only true/false are booleans (``NO``, ``on``, ``off`` stay strings) and numbers with a
    leading zero stay strings (YAML 1.1 reads the ZIP code 07030 as octal 3608).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in {_BOOL_TAG, _INT_TAG}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Only the parser's own words: its snippet of the line could show a secret.
        what = "; ".join(p for p in (err.context, err.problem) if p) or "cannot parse"
        raise ConfigError(f"YAML syntax error{where}: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"YAML error: {type(err).__name__}") from None


def raw_key(path: Path, section: str, key: str, default: Any = None) -> Any:
    """``section.key`` as written in the YAML file at ``path``, not validated.

    For the commands that need one key when the whole file no longer validates (its
    secrets are not in this shell's environment, or an edit broke another key): the
    state file of ``status``, the listen address of ``healthcheck``. ``default`` when the
    section is absent or null or the key is absent; ``ConfigError`` when the file cannot
    be read or parsed, or the section is not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read {section}.{key} ({type(err).__name__})") from None
    part = data.get(section) if isinstance(data, dict) else None
    if part is None:
        return default
    if not isinstance(part, dict):
        raise ConfigError(f"{path}: {section} is not a mapping")
    return part.get(key, default)
