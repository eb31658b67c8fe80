"""Specification of which characters text cleaning drops (listingbot.text clean, sanitize)."""

from __future__ import annotations

import unicodedata

from listingbot.text import clean, sanitize

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_clean_drops_exactly_the_controls_and_bidi_controls_of_all_of_unicode() -> None:
    """Between two letters, a character is dropped exactly when it is a control (category
    Cc) or a bidi control; whitespace controls still part words, a line feed breaks a
    multi-line text, and every other code point is kept."""
    line_breaks = {"\r", "\n", "\u2028", "\u2029"}
    for point in range(0x110000):
        ch = chr(point)
        if 0xD800 <= point < 0xE000:
            continue  # lone surrogates: replaced, specified in test_normalize
        got = clean(f"a{ch}b", multiline=True)
        if ch in line_breaks:
            assert got == "a\nb", hex(point)
        elif ch == "\t":
            assert got == "a b", hex(point)
        elif unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS:
            assert got == "ab", hex(point)
        elif ch.isspace():
            assert got == "a b", hex(point)
        else:
            assert got == f"a{ch}b", hex(point)


def test_sanitize_also_drops_what_hides_a_mention_and_otherwise_cleans() -> None:
    """Between two letters, sanitize drops zero-width spaces, word joiners, BOMs and lone
    surrogates, breaks lines at the other line-break characters (a space on one line), and
    otherwise gives what clean gives, for every code point of the Basic Multilingual Plane
    (where all of those are; the rest is clean's, specified above)."""
    hidden = {"\u200b", "\u2060", "\ufeff"}
    breaks = {"\v", "\f", "\x1c", "\x1d", "\x1e", "\x85"}
    for point in range(0x10000):
        ch = chr(point)
        for multiline in (False, True):
            got = sanitize(f"a{ch}b", multiline=multiline)
            if ch in hidden or 0xD800 <= point < 0xE000:
                assert got == "ab", hex(point)
            elif ch in breaks:
                assert got == ("a\nb" if multiline else "a b"), hex(point)
            elif ch == "\x1f":
                assert got == "a b", hex(point)
            else:
                assert got == clean(f"a{ch}b", multiline=multiline), hex(point)


def test_clean_joins_a_surrogate_pair_and_replaces_a_lone_surrogate() -> None:
    """A surrogate pair held as two code units is the character it encodes; a lone
    surrogate is the replacement character, so the text always encodes as UTF-8."""
    assert clean("smile \ud83d\ude00 ok") == "smile \U0001f600 ok"
    assert clean("bad \udc00\ud800 end") == "bad \ufffd\ufffd end"
    assert clean("tab\tand\r\nbreak \ud83d\ude00", multiline=True) == "tab and\nbreak \U0001f600"
