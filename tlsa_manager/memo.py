"""A per-instance memo for methods of frozen value objects (pure).

``functools.cache`` on a method keys its one process-wide table by ``self``: every
call hashes the whole frozen value (a chain hashes its label, its leaf's and every
CA's bytes, each a dataclass ``__hash__`` in Python), and the table keeps every value
ever asked alive for the life of the process (the simulation creates chains by the
million).  Kept on the instance instead, a repeated question costs one dict lookup on
its argument, and the answers go when the value goes.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Hashable
from dataclasses import fields
from typing import Any, ParamSpec, TypeVar

S = TypeVar("S")
A = TypeVar("A", bound=Hashable)
R = TypeVar("R")
P = ParamSpec("P")


def memo_method(method: Callable[[S, A], R]) -> Callable[[S, A], R]:
    """Remember ``method(self, arg)`` per instance; ``self`` must be immutable (frozen)
    and have a ``__dict__`` (no ``slots``), where the table is kept out of its fields."""
    slot = f"_memo_{method.__name__}"

    @functools.wraps(method)
    def wrapper(self: S, arg: A) -> R:
        table: dict[A, R] | None = self.__dict__.get(slot)
        if table is None:
            table = {}
            object.__setattr__(self, slot, table)
        try:
            return table[arg]
        except KeyError:
            value = table[arg] = method(self, arg)
            return value

    return wrapper


def frozen_hash(obj: Any) -> int:
    """The dataclass hash of a frozen value, computed once and kept on it.

    A chain's hash covers its label, its leaf's and every CA's bytes, each a dataclass
    ``__hash__`` in Python: as a key of :func:`pure_cache` it would cost more than the
    answer saves.  The instance is immutable, so its hash never changes (within the
    process: ``bytes`` hashes are salted per process, so these values are never pickled).
    """
    known: int | None = obj.__dict__.get("_memo_hash")
    if known is None:
        getter = _KEYED.get(type(obj))
        if getter is None:
            getter = _KEYED[type(obj)] = _keyed_fields(type(obj))
        known = hash(getter(obj))
        object.__setattr__(obj, "_memo_hash", known)
    return known


#: per class, the getter of the fields its dataclass hash covers (a fresh chain is
#: hashed once per plan: ``fields()`` and a generator per value cost more than the hash)
_KEYED: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _keyed_fields(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    names = [f.name for f in fields(cls) if (f.compare if f.hash is None else f.hash)]
    if len(names) == 1:
        return lambda obj: (getattr(obj, names[0]),)
    return operator.attrgetter(*names)


def pure_cache(maxsize: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Remember a pure function's answers by its arguments' values (their equality).

    For functions the planner asks with the same values run after run (the desired
    set, the lint of an RRset that did not change).  Arguments that cannot be hashed
    (lists) are answered without the cache; a list answer is copied, so a caller may
    change its own copy.
    """

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        cached: Callable[..., R] = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                found = cached(*args, **kwargs)
            except TypeError:  # an unhashable argument
                return function(*args, **kwargs)
            return list(found) if isinstance(found, list) else found  # type: ignore[return-value]

        return wrapper

    return wrap


T = TypeVar("T")


def by_identity(function: Callable[[T], R]) -> Callable[[T], R]:
    """Remember ``function(obj)`` per object, for a tuple that many calls share (the
    catalog's issuers: every host of a run gets the same tuple object).

    Keyed by ``id(obj)``, one dict lookup, where a value key would hash every element
    in Python on every call.  The table holds ``obj`` itself, so its id cannot be
    reused while the answer is kept; only a ``tuple`` (immutable) is remembered, any
    other sequence is answered afresh.  Small and bounded: a run has one catalog.
    """
    table: dict[int, tuple[T, R]] = {}

    @functools.wraps(function)
    def wrapper(obj: T) -> R:
        known = table.get(id(obj))
        if known is not None and known[0] is obj:
            return known[1]
        value = function(obj)
        if isinstance(obj, tuple):
            if len(table) >= 16:
                table.clear()
            table[id(obj)] = (obj, value)
        return value

    return wrapper
