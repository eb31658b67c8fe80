"""The listing sources, one module each, behind one protocol (:class:`Source`).

``ALL`` holds every source in the order ``models.SOURCES`` names them; ``get(name)`` finds
one. Code that does something per source iterates ``ALL`` (or asks ``get``) instead of
spelling out ``if source == "kotohomes"``::

    for source in sources.ALL:
        if source.settings(config) is not None:
            fetcher = source.fetcher(config, session=session, clock=clock, metrics=metrics)
"""

from __future__ import annotations

from listingbot.models import SOURCES
from listingbot.models import Source as SourceName
from listingbot.sources.base import Fetched, Fetcher, Normalizer, Query, Read, ReadPage, Source
from listingbot.sources.kato import Kato
from listingbot.sources.kotohomes import Kotohomes

__all__ = ["ALL", "Fetched", "Fetcher", "Normalizer", "Query", "Read", "ReadPage", "Source", "get"]

ALL: tuple[Source, ...] = (Kotohomes(), Kato())
assert tuple(s.name for s in ALL) == SOURCES, "one module per source, in SOURCES order"

_BY_NAME: dict[str, Source] = {s.name: s for s in ALL}


def get(name: SourceName | str) -> Source:
    """The source called ``name``; KeyError for a name no source has."""
    return _BY_NAME[name]
