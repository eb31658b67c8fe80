"""How much memory the service holds, measured two ways.

``retained_bytes`` walks the object graph from the service's composition root (the
``App``) and from listingbot's module globals, and adds up the sizes of everything it
reaches. It stops at what the service shares but does not own: the event loop, modules,
classes, functions, code, frames and coroutines, the stdlib's bounded caches, and
anything of the simulators. Cheap enough for the default run, and exact: it sees what the
service keeps, nothing else.

``traced_bytes`` is what tracemalloc says listingbot's own code allocated and still
holds. It needs tracemalloc running, which makes every allocation about three times as
slow, so the default run leaves it to ``LISTINGBOT_LONG=1``. Its figures carry some
noise: a block is attributed to the line that first allocated it, and a block freed by
listingbot and reused through CPython's free lists by the simulators' growing stores
stays attributed to listingbot (~100 bytes a cycle here).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sqlite3
import sys
import tracemalloc
import types
from typing import Any

_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    asyncio.AbstractEventLoop,
    # Bounded by design, and C memory that getsizeof cannot see anyway: the statement
    # cache of a connection (128 statements), the caches of stdlib functions (128 calls).
    sqlite3.Connection,
)


def _opaque(obj: Any) -> bool:
    if isinstance(obj, _OPAQUE):
        return True
    if isinstance(obj, functools._lru_cache_wrapper):
        return not str(getattr(obj, "__module__", "")).startswith("listingbot")
    module = getattr(type(obj), "__module__", "") or ""
    return module.startswith("listingbot.sim")


def retained_bytes(root: object) -> int:
    """Bytes of every object reachable from ``root`` and from listingbot's modules."""
    gc.collect()
    roots: list[Any] = [root]
    for name, module in list(sys.modules.items()):
        if name.startswith("listingbot") and not name.startswith("listingbot.sim"):
            roots.append(vars(module))
    seen: set[int] = set()
    total = 0
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if obj is not root and _opaque(obj):
            continue
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


def traced_bytes() -> int:
    """Bytes allocated by listingbot's code (not the simulators') and still held."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(True, "*/listingbot/*"),
            tracemalloc.Filter(False, "*/listingbot/sim/*"),
        )
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))
