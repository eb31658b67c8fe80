"""Kato records read from their bytes (``clients.kato.decode_page``, ``KatoRecord``).

An availability answer is decoded to the values ``decode_json`` gives, each record a
``KatoRecord``: its digest is of its bytes, its summary fields are decoded with it and the
rest only when read. These tests hold it to the plain decoding over the simulator's
records (clean, in every PHP shape, hostile) and over JSON that msgspec reads differently
from the standard library, and pin the summary to what the lean read reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from listingbot.clients.base import decode_json
from listingbot.clients.kato import KatoRecord, decode_page
from listingbot.normalize import FieldProblem, MalformedRecord
from listingbot.sim.kato import PHP_VARIANTS, php_shape
from listingbot.sim.market import Market
from listingbot.sources.kato import normalize_kato, normalize_kato_lean


def _records(count: int, *, hostile_rate: float = 0.0, seed: int = 5) -> list[dict[str, Any]]:
    market = Market(seed, kotohomes_count=0, kato_count=count, hostile_rate=hostile_rate)
    shaped: list[dict[str, Any]] = []
    for record in market.kato_records():
        shaped.append(record)
        shaped.extend(php_shape(record, variant) for variant in PHP_VARIANTS)
    return shaped


def _body(records: list[Any], *, ensure_ascii: bool = True) -> bytes:
    page = {"current_page": 1, "total_pages": 1, "total": len(records)}
    answer = {"data": records, "meta": {"pagination": page}, "links": {"next": None}}
    return json.dumps(answer, ensure_ascii=ensure_ascii).encode()


def _plain(value: Any) -> Any:
    """``value`` with every record as the dict it stands for, for comparing."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _read(answer: Any) -> Any:
    """What the client reads of an answer: its records and pagination."""
    if not isinstance(answer, dict):
        return answer
    return {key: answer[key] for key in ("data", "meta", "pagination") if key in answer}


def _same_values(ours: Any, theirs: Any) -> bool:
    # repr keeps NaN equal to itself and -0.0 apart from 0.0, and shows every type.
    return repr(_plain(_read(ours))) == repr(_plain(_read(theirs)))


def _kato_records(body: bytes) -> list[KatoRecord]:
    records = decode_page(body)["data"]
    assert all(type(r) is KatoRecord for r in records), [type(r) for r in records]
    return list(records)


def _outcome(normalize: Any, record: Any) -> tuple[Any, ...]:
    problems: list[FieldProblem] = []
    try:
        listing = normalize(record, problems=problems)
    except MalformedRecord as err:
        return ("malformed", err.record_id, err.reason)
    return ("listing", listing.model_dump(), listing.model_fields_set, problems)


def test_a_page_of_simulated_records_decodes_to_the_values_json_gives() -> None:
    """Clean, PHP-shaped and hostile records, escaped to ASCII or not: the answer decoded
    from its bytes holds the values ``decode_json`` gives, record for record, pagination
    included (a hostile page msgspec refuses is decoded by ``decode_json`` itself)."""
    records = _records(60) + _records(60, hostile_rate=0.5, seed=17)
    for start in range(0, len(records), 25):
        for ensure_ascii in (True, False):
            body = _body(records[start : start + 25], ensure_ascii=ensure_ascii)
            try:
                theirs = decode_json(body)
            except ValueError:
                continue  # a lone surrogate written raw is no UTF-8: both refuse (below)
            assert _same_values(decode_page(body), theirs)


def test_a_clean_page_is_read_as_records_from_their_bytes() -> None:
    """A clean page is not decoded whole: every record comes from its bytes, none
    decoded whole yet, and it reads as the dict it stands for."""
    records = _records(10)
    ours = _kato_records(_body(records, ensure_ascii=False))
    assert not any(r.decoded_whole for r in ours)
    assert [dict(r) for r in ours] == records
    assert all(r.decoded_whole for r in ours)


@pytest.mark.parametrize(
    "item",
    [
        b'{"id": 1, "id": 2}',  # the last of a repeated key, as json.loads
        b'{"id": 123456789012345678901234567890}',  # no float for a huge id
        b'{"id": 7, "size": {"from": 1e400}}',  # past a float's range: inf
        b'{"id": 7, "rent": {"from": NaN}}',  # refused by msgspec
        b'{"id": "\\ud800"}',  # a lone surrogate escape: refused by msgspec
        b'{"id": 7, "marketing": "\\ud83d\\ude00 \\u00a3"}',
        b'{"id": 7, "status": {"name": "Available", "name": "Let"}}',
        b'{"id": 7, "price": [], "rent": [], "address": []}',  # PHP's empty objects
        b'{"id": -0.0, "for_sale": 1, "to_let": "1"}',
        b'"not an object"',
        b"12",
        b"null",
        b"[]",
    ],
)
def test_an_item_decodes_to_the_value_json_gives(item: bytes) -> None:
    """Whatever an item holds, alone on a page or among clean records, it decodes to the
    value ``decode_json`` gives it, and the clean records beside it too."""
    clean = _body(_records(1)).decode()
    for body in (
        b'{"data": [' + item + b"]}",
        clean.replace('"data": [', '"data": [' + item.decode() + ", ", 1).encode(),
    ):
        assert _same_values(decode_page(body), decode_json(body))


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"data": [{"id": 1}]}',  # a byte-order mark: refused by msgspec
        b'{"data": {"id": 1}}',  # no list of records: the page reader says so
        b'{"meta": {}}',
        b"[1, 2]",
        b'{"data": [{"id": 1}], "data": [{"id": 2}]}',
    ],
)
def test_an_answer_msgspec_does_not_read_as_a_page_decodes_as_json(body: bytes) -> None:
    """An answer that is not a page as msgspec reads one is decoded by ``decode_json``:
    the same values, whatever the client then makes of them."""
    assert _same_values(decode_page(body), decode_json(body))


@pytest.mark.parametrize(
    "body",
    [b'{"data": [{"id": 1, "town": "\xff"}]}', b"<html>bad gateway</html>", b'{"data": [1,]}'],
)
def test_a_body_that_is_not_json_is_refused_as_by_json(body: bytes) -> None:
    """Invalid UTF-8 (which msgspec does not check inside what it skips), HTML, broken
    JSON: refused with ValueError, as ``decode_json`` refuses them."""
    with pytest.raises(ValueError):
        decode_json(body)
    with pytest.raises(ValueError):
        decode_page(body)


def test_the_lean_read_of_a_record_decodes_only_its_summary() -> None:
    """The lean read (a first look at every record of a sweep) reads only fields of the
    summary: it gives what it gives from the plain record (the listing, or the same
    refusal, and the same problems), and the record is still not decoded whole."""
    records = _records(80) + _records(80, hostile_rate=0.5, seed=23)
    checked = 0
    for record in records:
        body = _body([record])
        if type(decode_page(body)["data"][0]) is not KatoRecord:
            continue  # refused by msgspec: decoded whole, as before
        (ours,) = _kato_records(body)
        assert _outcome(normalize_kato_lean, ours) == _outcome(normalize_kato_lean, record)
        assert not ours.decoded_whole, record
        checked += 1
    assert checked > len(records) // 2


def test_the_whole_read_of_a_record_from_its_bytes_is_that_of_its_values() -> None:
    """``normalize_kato`` gives the same listing, problems or refusal from a record read
    from its bytes as from the plain record, before or after a lean read of it."""
    for record in _records(60) + _records(60, hostile_rate=0.5, seed=29):
        body = _body([record])
        if type(decode_page(body)["data"][0]) is not KatoRecord:
            continue
        (fresh,) = _kato_records(body)
        (looked,) = _kato_records(body)
        _outcome(normalize_kato_lean, looked)
        expected = _outcome(normalize_kato, record)
        assert _outcome(normalize_kato, fresh) == expected
        assert _outcome(normalize_kato, looked) == expected


def test_a_record_digest_is_of_its_bytes() -> None:
    """The same bytes give the same digest wherever the record is on its page; a change
    of any value, read or not by the lean read, changes it."""
    market = Market(5, kotohomes_count=0, kato_count=3)
    records = market.kato_records()
    first = _kato_records(_body(records))
    moved = _kato_records(_body([records[2], records[0], records[1]]))
    assert [r.digest for r in first] == [moved[1].digest, moved[2].digest, moved[0].digest]
    assert len({r.digest for r in first}) == 3
    for key, value in (("status", "let"), ("marketing", "new words")):
        changed = _kato_records(_body([{**records[0], key: value}]))[0]
        assert changed.digest != first[0].digest, key


def test_a_record_is_a_mapping_like_its_dict() -> None:
    """Keys, membership, lookups with defaults and missing keys behave as the dict's."""
    record = {"id": 9, "status": None, "marketing": {"summary": "s"}}
    (ours,) = _kato_records(_body([record]))
    assert ours.get("status", "absent") is None
    assert ours.get("price", "absent") == "absent"
    assert "status" in ours
    assert "price" not in ours
    with pytest.raises(KeyError):
        ours["price"]
    assert ours["marketing"] == {"summary": "s"}
    assert ours == record
    assert list(ours) == ["id", "status", "marketing"]
