"""TOML text to a document, as :func:`tomllib.loads` gives it, faster when it can be.

The standard library's parser is pure Python: the configuration of a thousand hosts
takes it 50-80 ms of CPU.  tomli is the same parser (tomllib was taken from it), and
its wheels are compiled with mypyc: 2-3x faster.  It is used only in the versions that
read TOML 1.0, as tomllib does (2.2.1-2.3; 2.4 reads TOML 1.1 and so accepts what
tomllib refuses).  A text it refuses is parsed again by tomllib, so the error a user
sees, and whether there is one, never depends on what is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_Loads = Callable[[str], dict[str, Any]]
_FAST: list[_Loads | None] = []


def _fast() -> _Loads | None:
    if not _FAST:
        try:
            import tomli
        except ImportError:
            _FAST.append(None)
            return None
        version = tuple(int(p) for p in str(getattr(tomli, "__version__", "0")).split(".")[:2] if p.isdigit())
        _FAST.append(tomli.loads if (2, 2) <= version < (2, 4) else None)
    return _FAST[0]


def loads(text: str) -> dict[str, Any]:
    """:func:`tomllib.loads`; its errors (``tomllib.TOMLDecodeError``, RecursionError)."""
    fast = _fast()
    if fast is not None:
        try:
            return fast(text)
        except Exception:
            pass
    import tomllib

    return tomllib.loads(text)
