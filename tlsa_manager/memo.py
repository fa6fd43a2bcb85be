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
from collections.abc import Callable, Hashable
from typing import TypeVar

S = TypeVar("S")
A = TypeVar("A", bound=Hashable)
R = TypeVar("R")


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
