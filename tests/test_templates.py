"""Specification of message templates (listingbot.templates): the syntax, what it refuses."""

from __future__ import annotations

import pytest

from listingbot.models import EventType
from listingbot.templates import (
    DEFAULT_TEMPLATE,
    EVENT_HEADLINES,
    FIELDS,
    TEMPLATE_MAX_CHARS,
    TemplateError,
    parse_template,
)


def test_fields_are_replaced_by_their_values() -> None:
    """``{name}`` is replaced by the field's text; literal text stays as written."""
    template = parse_template("{title} — {price}")
    assert template.render({"title": "3 bd condo", "price": "$500,000"}) == "3 bd condo — $500,000"


def test_doubled_braces_are_literal_braces() -> None:
    """``{{`` and ``}}`` stand for literal braces and are never a field."""
    template = parse_template("{{title}} is {title}")
    assert template.render({"title": "X"}) == "{title} is X"


def test_a_line_whose_fields_are_all_empty_is_left_out() -> None:
    """``Agent: {agent}`` disappears for a listing without an agent."""
    template = parse_template("{title}\nAgent: {agent}\n{url}")
    assert template.render({"title": "T", "agent": "", "url": "U"}) == "T\nU"


def test_a_line_with_one_filled_field_keeps_its_empty_ones_empty() -> None:
    """A line stays when any of its fields has text; the empty ones add nothing."""
    template = parse_template("{price}{rent} · {title}")
    assert template.render({"price": "", "rent": "$2,400/mo", "title": "T"}) == "$2,400/mo · T"


def test_a_line_without_fields_always_stays() -> None:
    """Literal lines are the operator's own text and are kept."""
    template = parse_template("New for you!\n{title}")
    assert template.render({"title": ""}) == "New for you!"


def test_values_are_never_interpreted() -> None:
    """A value that looks like a placeholder is inserted as text, not expanded."""
    template = parse_template("{title}")
    assert template.render({"title": "{url} {{x}}", "url": "U"}) == "{url} {{x}}"


def test_fields_lists_the_names_used() -> None:
    """A template knows which fields it uses."""
    assert parse_template("{title} {url}\n{title}").fields == {"title", "url"}


def test_unknown_field_is_refused_with_a_suggestion() -> None:
    """A misspelt field fails with its name and the closest known field."""
    with pytest.raises(TemplateError) as err:
        parse_template("{titel} {url}")
    assert str(err.value) == "unknown field {titel} (did you mean {title}?)"
    assert err.value.field == "titel"


def test_unknown_field_without_a_close_match_has_no_suggestion() -> None:
    """Nothing is suggested when no field is close."""
    with pytest.raises(TemplateError, match=r"^unknown field \{zzzzqqq\}$"):
        parse_template("{zzzzqqq}")


def test_field_names_are_case_sensitive_and_suggested_in_lower_case() -> None:
    """``{Title}`` is not ``{title}``, but points to it."""
    with pytest.raises(TemplateError, match=r"did you mean \{title\}"):
        parse_template("{Title}")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("{price.amount}", "attribute access"),
        ("{title.__class__}", "attribute access"),
        ("{title[0]}", "indexing"),
        ("{title!r}", "conversions"),
        ("{price:>20}", "format specs"),
        ("{title:{url}}", "without its"),
        ("{}", "name a field"),
        ("{0}", "name a field"),
        ("{ title }", "the field name alone"),
        ("{title", "without its"),
        ("title}", "a single '}'"),
    ],
)
def test_anything_but_a_plain_field_is_refused(text: str, what: str) -> None:
    """Attribute access, indexing, conversions, format specs, positional fields and
    unbalanced braces are refused with what was wrong."""
    with pytest.raises(TemplateError, match=what):
        parse_template(text)


def test_a_template_without_fields_is_refused() -> None:
    """A template must name at least one field (it would say nothing about the listing)."""
    with pytest.raises(TemplateError, match="names no field"):
        parse_template("Hello {{world}}")


def test_an_overlong_template_is_refused() -> None:
    """Templates are small: longer than the limit is refused."""
    with pytest.raises(TemplateError, match=str(TEMPLATE_MAX_CHARS)):
        parse_template("{title}" + "x" * TEMPLATE_MAX_CHARS)


def test_the_default_template_uses_only_known_fields() -> None:
    """The default parses like any operator template (it is one)."""
    assert parse_template(DEFAULT_TEMPLATE).fields <= FIELDS.keys()


def test_every_event_has_a_headline() -> None:
    """Each event's words live in EVENT_HEADLINES."""
    assert set(EVENT_HEADLINES) == set(EventType)
