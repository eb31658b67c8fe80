"""The ``/listings`` command language: text in, a :class:`Command` (or a friendly refusal) out.

Pure functions, no I/O. A subscription's filters are written the way people talk
(``zip=10001,10002 price<=900k beds>=3 type=for_sale``) and turned into the very
mapping a subscription's ``filters:`` holds in the YAML, then validated by the config's
own models (:class:`listingbot.config.Subscription`): the chat and the file accept the
same things and refuse them with the same reasons. Every refusal is a
:class:`CommandError` whose text names the part of the command that is wrong.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from listingbot import sources
from listingbot.config import Subscription
from listingbot.config import error_message as _config_message  # the YAML's own wording
from listingbot.config.filters import Filters
from listingbot.models import Source
from listingbot.sources.base import ChatFilter
from listingbot.text import sanitize

__all__ = [
    "NO_FILTERS",
    "PREFIX",
    "Command",
    "CommandError",
    "Explain",
    "Help",
    "ListSubs",
    "Manage",
    "Subscribe",
    "Term",
    "build_subscription",
    "describe_filters",
    "echo",
    "is_command",
    "parse_command",
]

PREFIX = "/listings"
NO_FILTERS = "(no filters: every listing)"  # what describe_filters says of an empty filter set
MAX_ECHO = 120  # characters of a user's text quoted back in an answer
MAX_ANSWER = 700  # characters of a refusal
MAX_COMMAND = 2000  # longer bodies are refused before they are parsed

Op = Literal["=", "<=", ">="]


class CommandError(ValueError):
    """A command that cannot be carried out; ``str()`` is the answer for the channel.

    The text is sanitized here, whatever built it: a refusal often quotes what was written.
    """

    def __init__(self, text: str) -> None:
        super().__init__(sanitize(text, max_len=MAX_ANSWER))


@dataclass(frozen=True)
class Term:
    """One ``key OP value`` of a subscribe command, as written (``price<=900k``)."""

    key: str
    op: Op
    value: str
    text: str


@dataclass(frozen=True)
class Help:
    verb: Literal["help"] = "help"


@dataclass(frozen=True)
class ListSubs:
    verb: Literal["list"] = "list"


@dataclass(frozen=True)
class Subscribe:
    source: Source
    terms: tuple[Term, ...]
    name: str | None = None
    verb: Literal["subscribe"] = "subscribe"


@dataclass(frozen=True)
class Manage:
    """``pause``, ``resume`` or ``unsubscribe`` one subscription of the channel."""

    verb: Literal["pause", "resume", "unsubscribe"]
    name: str


@dataclass(frozen=True)
class Explain:
    listing_id: str
    name: str | None = None
    verb: Literal["explain"] = "explain"


Command = Help | ListSubs | Subscribe | Manage | Explain

# Changing a channel's subscriptions needs the `allow` permission; the rest is for everyone.
CHANGING_VERBS = frozenset({"subscribe", "pause", "resume", "unsubscribe"})
VERBS = ("subscribe", "list", "pause", "resume", "unsubscribe", "explain", "help")


# --------------------------------------------------------------------------- vocabulary

# Each source declares its chat words (``Source.chat``); the grammar knows none itself.


def _words(source: str) -> Mapping[str, ChatFilter]:
    """The chat words of ``source``, in the order answers list them."""
    return sources.get(source).chat.filters


@functools.cache
def _vocabulary(source: str) -> dict[str, ChatFilter]:
    """Every word a subscribe command of ``source`` accepts, YAML names included."""
    chat = sources.get(source).chat
    words = dict(chat.filters)
    for alias, word in chat.synonyms.items():
        words[alias] = words[word]
    for spec in chat.filters.values():
        if spec.kind == "range":
            words[f"{spec.field}_min"] = ChatFilter("scalar", f"{spec.field}_min", spec.money, True)
            words[f"{spec.field}_max"] = ChatFilter("scalar", f"{spec.field}_max", spec.money, True)
        else:
            words.setdefault(spec.field, spec)
    return words


@functools.cache
def _chat_words_of(source: str) -> dict[str, str]:
    """The chat word shown for each YAML key in answers (``zip`` for zip_codes)."""
    out: dict[str, str] = {}
    for word, spec in _vocabulary(source).items():
        keys = [f"{spec.field}_min", f"{spec.field}_max"] if spec.kind == "range" else [spec.field]
        for key in keys:
            out.setdefault(key, word)
    return out


# --------------------------------------------------------------------------- parsing


def is_command(body: object) -> bool:
    """Whether a message body is addressed to listingbot (``/listings …``)."""
    if not isinstance(body, str):
        return False
    head = body.lstrip()[: len(PREFIX) + 1]
    return head.lower().startswith(PREFIX) and (len(head) == len(PREFIX) or not head[-1].isalnum())


def echo(text: str, max_len: int = MAX_ECHO) -> str:
    """User-written text made safe to quote back (no mentions, no controls, capped)."""
    return sanitize(text, max_len=max_len)


def parse_command(body: str) -> Command:
    """The command in a ``/listings …`` message body; :class:`CommandError` if malformed."""
    if len(body) > MAX_COMMAND:
        raise CommandError(f"That command is too long (over {MAX_COMMAND} characters).")
    text = body.strip()[len(PREFIX) :]
    # Typographic quotes and dashes from phones and rich editors.
    text = text.translate(_TYPOGRAPHY)
    try:
        words = shlex.split(text)
    except ValueError:
        raise CommandError("A quote is not closed; check the \" and ' in the command.") from None
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb == "help":
        return Help()
    if verb == "list":
        _no_more(verb, args, 0)
        return ListSubs()
    if verb in {"pause", "resume", "unsubscribe"}:
        if not args:
            raise CommandError(
                f"`{verb}` needs the subscription's name: /listings {verb} NAME "
                "(see /listings list)."
            )
        _no_more(verb, args, 1)
        return Manage(verb=verb, name=args[0])  # type: ignore[arg-type]
    if verb == "explain":
        if not args:
            raise CommandError("`explain` needs a listing id: /listings explain LISTING_ID [NAME].")
        _no_more(verb, args, 2)
        return Explain(listing_id=args[0], name=args[1] if len(args) > 1 else None)
    if verb == "subscribe":
        return _subscribe(args)
    close = difflib.get_close_matches(verb, VERBS, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    raise CommandError(f"Unknown command `{echo(verb, 40)}`.{hint} Commands: {', '.join(VERBS)}.")


_TYPOGRAPHY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def _no_more(verb: str, args: Sequence[str], allowed: int) -> None:
    if len(args) > allowed:
        raise CommandError(
            f"`{verb}` takes {allowed or 'no'} argument{'s' if allowed != 1 else ''}; "
            f"unexpected `{echo(args[allowed], 40)}`."
        )


_TERM_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|≤|≥|=|<|>|:)\s*(.*)$", re.S)
_OPS: dict[str, Op] = {"=": "=", ":": "=", "<=": "<=", "≤": "<=", ">=": ">=", "≥": ">="}


def _subscribe(args: Sequence[str]) -> Subscribe:
    if not args:
        raise CommandError(
            "`subscribe` needs a source and filters, e.g. "
            "/listings subscribe kotohomes zip=10001 price<=900k"
        )
    source = args[0].lower()
    names = [s.name for s in sources.ALL]
    if source not in names:
        close = difflib.get_close_matches(source, names, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise CommandError(
            f"Unknown source `{echo(args[0], 40)}`.{hint} Sources: {', '.join(names)}."
        )
    terms: list[Term] = []
    name: str | None = None
    for word in _joined(args[1:]):
        match = _TERM_RE.match(word)
        if match is None:
            raise CommandError(
                f"`{echo(word, 40)}` is not a filter: write key=value, key<=value or "
                "key>=value (e.g. price<=900k)."
            )
        key, raw_op, value = match.group(1).lower(), match.group(2), match.group(3).strip()
        if raw_op in {"<", ">"}:
            raise CommandError(f"`{echo(word, 40)}`: write {raw_op}= (limits include the value).")
        if not value:
            raise CommandError(f"`{echo(word, 40)}` has no value.")
        if key == "name":
            if name is not None:
                raise CommandError("name= is given twice.")
            name = value
            continue
        terms.append(Term(key=key, op=_OPS[raw_op], value=value, text=word))
    return Subscribe(source=sources.get(source).name, terms=tuple(terms), name=name)


def _joined(words: Sequence[str]) -> list[str]:
    """Rejoin ``price <= 900k`` and ``zip= 10001`` that spaces split apart."""
    out: list[str] = []
    for word in words:
        if out and (
            out[-1].endswith(("=", "<", ">", "≤", "≥", ":"))
            or word.startswith(("=", "<", ">", "≤", "≥"))
        ):
            out[-1] += word
        else:
            out.append(word)
    return out


# --------------------------------------------------------------------------- values

_NUMBER_RE = re.compile(r"^(-?)[£$€]?(\d+(?:\.\d+)?|\.\d+)([km]?)(?:/sqft|sqft)?$", re.I)
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _number(text: str, spec: ChatFilter, term: Term) -> int | float:
    cleaned = text.replace("_", "").replace(" ", "")
    # 1,200,000 is a number, 10001,10002 is not: thousands groups of exactly three digits.
    if re.fullmatch(r"[£$€]?\d{1,3}(,\d{3})+(\.\d+)?[km]?", cleaned, re.I):
        cleaned = cleaned.replace(",", "")
    match = _NUMBER_RE.match(cleaned)
    if match is None or (match.group(3) and not spec.money):
        forms = "e.g. 900000, 900k or 1.2m" if spec.money else "e.g. 3 or 2.5"
        raise CommandError(
            f"`{echo(term.text, 60)}`: {echo(text, 30)!r} is not a number ({forms})."
        )
    value = float(match.group(2)) * _SCALE[match.group(3).lower()]
    if match.group(1):
        value = -value
    return int(value) if value.is_integer() else value


def _values(term: Term, spec: ChatFilter) -> Any:
    if spec.kind == "list":
        return [v.strip() for v in term.value.split(",") if v.strip()]
    if spec.kind == "bool":
        word = term.value.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise CommandError(f"`{echo(term.text, 60)}`: use true or false.")
    if spec.number:
        return _number(term.value, spec, term)
    return term.value


def _filters_of(cmd: Subscribe) -> tuple[dict[str, Any], dict[str, Term]]:
    """The YAML ``filters:`` mapping the terms spell, and which term wrote each key."""
    vocab = _vocabulary(cmd.source)
    out: dict[str, Any] = {}
    written: dict[str, Term] = {}

    def put(key: str, value: Any, term: Term) -> None:
        if key in out:
            raise CommandError(
                f"`{echo(term.text, 60)}` sets {_word(cmd.source, key)} again "
                f"(already set by `{echo(written[key].text, 60)}`)."
            )
        out[key] = value
        written[key] = term

    for term in cmd.terms:
        spec = vocab.get(term.key)
        if spec is None:
            raise CommandError(_unknown(cmd.source, term, vocab))
        if spec.kind == "range":
            low, high = f"{spec.field}_min", f"{spec.field}_max"
            if term.op == "<=":
                put(high, _number(term.value, spec, term), term)
            elif term.op == ">=":
                put(low, _number(term.value, spec, term), term)
            elif ".." in term.value:
                lo, _, hi = term.value.partition("..")
                if not lo.strip() and not hi.strip():
                    raise CommandError(f"`{echo(term.text, 60)}`: a range needs a bound (a..b).")
                if lo.strip():
                    put(low, _number(lo, spec, term), term)
                if hi.strip():
                    put(high, _number(hi, spec, term), term)
            else:
                value = _number(term.value, spec, term)
                put(low, value, term)
                put(high, value, term)
            continue
        if spec.kind == "max":
            if term.op == ">=":
                raise CommandError(
                    f"`{echo(term.text, 60)}`: {term.key} can only be limited from above "
                    f"({term.key}<=…)."
                )
            value_text = term.value.removeprefix("..")
            put(spec.field, _number(value_text, spec, Term(term.key, "=", value_text, term.text)),
                term)  # fmt: skip
            continue
        if term.op != "=":
            raise CommandError(f"`{echo(term.text, 60)}`: {term.key} takes {term.key}=value.")
        put(spec.field, _values(term, spec), term)
    return out, written


def _unknown(source: str, term: Term, vocab: Mapping[str, ChatFilter]) -> str:
    known = f"{source} filters: {', '.join(_words(source))}."
    for other in sources.ALL:
        if other.name != source and term.key in _vocabulary(other.name):
            return f"`{echo(term.key, 40)}` is a {other.name} filter, not a {source} one. {known}"
    close = difflib.get_close_matches(term.key, list(vocab), n=1, cutoff=0.6)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"Unknown filter `{echo(term.key, 40)}`.{hint} {known}"


def _word(source: str, key: str) -> str:
    return _chat_words_of(source).get(key, key)


# --------------------------------------------------------------------------- building


def build_subscription(
    cmd: Subscribe, *, name: str, channel_id: int, first_run: Literal["baseline", "post"]
) -> Subscription:
    """The subscription the command describes, validated exactly as the YAML's is.

    :class:`CommandError` names the first problem in the chat's own words.
    """
    filters, written = _filters_of(cmd)
    try:
        return Subscription.model_validate(
            {
                "name": name,
                "source": cmd.source,
                "channel": channel_id,
                "filters": filters,
                "first_run": first_run,
            }
        )
    except ValidationError as err:
        raise CommandError(_refusal(cmd.source, err, filters, written)) from None


def _refusal(
    source: str, err: ValidationError, filters: Mapping[str, Any], written: Mapping[str, Term]
) -> str:
    error = err.errors()[0]
    loc = tuple(error["loc"])
    raw = {"source": source, "filters": filters}
    if error["type"] == "listingbot_problems":
        where, text, _ = error["ctx"]["problems"][0]
        loc, reason = (*loc, *where), text
    else:
        reason = _config_message(error, {"subscriptions": [raw]})
    if loc[:1] == ("name",):
        return f"That name does not work: {reason}."
    key = next((str(part) for part in loc[1:2]), None)
    if loc[:1] == ("filters",) and key is None:
        return f"Missing a constraint: {_chat_words(source, reason)}."
    term = written.get(key or "")
    part = f"`{echo(term.text, 60)}`" if term is not None else _word(source, key or "")
    return f"{part}: {_chat_words(source, reason)}."


def _chat_words(source: str, text: str) -> str:
    """The config's wording with each YAML key followed by the chat word for it."""
    words = _chat_words_of(source)

    def swap(match: re.Match[str]) -> str:
        key = match.group(0)
        word = words.get(key)
        return f"{word} ({key})" if word and word != key else key

    names = sorted(words, key=len, reverse=True)
    return re.sub(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", swap, text).rstrip(".")


# --------------------------------------------------------------------------- describing


def describe_filters(source: str, filters: Filters) -> str:
    """A subscription's filters in the chat's words: ``zip=10001,10002 price<=900000``."""
    data = filters.model_dump(exclude_defaults=True)
    vocab = _words(source)
    parts: list[str] = []
    done: set[str] = set()
    for word, spec in vocab.items():
        if spec.kind == "range":
            low, high = data.get(f"{spec.field}_min"), data.get(f"{spec.field}_max")
            if low is not None and high is not None:
                parts.append(
                    f"{word}={_fmt(low)}" if low == high else f"{word}={_fmt(low)}..{_fmt(high)}"
                )
            elif low is not None:
                parts.append(f"{word}>={_fmt(low)}")
            elif high is not None:
                parts.append(f"{word}<={_fmt(high)}")
            done |= {f"{spec.field}_min", f"{spec.field}_max"}
            continue
        if spec.field in done or spec.field not in data:
            continue
        done.add(spec.field)
        value = data[spec.field]
        op = "<=" if spec.kind == "max" else "="
        if isinstance(value, list | tuple):
            shown = ",".join(_quote(str(v)) for v in value)
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = _fmt(value) if isinstance(value, int | float) else _quote(str(value))
        parts.append(f"{word}{op}{shown}")
    return echo(" ".join(parts), 400) if parts else NO_FILTERS


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quote(text: str) -> str:
    return shlex.quote(text) if re.search(r"[\s,\"']", text) else text
