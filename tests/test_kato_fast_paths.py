"""The Kato normalizer's fast paths answer as the normalizer did before them.

``tests/kato_before.py`` is the normalizer (and its field reader) as it was before the
fast paths; these tests run both over the simulator's records, in every PHP shape and
with hostile values put into each field, and ask for the same outcome: the same listing
(so the same fingerprint), the same problems reported, or the same refusal. The
listing is now built without validating it again (``trusted_listing``): it must be the
model validation made, value for value and type for type (its prices too).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from listingbot.normalize import FieldProblem, MalformedRecord
from listingbot.records import Facts, fingerprint
from listingbot.sim.kato import PHP_VARIANTS, php_shape
from listingbot.sim.market import Market
from listingbot.sources.kato import normalize_kato, normalize_kato_lean
from tests import kato_before

Outcome = tuple[Any, ...]


def _outcome(normalize: Callable[..., Any], record: Any, **options: Any) -> Outcome:
    problems: list[FieldProblem] = []
    try:
        listing = normalize(record, problems=problems, **options)
    except MalformedRecord as err:
        return ("malformed", err.record_id, err.reason)
    except Exception as err:  # the same failure is part of the same answer
        return ("raised", type(err).__name__, str(err))
    # Built without validation or not, the same model: its values, their types and
    # order, what was set, its hash and its serialized form.
    shape: list[tuple[str, Any]] = [(name, type(value)) for name, value in listing.__dict__.items()]
    for price in (listing.price, listing.rent):
        if price is not None:
            shape.append(("price", [(n, type(v)) for n, v in price.__dict__.items()]))
            shape.append(("price set", sorted(price.model_fields_set)))
            shape.append(("price hash", hash(price)))
    return (
        "listing",
        listing,
        shape,
        listing.model_fields_set,
        hash(listing),
        _fingerprint(listing),
        listing.model_dump(),
        problems,
    )


def _fingerprint(listing: Any) -> str:
    try:
        return fingerprint(listing)
    except ValueError as err:  # an id with a lone surrogate cannot be serialized, then or now
        return f"unserializable: {err}"


def _same(record: Any, **options: Any) -> None:
    now = _outcome(normalize_kato, record, **options)
    before = _outcome(kato_before.normalize_kato, record, **options)
    assert now == before, record


def _records(count: int, *, hostile_rate: float = 0.0, seed: int = 5) -> list[dict[str, Any]]:
    market = Market(seed, kotohomes_count=0, kato_count=count, hostile_rate=hostile_rate)
    return market.kato_records()


def _shapes(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield record
    for variant in PHP_VARIANTS:
        yield php_shape(record, variant)


def test_every_simulated_record_in_every_php_shape_normalizes_as_before() -> None:
    """Each simulator record, clean and in each of its PHP shapes, gives the listing and
    the problems the normalizer gave before its fast paths."""
    for record in _records(300):
        for shaped in _shapes(record):
            _same(shaped)


def test_hostile_simulated_records_normalize_as_before() -> None:
    """The simulator's hostile records (bad types, controls, bidi text, surrogates) give
    the same listing, problems or refusal as before."""
    for record in _records(300, hostile_rate=0.5, seed=11):
        for shaped in _shapes(record):
            _same(shaped)


def test_records_linked_by_a_template_normalize_as_before() -> None:
    """The operator's link template (and a record lacking one of its values) gives the
    same link as before."""
    for record in _records(40):
        for template in (
            "https://agency.example/p/{reference_number}",
            "https://agency.example/{external_ref}/{id}",
            "https://agency.example/{missing}",
        ):
            _same(record, listing_url=template)
            _same({**record, "reference_number": None}, listing_url=template)


# Values that are not what a field expects, or are so only in an unusual form.
_ODD_VALUES: list[Any] = [
    None,
    "",
    "   ",
    " padded  text ",
    "tab\tand\nnewline",
    "bidi\u202etext",
    "caf\u00e9",
    "\ud800lone",
    "x" * 400,
    "y " * 6_000,
    "<p>tag</p> &amp; entity",
    "£1,250.50 pcm",
    "£45.00 psf",
    "USD 12",
    "POA",
    "12 - 15",
    "-5",
    "https://example.com/a b",
    "HTTPS://EXAMPLE.COM/UP",
    "ftp://example.com",
    "2024-03-01T09:00:00Z",
    " 2024-03-01T09:00:00+02:00 ",
    "2024-03-01T09:00:00",
    "2024-02-30T00:00:00Z",
    "1850-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "GBP",
    "gbp",
    "EU1",
    "\u00c0BC",
    "£",
    "sqft",
    "sq m",
    "per_annum",
    "Under Offer",
    "0",
    "1",
    "true",
    "maybe",
    0,
    1,
    2,
    -3,
    10**13,
    10**250,
    2.5,
    -0.5,
    float("nan"),
    float("inf"),
    True,
    False,
    [],
    [1, "two"],
    [{"key": "office"}, "Retail", {"name": "Under Offer"}],
    [{"slug": "office"}, {"key": "", "name": "Shop"}, {"key": 3}, "Office"],
    {},
    {"a": 1},
    {"key": "available", "name": "Available"},
]

# Where the values go: a path of keys (and list indexes) into a record.
_PLACES: list[tuple[Any, ...]] = [
    ("id",),
    ("address",),
    ("address", "name"),
    ("address", "line1"),
    ("address", "town"),
    ("address", "postcode"),
    ("position", "lat"),
    ("for_sale",),
    ("to_let",),
    ("price",),
    ("price", "value"),
    ("price", "currency"),
    ("price", "qualifier"),
    ("price", "price_on_application"),
    ("rent",),
    ("rent", "from"),
    ("rent", "to"),
    ("rent", "metric"),
    ("rent", "currency"),
    ("rent", "rent_on_application"),
    ("size",),
    ("size", "from"),
    ("size", "metric"),
    ("status",),
    ("property_types",),
    ("property_types", 0),
    ("marketing",),
    ("marketing", "text"),
    ("marketing", "text", 0),
    ("marketing", "text", 0, "content"),
    ("marketing", "key_points"),
    ("images",),
    ("images", 0),
    ("images", 0, "url"),
    ("files",),
    ("files", 0, "url"),
    ("assignees",),
    ("assignees", 0),
    ("assignees", 0, "forename"),
    ("assignees", 0, "office"),
    ("created_at",),
    ("updated_at",),
    ("url",),
]


def _put(record: dict[str, Any], place: tuple[Any, ...], value: Any) -> dict[str, Any] | None:
    """A copy of ``record`` with ``value`` at ``place`` (None: the record has no such place)."""
    changed = copy.deepcopy(record)
    target: Any = changed
    for key in place[:-1]:
        target = _inside(target, key)
        if not isinstance(target, dict | list):
            return None
    last = place[-1]
    if not _holds(target, last) and not (isinstance(target, dict) and isinstance(last, str)):
        return None
    target[last] = copy.deepcopy(value)
    return changed


def _holds(container: Any, key: Any) -> bool:
    if isinstance(container, list):
        return isinstance(key, int) and key < len(container)
    return isinstance(container, dict) and key in container


def _inside(container: Any, key: Any) -> Any:
    return container[key] if _holds(container, key) else None


@pytest.mark.parametrize("place", _PLACES, ids=lambda place: ".".join(map(str, place)))
def test_an_odd_value_in_any_field_normalizes_as_before(place: tuple[Any, ...]) -> None:
    """Whatever value a field holds, in a clean record and in a PHP-shaped one, the
    listing, the problems reported (same field, same reason) or the refusal are the
    same as before."""
    records = _records(8)
    bases = [records[0], records[1], php_shape(records[2], 1), php_shape(records[3], 2)]
    tried = 0
    for base in bases:
        for value in _ODD_VALUES:
            changed = _put(base, place, value)
            if changed is not None:
                _same(changed)
                tried += 1
    assert tried >= len(_ODD_VALUES)


def test_the_fingerprint_is_still_the_digest_of_the_listings_json() -> None:
    """``fingerprint`` digests the serializer's bytes directly: the same digest as of
    ``model_dump_json()`` (what the state file's fingerprints were made from), for clean
    and hostile listings alike."""
    for record in _records(200, hostile_rate=0.5, seed=13):
        for shaped in _shapes(record):
            try:
                listing = normalize_kato(shaped)
            except MalformedRecord:
                continue
            json_text = listing.model_dump_json().encode()
            assert fingerprint(listing) == hashlib.blake2b(json_text, digest_size=12).hexdigest()


# What the lean read reads (``normalize_kato_lean``): the listing's fields, and the fields
# of the record whose problems it reports.
_LEAN_FIELDS = ("source", "id", "country", "postcode", "for_sale", "to_let", "price", "rent",
                "size_sqft", "size_max_sqft", "property_type", "property_types", "status",
                "created_at", "updated_at")  # fmt: skip
_LEAN_READS = {"property_types", "size", "status", "for_sale", "to_let", "price", "rent",
               "created_at", "updated_at"}  # fmt: skip


def _lean_agrees(record: Any) -> None:
    whole_problems: list[FieldProblem] = []
    lean_problems: list[FieldProblem] = []
    try:
        whole = normalize_kato(record, problems=whole_problems)
    except MalformedRecord as err:
        refused = (err.record_id, err.reason)
        with pytest.raises(MalformedRecord) as lean_err:
            normalize_kato_lean(record, problems=lean_problems)
        assert (lean_err.value.record_id, lean_err.value.reason) == refused
        return
    lean = normalize_kato_lean(record, problems=lean_problems)
    for name in _LEAN_FIELDS:
        assert getattr(lean, name) == getattr(whole, name), (name, record)
        assert type(getattr(lean, name)) is type(getattr(whole, name)), (name, record)
    assert Facts.of(lean, b"d") == Facts.of(whole, b"d")
    read = [
        p
        for p in whole_problems
        if p.field in ("address", "address.postcode") or p.top_field in _LEAN_READS
    ]
    assert lean_problems == read, record


def test_the_lean_read_gives_the_whole_reads_facts_indexed_fields_and_their_problems() -> None:
    """Over clean, PHP-shaped and hostile records, the lean read's facts and every field a
    subscription's index reads are the whole read's, value and type, and it reports exactly
    the whole read's problems of the fields it reads (or refuses the record the same way)."""
    for record in _records(200) + _records(200, hostile_rate=0.5, seed=17):
        for shaped in _shapes(record):
            _lean_agrees(shaped)


@pytest.mark.parametrize("place", _PLACES, ids=lambda place: ".".join(map(str, place)))
def test_an_odd_value_in_any_field_reads_lean_as_whole(place: tuple[Any, ...]) -> None:
    """Whatever value a field holds, the lean read agrees with the whole one on what it
    reads (see the test above)."""
    records = _records(8)
    for base in (records[0], php_shape(records[2], 1)):
        for value in _ODD_VALUES:
            changed = _put(base, place, value)
            if changed is not None:
                _lean_agrees(changed)
