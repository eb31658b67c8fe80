"""Specs for the /listings command language: parsing, human forms, and refusals."""

from __future__ import annotations

import pytest

from listingbot import sources
from listingbot.commands.grammar import (
    CommandError,
    Explain,
    Help,
    ListSubs,
    Manage,
    Subscribe,
    build_subscription,
    describe_filters,
    is_command,
    parse_command,
)
from listingbot.config import KatoFilters, KotohomesFilters, Subscription
from listingbot.config.filters import FILTERS_BY_SOURCE
from listingbot.sources import Source


def sub(text: str, name: str = "n") -> Subscription:
    cmd = parse_command(text)
    assert isinstance(cmd, Subscribe)
    return build_subscription(cmd, name=cmd.name or name, channel_id=7, first_run="baseline")


def refusal(text: str) -> str:
    with pytest.raises(CommandError) as err:
        sub(text)
    return str(err.value)


def test_is_command_needs_the_prefix_at_the_start() -> None:
    """Only a body starting with /listings (as a word) is a command."""
    assert is_command("/listings help")
    assert is_command("  /Listings")
    assert not is_command("/listingsx")
    assert not is_command("see /listings help")
    assert not is_command(None)


def test_the_issue_kotohomes_example_becomes_the_yaml_filters() -> None:
    """The issue's Kotohomes example maps onto the YAML filter names and values."""
    s = sub("/listings subscribe kotohomes zip=10001,10002 price<=900k beds>=3 type=for_sale")
    assert s.filters == KotohomesFilters(
        zip_codes=("10001", "10002"), price_max=900_000, bedrooms_min=3, type="for_sale"
    )
    assert s.channel == 7
    assert s.first_run == "baseline"


def test_the_issue_kato_example_becomes_the_yaml_filters() -> None:
    """The issue's Kato example: postcode prefixes, a size range, a rent cap, a type."""
    s = sub("/listings subscribe kato postcode=EC2,EC3 size=1500..6000 rent<=75 type=office")
    assert s.filters == KatoFilters(
        postcode_prefixes=("EC2", "EC3"),
        size_min=1500,
        size_max=6000,
        rent_max=75,
        property_types=("office",),
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("price<=1.2m", {"price_max": 1_200_000}),
        ("price>=$450k", {"price_min": 450_000}),
        ("price=500k..1.5m", {"price_min": 500_000, "price_max": 1_500_000}),
        ("price=..2m", {"price_max": 2_000_000}),
        ("price<=1,250,000", {"price_max": 1_250_000}),
        ("beds=3", {"bedrooms_min": 3, "bedrooms_max": 3}),
        ("price_max=700000", {"price_max": 700_000}),
        ("price <= 900k", {"price_max": 900_000}),
        ("baths≥2", {"bathrooms_min": 2}),
    ],
)
def test_human_number_forms(written: str, expected: dict[str, int]) -> None:
    """k/m suffixes, .. ranges, <=/>=/≥, thousands commas and YAML names all work."""
    s = sub(f"/listings subscribe kotohomes zip=10001 {written}")
    dumped = s.filters.model_dump(exclude_defaults=True)
    assert {k: v for k, v in dumped.items() if k != "zip_codes"} == expected


def test_negative_coordinates_are_numbers() -> None:
    """lat/lon west of Greenwich or south of the equator are negative numbers."""
    s = sub("/listings subscribe kotohomes lat=40.68 lon=-73.94 radius=15")
    assert (s.filters.latitude, s.filters.longitude, s.filters.radius) == (40.68, -73.94, 15)


def test_a_negative_price_is_refused_by_the_configs_rule() -> None:
    """price>=-5 is a number, refused like a negative price_min in the YAML."""
    assert "must be >= 0" in refusal("/listings subscribe kotohomes zip=10001 price>=-5")


def test_quoted_keywords_keep_their_spaces() -> None:
    """A quoted keyword is one keyword, spaces included."""
    s = sub('/listings subscribe kato keywords="roof terrace",garden')
    assert s.filters.keywords_any == ("garden", "roof terrace")


def test_name_is_taken_from_the_command() -> None:
    """name= names the subscription rather than being a filter."""
    cmd = parse_command("/listings subscribe kato postcode=EC2 name=city-offices")
    assert isinstance(cmd, Subscribe)
    assert cmd.name == "city-offices"
    assert all(t.key != "name" for t in cmd.terms)


def test_unknown_filter_suggests_the_closest_word() -> None:
    """An unknown filter is named, with a did-you-mean and the list of filters."""
    text = refusal("/listings subscribe kotohomes zpi=10001")
    assert "Unknown filter `zpi`" in text
    assert "Did you mean `zip`?" in text


def test_a_filter_of_the_other_source_is_named_as_such() -> None:
    """postcode is a Kato filter: a Kotohomes subscribe says so."""
    assert "a kato filter, not a kotohomes one" in refusal(
        "/listings subscribe kotohomes postcode=EC2"
    )


def test_bad_value_is_refused_with_the_configs_reason() -> None:
    """A bad ZIP gets the YAML validator's reason, quoting the term as written."""
    text = refusal("/listings subscribe kotohomes zip=1000")
    assert text.startswith("`zip=1000`:")
    assert "is not a ZIP code" in text


def test_bad_number_is_refused() -> None:
    """A number that is not one is named."""
    assert "'lots' is not a number" in refusal("/listings subscribe kotohomes zip=10001 beds>=lots")


def test_inverted_range_is_refused() -> None:
    """A range whose low end is above its high end is refused, like price_min > price_max."""
    assert "must be >=" in refusal("/listings subscribe kotohomes zip=10001 price=2m..1m")


def test_kotohomes_without_a_place_misses_a_constraint() -> None:
    """Kotohomes needs a geographic constraint; the answer names the chat words for it."""
    text = refusal("/listings subscribe kotohomes price<=900k")
    assert text.startswith("Missing a constraint:")
    assert "zip (zip_codes)" in text


def test_kato_typo_in_a_type_is_refused_with_did_you_mean() -> None:
    """A near miss of a known Kato property type is refused, as in the YAML."""
    assert "did you mean 'office'?" in refusal("/listings subscribe kato type=ofice")


def test_rent_has_no_lower_bound() -> None:
    """rent>= is refused: Kato's rent filter is a cap."""
    assert "limited from above" in refusal("/listings subscribe kato rent>=40")


def test_setting_a_filter_twice_is_refused() -> None:
    """price<= twice names both terms."""
    text = refusal("/listings subscribe kotohomes zip=10001 price<=1m price<=2m")
    assert "`price<=2m`" in text
    assert "`price<=1m`" in text


def test_strict_comparison_is_refused_with_a_hint() -> None:
    """price<900k asks for <=, since filters include their bounds."""
    assert "write <=" in refusal("/listings subscribe kotohomes zip=10001 price<900k")


def test_unknown_source_suggests_one() -> None:
    """A misspelt source gets a did-you-mean."""
    assert "Did you mean `kato`?" in refusal("/listings subscribe kat postcode=EC2")


def test_bad_name_is_refused() -> None:
    """A name the YAML would refuse is refused."""
    assert "That name does not work" in refusal(
        "/listings subscribe kato postcode=EC2 name='two words'"
    )


def test_echoed_text_cannot_mention_anyone() -> None:
    """Text quoted back is sanitized: no <@user> mention survives."""
    text = refusal("/listings subscribe kotohomes zip=<@everyone>")
    assert "<@" not in text
    assert "everyone" in text


def test_unclosed_quote_is_answered() -> None:
    """A quote left open is a malformed command, not a crash."""
    assert "quote is not closed" in refusal('/listings subscribe kato keywords="roof')


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/listings", Help()),
        ("/listings help", Help()),
        ("/listings list", ListSubs()),
        ("/listings pause city", Manage("pause", "city")),
        ("/listings RESUME city", Manage("resume", "city")),
        ("/listings unsubscribe city", Manage("unsubscribe", "city")),
        ("/listings explain K-1", Explain("K-1")),
        ("/listings explain K-1 city", Explain("K-1", "city")),
    ],
)
def test_other_verbs(text: str, command: object) -> None:
    """help, list, pause, resume, unsubscribe and explain parse to their commands."""
    assert parse_command(text) == command


def test_unknown_verb_suggests_one() -> None:
    """A misspelt verb gets a did-you-mean."""
    with pytest.raises(CommandError, match="Did you mean `list`"):
        parse_command("/listings lsit")


def test_verb_without_its_argument_is_refused() -> None:
    """pause without a name says what it needs."""
    with pytest.raises(CommandError, match="needs the subscription's name"):
        parse_command("/listings pause")


def test_extra_arguments_are_refused() -> None:
    """list takes nothing; a stray word is named."""
    with pytest.raises(CommandError, match="unexpected `now`"):
        parse_command("/listings list now")


def test_describe_filters_round_trips_through_the_parser() -> None:
    """The description of a subscription's filters is itself a valid subscribe command."""
    first = sub("/listings subscribe kotohomes zip=10001,10002 price=500k..900k beds>=3 area<=2k")
    text = describe_filters("kotohomes", first.filters)
    assert text == "zip=10001,10002 price=500000..900000 beds>=3 area<=2000"
    again = sub(f"/listings subscribe kotohomes {text}")
    assert again.filters == first.filters


@pytest.mark.parametrize("source", sources.ALL, ids=lambda s: s.name)
def test_each_source_declares_chat_words_for_its_own_filters(source: Source) -> None:
    """A source's chat words (``Source.chat``) each name keys of its YAML filters model,
    its synonyms name its words, and its example command builds a subscription of it."""
    fields = set(FILTERS_BY_SOURCE[source.name].model_fields)
    for word, spec in source.chat.filters.items():
        keys = {f"{spec.field}_min", f"{spec.field}_max"} if spec.kind == "range" else {spec.field}
        assert keys <= fields, word
    assert set(source.chat.synonyms.values()) <= set(source.chat.filters)
    assert sub(f"/listings subscribe {source.chat.example}").source == source.name
