"""``${VAR}`` interpolation from the environment (or ``VAR_FILE``), minding what came from it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listingbot.config._errors import Loc, fmt_loc
from listingbot.errors import ConfigError

# Fields whose values are secrets: never echoed, even when written literally in the file.
SECRET_KEYS = frozenset({"key", "client_id", "client_secret"})


# Aliases can make a tiny file expand enormously when walked. Without aliases every node
# takes at least one character of the file, so a budget of max(floor, file length) admits
# any honest file (10,000 subscriptions included) and still stops an alias bomb.
MAX_NODES = 100_000


_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Interpolated:
    data: Any
    tainted: dict[Loc, str] = field(default_factory=dict)  # path -> the text as written
    secrets: set[str] = field(default_factory=set)  # values that must never be printed
    problems: list[str] = field(default_factory=list)


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.from_files: set[str] = set()

    def lookup(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is not None:
            return value
        file_name = self.env.get(f"{name}_FILE")
        if file_name is None:
            return None
        try:
            content = Path(file_name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "unreadable"
            raise ConfigError(f"{name}_FILE names a file that cannot be read ({reason})") from None
        content = content.removesuffix("\n").removesuffix("\r")
        self.from_files.add(content)
        return content


def _substitute(text: str, env: _Env) -> tuple[str, list[str]]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$``; returns the names missing."""
    out: list[str] = []
    missing: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text) or text[i + 1] not in "${":
            out.append(ch)
            i += 1
            continue
        if text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise ConfigError("unterminated ${ (write $$ for a literal $)")
        ref = text[i + 2 : end]
        name, sep, default = ref.partition(":-")
        if not _VAR_NAME_RE.fullmatch(name):
            raise ConfigError(f"invalid variable reference ${{{ref}}}")
        value = env.lookup(name)
        if sep and not value:
            value = default
        if value is None:
            missing.append(name)
            value = ""
        out.append(value)
        i = end + 1
    return "".join(out), missing


def _bare_variable(text: str) -> bool:
    """True when ``text`` holds ``$NAME`` (not ``${NAME}``, not the escape ``$$``)."""
    i = 0
    while i < len(text) - 1:
        if text[i] == "$":
            if text[i + 1] == "$":
                i += 2
                continue
            if text[i + 1] == "_" or text[i + 1].isalpha():
                return True
        i += 1
    return False


def interpolate(data: Any, env: Mapping[str, str], *, max_nodes: int = MAX_NODES) -> Interpolated:
    result = Interpolated(data=None)
    lookup = _Env(env)
    budget = [max_nodes]

    def walk(node: Any, loc: Loc) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError("the file is too large or expands too much through aliases")
        if isinstance(node, dict):
            return {str(k): walk(v, (*loc, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and loc and loc[-1] in SECRET_KEYS and _bare_variable(node):
            # "$KEY" would be taken literally and sent as the secret: refuse it.
            whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", node.strip())
            name = whole.group(1) if whole else "NAME"
            result.problems.append(
                f"{fmt_loc(loc)}: looks like an environment variable without braces; "
                f"write ${{{name}}} (or $$ for a literal $)"
            )
            return node
        if isinstance(node, str) and "$" in node:
            try:
                value, missing = _substitute(node, lookup)
            except ConfigError as err:
                result.problems.append(f"{fmt_loc(loc)}: {err}")
                return node
            for name in missing:
                result.problems.append(
                    f"{fmt_loc(loc)}: environment variable {name} is not set (nor {name}_FILE)"
                )
            if value != node:
                result.tainted[loc] = node
                if loc and loc[-1] in SECRET_KEYS:
                    result.secrets.add(value)
            return value
        if isinstance(node, str) and loc and loc[-1] in SECRET_KEYS:
            result.secrets.add(node)
        return node

    try:
        result.data = walk(data, ())
    except RecursionError:
        raise ConfigError("the file nests too deeply") from None
    result.secrets |= lookup.from_files
    return result


def is_tainted(loc: Loc, interp: Interpolated) -> bool:
    """True when the value at ``loc`` (or below it) came from the environment or is a secret."""
    if loc and loc[-1] in SECRET_KEYS:
        return True
    n = len(loc)
    return any(path[:n] == loc or loc[: len(path)] == path for path in interp.tainted)
