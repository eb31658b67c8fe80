"""Specification of the configuration file: loading, interpolation, validation, messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from listingbot.config import (
    Config,
    KatoFilters,
    KotohomesFilters,
    LocalFilters,
    Subscription,
    config_warnings,
    load_config,
    parse_config,
    parse_interval,
)
from listingbot.errors import ConfigError
from listingbot.models import EventType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "listingbot.example.yaml"
# Every config file shipped in config/: the example and the container-ready one.
SHIPPED = [EXAMPLE, ROOT / "config" / "listingbot.container.yaml"]
BAD = Path(__file__).resolve().parent / "configs" / "bad"

ENV = {
    "CHATKITTY_CLIENT_ID": "ck-id",
    "CHATKITTY_CLIENT_SECRET": "ck-secret-XYZ",
    "KOTOHOMES_API_KEY": "koto-key-XYZ",
    "KATO_CLIENT_ID": "kato-id",
    "KATO_CLIENT_SECRET": "kato-secret-XYZ",
}
SECRETS = ("ck-secret-XYZ", "koto-key-XYZ", "kato-secret-XYZ")

BASE = """\
state:
  path: state.sqlite3
chatkitty:
  api_url: https://api.chatkitty.com
  token_url: https://authorization.chatkitty.com/oauth/token
  client_id: ${CHATKITTY_CLIENT_ID}
  client_secret: ${CHATKITTY_CLIENT_SECRET}
sources:
  kotohomes:
    key: ${KOTOHOMES_API_KEY}
  kato:
    client_id: ${KATO_CLIENT_ID}
    client_secret: ${KATO_CLIENT_SECRET}
subscriptions:
  - name: nyc-homes
    source: kotohomes
    channel: 702
    filters: {states: [NY, NJ], price_max: 900000}
  - name: city-offices
    source: kato
    channel: london-offices
    filters: {to_let: true, postcode_prefixes: [EC2]}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def parse(text: str = BASE, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, env=ENV if env is None else env, source="test.yaml")


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return str(info.value)


def with_filters(filters: str, source: str = "kotohomes") -> str:
    sub = f"""\
  - name: s
    source: {source}
    channel: 1
    filters: {filters}
"""
    return BASE[: BASE.index("  - name: nyc-homes")] + sub


def kotohomes(**filters: object) -> KotohomesFilters:
    return KotohomesFilters.model_validate(filters)


# --------------------------------------------------------------------------- example


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_example_config_loads(shipped: Path) -> None:
    """A shipped example config validates with the documented variables set."""
    config = load_config(shipped, env=ENV)
    assert config.chatkitty.client_secret.get_secret_value() == "ck-secret-XYZ"
    assert config.sources.kotohomes is not None
    assert config.sources.kato is not None
    assert config.sources.kato.poll_interval == timedelta(minutes=10)
    assert any(s.source == "kotohomes" for s in config.subscriptions)
    assert any(s.source == "kato" and not s.local.is_empty() for s in config.subscriptions)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_example_config_sets_every_secret_through_the_environment(shipped: Path) -> None:
    """No secret is written literally in a shipped example: each is a ${VAR}."""
    data = yaml.safe_load(shipped.read_text())
    secrets = [
        data["chatkitty"]["client_id"],
        data["chatkitty"]["client_secret"],
        data["sources"]["kotohomes"]["key"],
        data["sources"]["kato"]["client_id"],
        data["sources"]["kato"]["client_secret"],
    ]
    assert all(s.startswith("${") and s.endswith("}") for s in secrets)


def test_defaults_fill_optional_sections() -> None:
    """A minimal file gets the documented defaults."""
    config = parse()
    assert config.chatkitty.path_prefix == "/v1"
    assert config.state.retention == timedelta(days=30)
    assert config.ops.listen == "127.0.0.1:9108"
    assert config.delivery.concurrency == 4
    assert config.log.level == "info"
    kato = config.sources.kato
    assert kato is not None
    assert (kato.api_version, kato.requests_per_minute, kato.page_size) == ("v2", 60, 50)
    koto = config.sources.kotohomes
    assert koto is not None
    assert (koto.limit, koto.array_style, koto.created_sort, koto.poll_interval) == (
        50,
        "repeat",
        "created_at",
        timedelta(minutes=5),
    )
    sub = config.subscriptions[0]
    assert sub.notify == frozenset(EventType) - {EventType.REMOVED, EventType.BACK_ON_MARKET}
    assert sub.first_run == "baseline"


# --------------------------------------------------------------------------- interpolation


def test_variable_is_read_from_the_environment() -> None:
    """${VAR} takes the variable's value."""
    config = parse()
    kato = config.sources.kato
    assert kato is not None
    assert kato.client_secret.get_secret_value() == "kato-secret-XYZ"


def test_default_is_used_when_the_variable_is_unset() -> None:
    """${VAR:-default} falls back to the default when VAR is not set."""
    text = edit("  path: state.sqlite3", "  path: ${STATE_PATH:-/data/state.sqlite3}")
    assert parse(text).state.path == Path("/data/state.sqlite3")


def test_default_is_used_when_the_variable_is_empty() -> None:
    """${VAR:-default} also falls back when VAR is set but empty (as in a shell)."""
    text = edit("  path: state.sqlite3", "  path: ${STATE_PATH:-/data/state.sqlite3}")
    assert parse(text, {**ENV, "STATE_PATH": ""}).state.path == Path("/data/state.sqlite3")


def test_set_variable_wins_over_its_default() -> None:
    """${VAR:-default} takes VAR when it is set."""
    text = edit("  path: state.sqlite3", "  path: ${STATE_PATH:-/data/state.sqlite3}")
    assert parse(text, {**ENV, "STATE_PATH": "/srv/x.db"}).state.path == Path("/srv/x.db")


def test_variable_file_is_read_when_the_variable_is_unset(tmp_path: Path) -> None:
    """VAR_FILE names a file holding the value; one trailing newline is stripped."""
    secret = tmp_path / "secret"
    secret.write_text("from-file-XYZ\n")
    env = {k: v for k, v in ENV.items() if k != "KOTOHOMES_API_KEY"}
    env["KOTOHOMES_API_KEY_FILE"] = str(secret)
    koto = parse(BASE, env).sources.kotohomes
    assert koto is not None
    assert koto.key.get_secret_value() == "from-file-XYZ"


def test_variable_wins_over_its_file(tmp_path: Path) -> None:
    """When both VAR and VAR_FILE are set, VAR is used."""
    secret = tmp_path / "secret"
    secret.write_text("from-file-XYZ")
    koto = parse(BASE, {**ENV, "KOTOHOMES_API_KEY_FILE": str(secret)}).sources.kotohomes
    assert koto is not None
    assert koto.key.get_secret_value() == "koto-key-XYZ"


def test_unreadable_variable_file_names_the_variable(tmp_path: Path) -> None:
    """A VAR_FILE that cannot be read is an error naming the variable and the key."""
    env = {k: v for k, v in ENV.items() if k != "KOTOHOMES_API_KEY"}
    env["KOTOHOMES_API_KEY_FILE"] = str(tmp_path / "nope")
    message = error_of(BASE, env)
    assert "sources.kotohomes.key: KOTOHOMES_API_KEY_FILE names a file" in message


def test_double_dollar_is_a_literal_dollar() -> None:
    """$$ stands for one $ and is not interpolated."""
    text = edit("  path: state.sqlite3", "  path: /data/$${HOME}.db")
    assert parse(text).state.path == Path("/data/${HOME}.db")


def test_interpolated_value_is_not_parsed_as_yaml() -> None:
    """Values from the environment are taken verbatim, whatever characters they hold."""
    odd = "p: [x] # not a comment, 'quotes' \"too\""
    koto = parse(BASE, {**ENV, "KOTOHOMES_API_KEY": odd}).sources.kotohomes
    assert koto is not None
    assert koto.key.get_secret_value() == odd


def test_variables_can_be_part_of_a_longer_value() -> None:
    """${VAR} may sit inside a longer string, several times."""
    text = edit("  path: state.sqlite3", "  path: /${DIR}/${NAME}.db")
    assert parse(text, {**ENV, "DIR": "srv", "NAME": "lb"}).state.path == Path("/srv/lb.db")


def test_missing_variable_names_the_variable_and_key_not_a_value() -> None:
    """An unset variable is an error naming it and where it is used, never a value."""
    env = {k: v for k, v in ENV.items() if k != "KATO_CLIENT_SECRET"}
    message = error_of(BASE, env)
    assert "sources.kato.client_secret: environment variable KATO_CLIENT_SECRET is not set" in (
        message
    )
    for value in ENV.values():
        assert value not in message


def test_every_missing_variable_is_reported() -> None:
    """All unset variables are listed at once, not one per run."""
    message = error_of(BASE, {})
    for name in ENV:
        assert f"environment variable {name} is not set" in message


# --------------------------------------------------------------------------- messages


def test_unknown_key_names_its_path_and_the_allowed_keys() -> None:
    """An unknown key deep in the file is reported by path, with the allowed keys."""
    text = edit("    key: ${KOTOHOMES_API_KEY}\n", "    key: ${KOTOHOMES_API_KEY}\n    pol: 5m\n")
    message = error_of(text)
    assert "sources.kotohomes.pol: unknown key 'pol'" in message
    assert "allowed: api_url, array_style," in message


def test_unknown_key_suggests_the_closest_known_key() -> None:
    """A near-miss of a known key gets a 'did you mean'."""
    text = edit("  path: state.sqlite3", "  path: state.sqlite3\n  retension: 3d")
    assert "state.retension: unknown key 'retension'; did you mean 'retention'?" in error_of(text)


def test_filter_key_listingbot_sets_itself_is_explained() -> None:
    """sort_by/limit/created_min/key in Kotohomes filters say why they are not filters."""
    message = error_of(with_filters("{states: [NY], sort_by: price, created_min: 2024-01-01}"))
    assert "subscriptions[0].filters.sort_by: unknown key 'sort_by' - not a filter" in message
    assert (
        "subscriptions[0].filters.created_min: unknown key 'created_min' - not a filter" in message
    )


def test_bracketed_filter_name_is_explained() -> None:
    """states[] (the wire form) is answered with the name to write instead."""
    message = error_of(with_filters("{'states[]': [NY]}"))
    assert "write 'states' (listingbot adds the [] itself)" in message


def test_wrong_type_says_what_was_expected() -> None:
    """A value of the wrong type names the expected type and what was found."""
    message = error_of(with_filters("{states: [NY], bedrooms_min: three}"))
    assert "subscriptions[0].filters.bedrooms_min: expected a number (got 'three')" in message


def test_all_problems_are_reported_together() -> None:
    """Independent problems in different places all appear, one line each."""
    text = edit("    channel: 702\n", "    channel: [1]\n    first_run: never\n")
    text = edit("  path: state.sqlite3", "  path: state.sqlite3\n  extra: 1", text)
    message = error_of(text)
    assert "(3 problems)" in message
    assert "state.extra: unknown key" in message
    assert "subscriptions[0].channel: expected a channel id" in message
    assert "subscriptions[0].first_run: must be 'baseline' or 'post'" in message


def test_message_is_one_paragraph_without_pydantic_details() -> None:
    """The message starts with the file, has no blank line, URL, traceback or class name."""
    with pytest.raises(ConfigError) as info:
        parse(with_filters("{states: [NY], price_min: x}"))
    message = str(info.value)
    assert message.startswith("test.yaml: invalid configuration (1 problem):\n")
    assert "\n\n" not in message
    for noise in ("pydantic", "errors.pydantic.dev", "Traceback", "input_value", "type="):
        assert noise not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_yaml_syntax_error_gives_line_and_column() -> None:
    """A YAML syntax error names the line and column and is a ConfigError."""
    message = error_of("state:\n  path: [x\nchatkitty: {}\n")
    assert message.startswith("test.yaml: YAML syntax error at line ")
    assert ", column " in message


def test_yaml_syntax_error_does_not_quote_the_line() -> None:
    """The offending line is not echoed: it could hold a secret."""
    message = error_of('chatkitty:\n  client_secret: "abc-secret-XYZ\n')
    assert "abc-secret-XYZ" not in message


def test_duplicate_yaml_key_is_an_error() -> None:
    """A key written twice in one mapping is an error, not last-one-wins."""
    text = edit("    channel: 702\n", "    channel: 702\n    channel: 703\n")
    assert "duplicate key 'channel'" in error_of(text)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "the configuration file is empty"),
        ("# only a comment\n", "the configuration file is empty"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("just words\n", "the top level must be a mapping"),
    ],
)
def test_empty_or_non_mapping_file_is_an_error(text: str, phrase: str) -> None:
    """Empty files and files whose top level is not a mapping are ConfigErrors."""
    assert phrase in error_of(text)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the path."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(path, env=ENV)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"state:\n  path: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, env=ENV)


# --------------------------------------------------------------------------- secrets


def test_secrets_are_absent_from_repr_and_str() -> None:
    """No secret value appears in the repr or str of the loaded config."""
    config = parse()
    for rendering in (repr(config), str(config), repr(config.sources), str(config.chatkitty)):
        for secret in SECRETS:
            assert secret not in rendering


def test_secret_interpolated_into_a_wrong_place_is_not_echoed() -> None:
    """A value from the environment is never quoted in a message, wherever it lands."""
    text = edit("    key: ${KOTOHOMES_API_KEY}\n", "    key: k\n    limit: ${KOTOHOMES_API_KEY}\n")
    message = error_of(text)
    assert "sources.kotohomes.limit: expected an integer" in message
    assert "koto-key-XYZ" not in message


def test_interval_from_the_environment_is_not_echoed() -> None:
    """An invalid interval that came from a variable is reported without its value."""
    text = edit(
        "    key: ${KOTOHOMES_API_KEY}\n", "    key: k\n    poll_interval: ${KATO_CLIENT_SECRET}\n"
    )
    message = error_of(text)
    assert "sources.kotohomes.poll_interval: invalid interval (use e.g. 30s, 5m, 1h)" in message
    assert "kato-secret-XYZ" not in message


def test_literal_secret_of_the_wrong_type_is_not_echoed() -> None:
    """A secret written literally with the wrong type is reported without its value."""
    text = edit("    key: ${KOTOHOMES_API_KEY}\n", "    key: 98765432\n")
    message = error_of(text)
    assert "sources.kotohomes.key: expected a string" in message
    assert "98765432" not in message


def test_empty_secret_is_an_error() -> None:
    """A secret that interpolates to nothing is reported, without echoing anything."""
    message = error_of(BASE, {**ENV, "KATO_CLIENT_ID": ""})
    assert "sources.kato.client_id: must not be empty" in message


def test_secret_with_surrounding_whitespace_is_an_error() -> None:
    """A secret with stray whitespace (often a file's extra newline) is reported."""
    message = error_of(BASE, {**ENV, "KATO_CLIENT_SECRET": "kato-secret-XYZ\n\n"})
    assert "sources.kato.client_secret: has leading or trailing whitespace" in message
    assert "kato-secret-XYZ" not in message


def test_url_with_credentials_is_rejected_without_echo() -> None:
    """An API URL carrying user:password is refused and not quoted."""
    text = edit(
        "  api_url: https://api.chatkitty.com\n", "  api_url: https://me:pw-XYZ@chatkitty.com\n"
    )
    message = error_of(text)
    assert "chatkitty.api_url: must not contain credentials" in message
    assert "pw-XYZ" not in message


# --------------------------------------------------------------------------- validation rules


def test_min_above_max_names_the_max_key_and_both_values() -> None:
    """price_min > price_max is reported at price_max with both figures."""
    message = error_of(with_filters("{states: [NY], price_min: 1000000, price_max: 900000}"))
    assert "subscriptions[0].filters.price_max: must be >= price_min (900000 < 1000000)" in message


@pytest.mark.parametrize("stem", ["living_area", "year_built", "bedrooms", "bathrooms"])
def test_every_min_must_not_exceed_its_max(stem: str) -> None:
    """Each Kotohomes *_min/*_max pair is checked."""
    message = error_of(with_filters(f"{{states: [NY], {stem}_min: 5, {stem}_max: 2}}"))
    assert f"filters.{stem}_max: must be >= {stem}_min (2 < 5)" in message


def test_equal_min_and_max_are_allowed() -> None:
    """min == max is a valid (exact) range."""
    filters = kotohomes(states=["NY"], bedrooms_min=3, bedrooms_max=3)
    assert filters.bedrooms_min == filters.bedrooms_max == 3


def test_latitude_without_radius_is_an_error() -> None:
    """latitude and longitude without radius name the missing key."""
    message = error_of(with_filters("{latitude: 40.7, longitude: -74.0}"))
    assert "subscriptions[0].filters.radius: required when latitude is set" in message


def test_radius_alone_names_both_missing_coordinates() -> None:
    """radius without latitude/longitude reports both of them."""
    message = error_of(with_filters("{states: [NY], radius: 5}"))
    assert "filters.latitude: required when radius is set" in message
    assert "filters.longitude: required when radius is set" in message


def test_location_triple_is_a_geographic_constraint() -> None:
    """latitude + longitude + radius alone satisfy the geographic constraint."""
    filters = kotohomes(latitude=40.7, longitude=-74.0, radius=2)
    assert filters.radius == 2


def test_kotohomes_search_needs_a_geographic_constraint() -> None:
    """A Kotohomes subscription without location filters is rejected at its filters key."""
    message = error_of(with_filters("{price_max: 900000}"))
    assert "subscriptions[0].filters: needs a geographic constraint" in message


def test_kotohomes_subscription_without_filters_needs_a_location() -> None:
    """Leaving out filters on a Kotohomes subscription asks for a location too."""
    text = edit("    filters: {states: [NY, NJ], price_max: 900000}\n", "")
    assert "subscriptions[0].filters: needs a geographic constraint" in error_of(text)


@pytest.mark.parametrize("geo", ["{zip_codes: ['07030']}", "{mls_numbers: NYRS-1}"])
def test_zip_codes_or_mls_numbers_satisfy_the_constraint(geo: str) -> None:
    """zip_codes or mls_numbers alone are a geographic constraint."""
    assert parse(with_filters(geo)).subscriptions[0].source == "kotohomes"


def test_subscription_to_unconfigured_source_is_an_error() -> None:
    """A subscription to a source missing from sources names the subscription's key."""
    text = edit(
        "  kato:\n    client_id: ${KATO_CLIENT_ID}\n    client_secret: ${KATO_CLIENT_SECRET}\n", ""
    )
    assert "subscriptions[1].source: 'kato' is not configured under sources" in error_of(text)


def test_duplicate_subscription_names_name_both_indexes() -> None:
    """Two subscriptions with one name: the second is reported, pointing at the first."""
    text = edit("  - name: city-offices\n", "  - name: nyc-homes\n")
    message = error_of(text)
    assert "subscriptions[1].name: duplicate name 'nyc-homes' (also subscriptions[0].name)" in (
        message
    )


def test_cross_checks_are_reported_beside_other_problems() -> None:
    """A duplicate name still shows when another key of the file is invalid too."""
    text = edit("  - name: city-offices\n", "  - name: nyc-homes\n")
    text = edit("  path: state.sqlite3", "  path: state.sqlite3\n  extra: 1", text)
    message = error_of(text)
    assert "state.extra: unknown key" in message
    assert "subscriptions[1].name: duplicate name" in message


def test_at_least_one_source_is_required() -> None:
    """An empty sources section is an error."""
    start = BASE.index("sources:")
    text = BASE[:start] + "sources: {}\n" + BASE[BASE.index("subscriptions:") :]
    assert "sources: configure at least one source" in error_of(text)


def test_at_least_one_subscription_is_required() -> None:
    """An empty subscriptions list is an error."""
    text = BASE[: BASE.index("subscriptions:")] + "subscriptions: []\n"
    assert "subscriptions: at least one subscription is required" in error_of(text)


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "naïve"])
def test_subscription_name_must_be_simple(name: str) -> None:
    """Names are 1-64 characters of letters, digits, '_', '.', '-'."""
    text = edit("  - name: nyc-homes\n", f"  - name: {name!r}\n")
    assert "subscriptions[0].name:" in error_of(text)


def test_numeric_subscription_name_asks_for_quotes() -> None:
    """A name YAML reads as a number is refused with a hint to quote it."""
    text = edit("  - name: nyc-homes\n", "  - name: 2024\n")
    assert "subscriptions[0].name: expected a string (got 2024; put it in quotes)" in error_of(text)


def test_channel_is_an_id_or_a_name() -> None:
    """An integer is a channel id, other text a channel name, digit strings an id."""
    assert parse().subscriptions[0].channel == 702
    assert parse().subscriptions[1].channel == "london-offices"
    text = edit("    channel: 702\n", "    channel: ${CHANNEL}\n")
    assert parse(text, {**ENV, "CHANNEL": "703"}).subscriptions[0].channel == 703


@pytest.mark.parametrize("channel", ["[702]", "true", "0", "-3", "''", "1.5"])
def test_bad_channel_is_an_error(channel: str) -> None:
    """Channels that are neither a positive id nor a name are rejected."""
    text = edit("    channel: 702\n", f"    channel: {channel}\n")
    assert "subscriptions[0].channel: expected a channel id" in error_of(text)


def test_notify_accepts_a_list_or_one_event() -> None:
    """notify takes a list of events or a single event name."""
    text = edit("    channel: 702\n", "    channel: 702\n    notify: price_drop\n")
    assert parse(text).subscriptions[0].notify == frozenset({EventType.PRICE_DROP})
    text = edit("    channel: 702\n", "    channel: 702\n    notify: [new, status_change]\n")
    assert parse(text).subscriptions[0].notify == {EventType.NEW, EventType.STATUS_CHANGE}


def test_unknown_notify_event_is_an_error() -> None:
    """An unknown event is reported at its index, with the valid events."""
    text = edit("    channel: 702\n", "    channel: 702\n    notify: [new, sold]\n")
    message = error_of(text)
    assert "subscriptions[0].notify[1]: unknown event 'sold' (use new, price_drop," in message


def test_empty_notify_is_an_error() -> None:
    """An empty notify list would never post anything, so it is refused."""
    text = edit("    channel: 702\n", "    channel: 702\n    notify: []\n")
    assert "subscriptions[0].notify: must name at least one event" in error_of(text)


def test_path_prefix_forms() -> None:
    """path_prefix is '' or starts with '/'; a trailing '/' is dropped."""
    for written, stored in (
        ("''", ""),
        ("/v1/", "/v1"),
        ("/v1/applications/7", "/v1/applications/7"),
    ):
        text = edit("  token_url:", f"  path_prefix: {written}\n  token_url:")
        assert parse(text).chatkitty.path_prefix == stored


def test_path_prefix_without_leading_slash_is_an_error() -> None:
    """A prefix like 'v1' is refused with an example."""
    text = edit("  token_url:", "  path_prefix: v1\n  token_url:")
    assert "chatkitty.path_prefix: must be empty or start with '/'" in error_of(text)


def test_api_url_trailing_slash_is_dropped() -> None:
    """api_url is stored without a trailing '/'."""
    text = edit("  api_url: https://api.chatkitty.com\n", "  api_url: https://api.chatkitty.com/\n")
    assert parse(text).chatkitty.api_url == "https://api.chatkitty.com"


def test_relative_state_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    """load_config resolves a relative state.path against the file's directory."""
    path = tmp_path / "conf" / "listingbot.yaml"
    path.parent.mkdir()
    path.write_text(BASE)
    assert load_config(path, env=ENV).state.path == tmp_path / "conf" / "state.sqlite3"


@pytest.mark.parametrize(
    ("written", "stored"), [("null", None), ("off", None), ("'[::1]:9000'", "[::1]:9000")]
)
def test_ops_listen_forms(written: str, stored: str | None) -> None:
    """ops.listen is host:port (IPv6 in brackets) or null/off to switch it off."""
    text = BASE + f"ops:\n  listen: {written}\n"
    assert parse(text).ops.listen == stored


def test_backoff_max_below_base_is_an_error() -> None:
    """delivery.backoff_max_s must not be below backoff_base_s."""
    text = BASE + "delivery:\n  backoff_base_s: 10\n  backoff_max_s: 5\n"
    assert "delivery.backoff_max_s: must be >= backoff_base_s (5 < 10)" in error_of(text)


def test_log_level_is_case_insensitive() -> None:
    """log.level accepts INFO as info."""
    assert parse(BASE + "log:\n  level: WARNING\n").log.level == "warning"


def test_non_finite_numbers_are_rejected() -> None:
    """.inf and .nan are not valid numbers anywhere."""
    message = error_of(BASE + "delivery:\n  backoff_max_s: .inf\n")
    assert "delivery.backoff_max_s: expected a finite number" in message


# --------------------------------------------------------------------------- YAML quirks


def test_zip_code_with_leading_zero_stays_text() -> None:
    """07030 unquoted is the ZIP code '07030', not the octal number 3608."""
    config = parse(with_filters("{zip_codes: [07030, 10001]}"))
    assert config.subscriptions[0].upstream_params() == (
        ("zip_codes", "07030"),
        ("zip_codes", "10001"),
    )


def test_yes_no_on_off_are_not_booleans() -> None:
    """Only true/false are booleans: NO and on stay text (YAML 1.1 would read false/true)."""
    config = parse(with_filters("{mls_numbers: [NO, on]}"))
    assert config.subscriptions[0].upstream_params() == (
        ("mls_numbers", "NO"),
        ("mls_numbers", "on"),
    )


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2d", 172800),
        ("45", 45),
        (90, 90),
        (2.5, 2.5),
    ],
)
def test_interval_forms(written: object, seconds: float) -> None:
    """Intervals take s/m/h/d/ms units, combinations, or a bare number of seconds."""
    assert parse_interval(written) == timedelta(seconds=seconds)


@pytest.mark.parametrize("written", ["banana", "5 minutes", "1x", "m", "", "-5s", "0", "5m5m"])
def test_bad_intervals_are_rejected(written: object) -> None:
    """Anything else, zero and negative intervals are rejected."""
    with pytest.raises(ValueError, match=r"interval|must be > 0"):
        parse_interval(written)


def test_bad_interval_message_names_key_and_value() -> None:
    """A bad interval in the file names its key path, the value and example forms."""
    text = edit(
        "    client_secret: ${KATO_CLIENT_SECRET}\n",
        "    client_secret: ${KATO_CLIENT_SECRET}\n    poll_interval: banana\n",
    )
    assert "sources.kato.poll_interval: invalid interval 'banana' (use e.g. 30s, 5m, 1h)" in (
        error_of(text)
    )


def test_jitter_may_be_zero() -> None:
    """poll_jitter: 0 switches jitter off (it is the only interval allowed to be 0)."""
    text = edit("    key: ${KOTOHOMES_API_KEY}\n", "    key: k\n    poll_jitter: 0\n")
    koto = parse(text).sources.kotohomes
    assert koto is not None
    assert koto.poll_jitter == timedelta(0)


# --------------------------------------------------------------------------- filters


def test_upstream_params_are_canonical() -> None:
    """Equal upstream filters written differently give equal parameter tuples."""
    one = kotohomes(states=["ny", "NJ"], price_max=900000, bedrooms_min=3)
    two = kotohomes(bedrooms_min=3.0, price_max="900000", states=["NJ", "NY", "ny"])
    assert one.upstream_params() == two.upstream_params()
    assert one.upstream_params() == (
        ("bedrooms_min", "3"),
        ("price_max", "900000"),
        ("states", "NJ"),
        ("states", "NY"),
    )


def test_upstream_params_format_values_for_the_query_string() -> None:
    """Bools are true/false, fractional numbers keep their fraction, lists one pair each."""
    filters = kotohomes(
        zip_codes="10001",
        bathrooms_min=1.5,
        open_houses_only=True,
        type="for_rent",
        property_types=["House", "condominium"],
    )
    assert filters.upstream_params() == (
        ("bathrooms_min", "1.5"),
        ("open_houses_only", "true"),
        ("property_types", "condominium"),
        ("property_types", "house"),
        ("type", "for_rent"),
        ("zip_codes", "10001"),
    )


def test_local_filters_are_not_sent_upstream() -> None:
    """keywords_* (and Kato's local filters) never appear in upstream_params."""
    koto = kotohomes(states="NY", keywords_any=["pool"], keywords_none="auction")
    assert koto.upstream_params() == (("states", "NY"),)
    kato = KatoFilters(status=["available"], published_to_website=True, to_let=True, size_min=10)
    assert kato.upstream_params() == (("published_to_website", "true"), ("status", "available"))


def test_filter_hash_is_stable_and_tracks_changes() -> None:
    """Equal filters hash equal; changing any filter changes the hash."""

    def sub(filters: dict[str, object]) -> Subscription:
        return Subscription.model_validate(
            {"name": "a", "source": "kato", "channel": 1, "filters": filters}
        )

    base = sub({"status": "available", "keywords_any": ["Lift", "parking"]})
    same = sub({"keywords_any": ["PARKING", "lift"], "status": ["available"]})
    assert base.filter_hash == same.filter_hash
    assert len(base.filter_hash) == 16
    assert base.filter_hash != sub({"status": "available", "keywords_any": ["lift"]}).filter_hash
    assert (
        base.filter_hash != sub({"status": "let", "keywords_any": ["lift", "parking"]}).filter_hash
    )


def test_filter_hash_survives_model_copy() -> None:
    """A copy with other filters gets its own hash, not the original's cached one."""
    sub = Subscription.model_validate({"name": "a", "source": "kato", "channel": 1})
    before = sub.filter_hash
    copy = sub.model_copy(update={"filters": KatoFilters(status=("let",))})
    assert copy.filter_hash != before


def test_filters_are_chosen_by_source() -> None:
    """A Kotohomes subscription gets KotohomesFilters, a Kato one KatoFilters."""
    config = parse()
    assert isinstance(config.subscriptions[0].filters, KotohomesFilters)
    assert isinstance(config.subscriptions[1].filters, KatoFilters)


def test_filter_of_the_other_source_is_explained() -> None:
    """A Kotohomes filter on a Kato subscription says whose filter it is."""
    message = error_of(with_filters("{price_max: 5}", source="kato"))
    assert (
        "subscriptions[0].filters.price_max: unknown key 'price_max' - a kotohomes filter"
        in message
    )


def test_kotohomes_list_values_are_validated() -> None:
    """States, ZIP codes and property types are checked item by item."""
    message = error_of(
        with_filters("{states: [NY, York], zip_codes: ['123'], property_types: [condo]}")
    )
    assert "filters.states[1]: 'York' is not a 2-letter state code" in message
    assert "filters.zip_codes[0]: '123' is not a ZIP code" in message
    assert "filters.property_types[0]: unknown Kotohomes property type 'condo'" in message


def test_zip_plus_four_is_accepted() -> None:
    """ZIP+4 codes are valid ZIP codes."""
    assert kotohomes(zip_codes=["10001-1234"]).zip_codes == ("10001-1234",)


def test_kato_local_filters_are_normalized() -> None:
    """Kato property types are lower-cased, postcode prefixes upper-cased without spaces."""
    filters = KatoFilters(
        property_types=["Office", "retail"],
        postcode_prefixes=["ec2 a", "SW1"],
        keywords_any=["Air Con"],
    )
    local = filters.local
    assert local.property_types == ("office", "retail")
    assert local.postcode_prefixes == ("EC2A", "SW1")
    assert local.keywords_any == ("air con",)


def test_kato_size_range_is_checked() -> None:
    """size_min above size_max is reported at size_max."""
    message = error_of(with_filters("{size_min: 5000, size_max: 1000}", source="kato"))
    assert "subscriptions[0].filters.size_max: must be >= size_min (1000 < 5000)" in message


def test_local_filters_is_empty() -> None:
    """is_empty is true only when no local filter is set."""
    assert LocalFilters().is_empty()
    assert kotohomes(states="NY").local.is_empty()
    assert not LocalFilters(to_let=False).is_empty()
    assert not LocalFilters(keywords_none=("x",)).is_empty()


def test_config_models_are_frozen() -> None:
    """A loaded config cannot be changed in place."""
    config = parse()
    with pytest.raises(ValueError, match="frozen"):
        config.subscriptions[0].name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- the corpus


def _expected() -> dict[str, str]:
    data = yaml.safe_load((BAD / "expected.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_bad_corpus_index_matches_the_files() -> None:
    """Every broken config has an expected phrase, and there are at least 25 of them."""
    files = {p.name for p in BAD.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(_expected())
    assert len(files) >= 25


@pytest.mark.parametrize(("name", "phrase"), sorted(_expected().items()))
def test_bad_config_is_rejected_with_its_message(name: str, phrase: str) -> None:
    """Each broken config raises a ConfigError naming the problem, without secrets."""
    with pytest.raises(ConfigError) as info:
        load_config(BAD / name, env=ENV)
    message = str(info.value)
    assert phrase in message
    assert message.startswith(str(BAD / name))
    for secret in SECRETS:
        assert secret not in message
    assert "Traceback" not in message
    assert "pydantic" not in message


def test_base_config_is_valid() -> None:
    """The base config the tests edit is itself valid (so each edit is the only fault)."""
    assert parse(BASE).subscriptions[0].name == "nyc-homes"


def test_a_config_with_ten_thousand_subscriptions_loads() -> None:
    """A large honest file is not mistaken for an alias bomb."""
    subs = "".join(
        f"  - name: s{i}\n    source: kato\n    channel: 704\n"
        f"    filters: {{property_types: [office], size_min: {i}}}\n"
        for i in range(10_000)
    )
    text = (
        "state: {path: /tmp/x.sqlite3}\n"
        "chatkitty: {api_url: 'https://ck.example', token_url: 'https://ck.example/t',"
        " client_id: ck-id-123456, client_secret: ck-secret-123456}\n"
        "sources:\n  kato: {client_id: kato-id-123456, client_secret: kato-secret-123456}\n"
        "subscriptions:\n" + subs
    )
    assert len(parse_config(text, env={}).subscriptions) == 10_000


def test_an_alias_bomb_is_refused() -> None:
    """YAML aliases that expand a tiny file into millions of nodes are a config error."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 7):
        levels.append(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]")
    text = "\n".join(levels) + "\nstate: *a6\n"
    with pytest.raises(ConfigError, match="expands too much"):
        parse_config(text, env={})


# --------------------------------------------------------------------------- fidelity


def test_office_retail_is_one_slug_in_config_normalization_and_matching() -> None:
    """`property_types: [Office/Retail]` matches a Kato listing typed "Office/Retail": the
    config, the normalizer and the matcher share one slug function."""
    from listingbot.matching import local_match  # noqa: PLC0415 - this test only
    from listingbot.sources.kato import normalize_kato  # noqa: PLC0415
    from listingbot.text import slug  # noqa: PLC0415

    config = parse(with_filters("{property_types: [Office/Retail]}", source="kato"))
    filters = config.subscriptions[0].local
    assert filters.property_types == (slug("Office/Retail"),) == ("office_retail",)
    record = {"id": 7, "property_types": [{"key": "Office/Retail"}], "to_let": True}
    listing = normalize_kato(record)
    assert listing.property_types == ("office_retail",)
    assert local_match(filters, listing)


def test_a_states_only_kotohomes_search_is_valid_but_warned_about() -> None:
    """states alone loads (the seed's API took it) and gets a warning naming the fix."""
    config = parse(with_filters("{states: [NY, NJ]}"))
    (warning,) = config_warnings(config)
    assert warning.startswith("subscriptions[0].filters: today's Kotohomes API refuses")
    assert "add zip_codes, territory, mls_numbers or latitude + longitude + radius" in warning
    assert config_warnings(parse(with_filters("{states: [NY], zip_codes: ['10001']}"))) == []


def test_an_unknown_kato_value_far_from_every_known_one_is_a_warning() -> None:
    """Kato documents neither list: a value unlike every known one loads, with a warning
    that shows the known values."""
    config = parse(with_filters("{status: withdrawn, property_types: [hotel]}", source="kato"))
    warnings = config_warnings(config)
    assert [w.split(":")[0] for w in warnings] == [
        "subscriptions[0].filters.status[0]",
        "subscriptions[0].filters.property_types[0]",
    ]
    assert "known: available, under_offer" in warnings[0]


@pytest.mark.parametrize(
    ("filters", "phrase"),
    [
        ("{property_types: [offices]}", "did you mean 'office'?"),
        ("{status: availble}", "did you mean 'available'?"),
        ("{status: [available, 'under offr']}", "did you mean 'under_offer'?"),
    ],
)
def test_a_near_miss_of_a_known_kato_value_is_refused_with_the_list(
    filters: str, phrase: str
) -> None:
    """A typo of a known Kato value would silently match nothing: refused, list shown."""
    message = error_of(with_filters(filters, source="kato"))
    assert phrase in message
    assert "(known: " in message


def test_kato_statuses_are_sent_as_slugs() -> None:
    """`status: Under Offer` is sent upstream as under_offer."""
    config = parse(with_filters("{status: [Under Offer, available]}", source="kato"))
    assert config.subscriptions[0].upstream_params() == (
        ("status", "available"),
        ("status", "under_offer"),
    )


@pytest.mark.parametrize("source", ["kotohomes", "kato"])
@pytest.mark.parametrize("key", ["keywords_any", "keywords_none"])
def test_a_keyword_string_that_looks_like_a_list_is_refused(source: str, key: str) -> None:
    """`keywords_any: "balcony, terrace"` is one phrase nobody writes: refused, with the
    list to write instead."""
    geo = "zip_codes: ['10001'], " if source == "kotohomes" else ""
    message = error_of(with_filters(f'{{{geo}{key}: "balcony, terrace"}}', source=source))
    assert f"subscriptions[0].filters.{key}[0]:" in message
    assert "write a list: [balcony, terrace]" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [("$KOTOHOMES_API_KEY", "${KOTOHOMES_API_KEY}"), ("abc$KEYdef", "${NAME}")],
)
def test_a_secret_with_a_bare_dollar_variable_is_refused(value: str, shown: str) -> None:
    """`key: $VAR` would be sent literally as the key: refused, suggesting ${VAR}; a
    secret that merely contains one is refused without being echoed."""
    message = error_of(edit("key: ${KOTOHOMES_API_KEY}", f"key: {value}"))
    assert (
        f"sources.kotohomes.key: looks like an environment variable without braces; write {shown}"
        in message
    )
    if value != "$KOTOHOMES_API_KEY":
        assert value not in message


def test_a_literal_dollar_in_a_secret_is_written_twice() -> None:
    """`$$` is a literal $, so a secret containing one still loads."""
    config = parse(edit("key: ${KOTOHOMES_API_KEY}", "key: ab$$cd"))
    assert config.sources.kotohomes is not None
    assert config.sources.kotohomes.key.get_secret_value() == "ab$cd"


@pytest.mark.parametrize("code", ["XX", "QQ", "UK"])
def test_unknown_us_state_codes_are_refused(code: str) -> None:
    """A 2-letter code that is no US state matches nothing: refused."""
    message = error_of(with_filters(f"{{states: [NY, {code}], zip_codes: ['10001']}}"))
    assert f"subscriptions[0].filters.states[1]: '{code}' is not a US state code" in message


def test_dc_and_territories_are_state_codes() -> None:
    """DC and the territories are valid codes."""
    config = parse(with_filters("{states: [DC, PR], zip_codes: ['20001']}"))
    assert config.subscriptions[0].filters.upstream_params()[:2] == (
        ("states", "DC"),
        ("states", "PR"),
    )


def test_kato_defaults_to_production_and_pages_of_50() -> None:
    """The documented default host is production; page size defaults to the maximum."""
    kato = parse().sources.kato
    assert kato is not None
    assert (kato.api_url, kato.page_size, kato.listing_url) == (
        "https://client-api.kato.app",
        50,
        None,
    )


def test_kato_listing_url_template_is_checked() -> None:
    """Known placeholders pass; the template must be an http(s) URL."""
    ok = "    client_secret: ${KATO_CLIENT_SECRET}\n    listing_url: https://a.example/p/{reference_number}?r={external_ref}&i={id}\n"
    config = parse(edit("    client_secret: ${KATO_CLIENT_SECRET}\n", ok))
    assert config.sources.kato is not None
    assert (
        config.sources.kato.listing_url
        == "https://a.example/p/{reference_number}?r={external_ref}&i={id}"
    )
    bad = "    client_secret: ${KATO_CLIENT_SECRET}\n    listing_url: agency/{id}\n"
    message = error_of(edit("    client_secret: ${KATO_CLIENT_SECRET}\n", bad))
    assert "sources.kato.listing_url: must be an http(s) URL template" in message


def test_territory_is_a_kotohomes_constraint() -> None:
    """territory alone constrains a Kotohomes search and is sent upstream."""
    config = parse(with_filters("{territory: hoboken-nj}"))
    assert config.subscriptions[0].upstream_params() == (("territory", "hoboken-nj"),)
    assert config_warnings(config) == []
