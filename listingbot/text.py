"""Text helpers every stage shares: one of each - clean, cap, slug, sanitize.

``clean`` tidies text read from an API (it runs on every text field of every record, so its
common case is fast); ``sanitize`` makes text safe for a chat message and is ``clean`` plus
what only chat needs (zero-width characters, mention syntax, no blank lines); ``cap`` cuts
at a word boundary with an ellipsis; ``slug`` gives the one form values are compared in
(``"Under Offer"`` -> ``"under_offer"``). Pure functions.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Final

__all__ = ["ELLIPSIS", "cap", "cap_message", "clean", "defuse_mentions", "sanitize", "slug"]

ELLIPSIS: Final = "…"

# What clean drops: the controls (category Cc: U+0000-U+001F and U+007F-U+009F, a fixed
# range) but the line feed, and the bidi controls. One regex pass, not a test per character.
_DROPPED: Final = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Whether a text holds anything a translation or the surrogate repair below would change:
# one regex search is much cheaper than translating a non-ASCII text through a table.
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_TRANSLATED: Final = re.compile("[\r\t\u2028\u2029]")
_CHAT_TRANSLATED: Final = re.compile("[\v\f\x1c-\x1f\x85\u200b\u2060\ufeff\ud800-\udfff]")
_LINE_BREAKS: Final = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\t": " "})
_SLUG_JUNK: Final = re.compile(r"[^a-z0-9]+")
# Listing fields back up to a word when that keeps 3/5 of the cap; chat text (whose cut
# the reader sees) keeps at least 2/3. A fraction, so the threshold is exact.
_WORD_SHARE: Final = Fraction(3, 5)
_CHAT_WORD_SHARE: Final = Fraction(2, 3)

# What sanitize does before clean: the other line-break characters break lines (clean
# drops them as controls), the unit separator is a space, and what can hide or split
# a mention goes - zero-width spaces, word joiners, BOMs and lone surrogates (which
# could not even be encoded for the send). ZWJ/ZWNJ stay: emoji sequences and Persian
# text need them.
_CHAT_ONLY: Final = str.maketrans(
    {
        **dict.fromkeys("\v\f\x1c\x1d\x1e\x85", "\n"),
        "\x1f": " ",
        **dict.fromkeys("\u200b\u2060\ufeff"),
        **dict.fromkeys(map(chr, range(0xD800, 0xE000))),
    }
)
# The mention syntax is "<" directly followed by "@" or "#". Replacing that "<" with the
# look-alike U+2039 keeps the text readable while no parser can take it for a mention; a
# zero-width character would also work, but some clients strip those, and copy-pasting
# the text would bring the mention back.
_MENTION_START: Final = re.compile(r"<(?=[@#])")
_MENTION_SAFE_LT: Final = "\u2039"  # single left-pointing angle quotation mark


def clean(text: str, *, multiline: bool = False) -> str:
    """``text`` without control characters, bidi overrides or invalid surrogates.

    Single-line text has every run of whitespace collapsed to one space; multi-line text
    keeps line breaks (at most one blank line in a row) and collapses spaces within lines.
    """
    if text.isascii() and text.isprintable():
        # The common case, and a hot path (every text field of every changed record):
        # printable ASCII holds no control, bidi, surrogate or line-break character, so
        # only whitespace needs collapsing, in both modes. Same result, about 2x faster.
        return " ".join(text.split())
    # Lone surrogates (from JSON like "\\ud800") cannot even be encoded to UTF-8 for SQLite.
    if _SURROGATES.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if _TRANSLATED.search(text):
        text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    text = _DROPPED.sub("", text)
    if not multiline:
        return " ".join(text.split())
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def cap(
    text: str,
    limit: int,
    *,
    word_share: Fraction | None = _WORD_SHARE,
    trim: str | None = " \n,;:-",
) -> str:
    """``text`` cut to at most ``limit`` characters, the ellipsis included.

    The cut backs up to the last space or line break when that keeps at least
    ``word_share`` of ``limit`` (rounded down; ``None``: never, for text without words
    such as an error body), then drops the ``trim`` characters it ends with (``None``:
    any whitespace).
    """
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    cut = text[: limit - 1]
    if word_share is not None:
        boundary = max(cut.rfind(" "), cut.rfind("\n"))
        if boundary >= limit * word_share.numerator // word_share.denominator:
            cut = cut[:boundary]
    return cut.rstrip(trim) + ELLIPSIS


@functools.lru_cache(maxsize=1024)
def slug(text: str) -> str:
    """``"Under Offer"`` -> ``"under_offer"``: the one form values are compared in.

    Memoized: its inputs are the few statuses and property types an account uses, read in
    every record and again by matching (a capped text each: the memo stays small)."""
    return _SLUG_JUNK.sub("_", clean(text).lower()).strip("_")


def sanitize(text: str, *, max_len: int | None = None, multiline: bool = False) -> str:
    """Make listing-derived text safe and tidy for a chat message.

    ``clean`` (controls, bidi controls, whitespace runs; with ``multiline``, line breaks
    survive as single ``\\n``) and besides: zero-width spaces and lone surrogates go,
    blank lines go, ``<@…>`` / ``<#…>`` mention syntax is neutralized, and the text is cut
    to ``max_len`` characters, ellipsis included, at a word boundary when one is near.
    """
    if not (text.isascii() and text.isprintable()) and _CHAT_TRANSLATED.search(text):
        # Printable ASCII (or a text _CHAT_TRANSLATED finds nothing in) holds none of
        # _CHAT_ONLY's characters: translating it would be a copy.
        text = text.translate(_CHAT_ONLY)
    cleaned = clean(text, multiline=multiline)
    if multiline:
        cleaned = "\n".join(line for line in cleaned.split("\n") if line)
    cleaned = defuse_mentions(cleaned)
    return cleaned if max_len is None else cap_message(cleaned, max_len)


def cap_message(text: str, max_len: int) -> str:
    """``cap`` as chat messages are cut: a word boundary within the last third."""
    return cap(text, max_len, word_share=_CHAT_WORD_SHARE, trim=" \n,;:.-\u2013\u2014")


def defuse_mentions(text: str) -> str:
    """``text`` with ``<@…>`` / ``<#…>`` mention syntax made inert (and still readable)."""
    return _MENTION_START.sub(_MENTION_SAFE_LT, text)
