"""Problems found in a config file, and their wording: every one by key path, none with a secret."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydantic import (
    ValidationError,
)
from pydantic_core import PydanticCustomError

from listingbot.errors import ConfigError
from listingbot.redact import redact_text

Loc: TypeAlias = tuple[str | int, ...]


MAX_PROBLEMS = 40


def problem(text: str, safe: str | None = None) -> PydanticCustomError:
    """A validation error; ``safe`` is the wording without the offending value."""
    return PydanticCustomError("listingbot", "{text}", {"text": text, "safe": safe or text})


@dataclass
class Problems:
    """Problems found by one validator at several places below its own location."""

    items: list[tuple[Loc, str, str]] = field(default_factory=list)

    def add(self, where: Loc, text: str, safe: str | None = None) -> None:
        self.items.append((where, text, safe or text))

    def raise_if_any(self) -> None:
        if self.items:
            raise PydanticCustomError(
                "listingbot_problems",
                "{summary}",
                {"summary": self.items[0][2], "problems": tuple(self.items)},
            )


def show(value: object) -> str:
    """A short rendering of a user-written value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return num(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def num(value: float) -> str:
    """Numbers as people write them: ``3`` not ``3.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_TYPE_WORDS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "frozen_set_type": "expected a list",
    "finite_number": "expected a finite number",
}


def message(error: Any, safe: bool, unknown_key: Callable[[Loc], str]) -> str:
    """One pydantic error in words; ``safe``: without the value written."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    loc: Loc = error["loc"]
    value = error.get("input")
    if kind == "listingbot":
        return str(ctx["safe"] if safe else ctx["text"])
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return unknown_key(loc)
    if kind in _TYPE_WORDS:
        words = _TYPE_WORDS[kind]
        if safe:
            return words
        return f"{words} (got {show(value)})"
    if kind in {"literal_error", "enum"}:
        expected = str(ctx.get("expected", ""))
        return f"must be {expected}" + ("" if safe else f" (got {show(value)})")
    bounds = {
        "greater_than": ("> ", "gt"),
        "greater_than_equal": (">= ", "ge"),
        "less_than": ("< ", "lt"),
        "less_than_equal": ("<= ", "le"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        got = "" if safe else f" (got {show(value)})"
        return f"must be {op}{num(ctx[key])}{got}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    msg = str(error.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "should be")


def error_lines(
    err: ValidationError, *, tainted: Callable[[Loc], bool], unknown_key: Callable[[Loc], str]
) -> list[str]:
    """One line per problem; where ``tainted`` (the value came from the environment or is
    a secret) in the wording that does not quote the value."""
    lines: list[str] = []
    for error in err.errors():
        loc: Loc = tuple(error["loc"])
        if error["type"] == "listingbot_problems":
            for where, text, safe_text in error["ctx"]["problems"]:
                full = (*loc, *where)
                shown = safe_text if tainted(full) else text
                lines.append(f"{fmt_loc(full) or '(top level)'}: {shown}")
            continue
        words = message(error, tainted(loc), unknown_key)
        lines.append(f"{fmt_loc(loc) or '(top level)'}: {words}")
    return lines


def config_error(source: str, lines: list[str], secrets: Iterable[str] = ()) -> ConfigError:
    unique = list(dict.fromkeys(lines))
    extra = len(unique) - MAX_PROBLEMS
    shown = unique[:MAX_PROBLEMS] + ([f"... and {extra} more"] if extra > 0 else [])
    plural = "s" if len(unique) != 1 else ""
    body = "\n".join(f"  {line}" for line in shown)
    text = f"{source}: invalid configuration ({len(unique)} problem{plural}):\n{body}"
    # Belt and braces: messages are built not to echo secrets; this catches the rest.
    return ConfigError(redact_text(text, secrets, min_len=4))
