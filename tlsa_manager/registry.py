"""Find providers through the ``tlsa_manager.providers`` entry-point group.

The built-in providers register in the same group a third-party package would use,
so the core never imports the providers package by name (keyring's backends and
certbot's plugins work the same way).  Loading is lazy: only the provider a host
uses is imported, so the Cloudflare SDK is never loaded for a zone-file user.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from tlsa_manager.errors import ConfigError
from tlsa_manager.provider import Provider

GROUP = "tlsa_manager.providers"


#: the last scan, and the import path (each entry and its mtime) it was made on
_SCANNED: list[tuple[tuple[tuple[str, int | None], ...], dict[str, EntryPoint]]] = []


def available() -> dict[str, EntryPoint]:
    """Every registered provider name and its entry point, without importing any.

    ``entry_points`` reads the entry points of every installed distribution (7-10 ms of
    CPU with 90 installed), and a run asks once for the configuration's secret check
    and again per provider it opens: the scan is kept while the import path and its
    folders are unchanged (a folder's mtime changes when a distribution is added to
    it or removed, which is how importlib.metadata's own cache sees it)."""
    key = tuple((entry, _mtime(entry)) for entry in sys.path)
    if not _SCANNED or _SCANNED[0][0] != key:
        _SCANNED[:] = [(key, {ep.name: ep for ep in entry_points(group=GROUP)})]
    return dict(_SCANNED[0][1])


def _mtime(entry: str) -> int | None:
    try:
        return os.stat(entry or ".").st_mtime_ns
    except OSError:
        return None


def provider_class(name: str) -> type[Provider]:
    """Import and return the provider class registered as ``name``."""
    found = available()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"unknown provider type {name!r}", f"use one of: {known}")
    try:
        cls = found[name].load()
    except ImportError as exc:
        raise ConfigError(
            f"provider {name!r} cannot be loaded ({exc})",
            f"install what it needs, e.g. pip install 'tlsa-manager[{name}]'",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"entry point {name!r} is not a tlsa-manager provider", "reinstall it")
    return cls


def secret_settings(name: str, keys: Iterable[str] = ()) -> frozenset[str]:
    """The inline secret keys provider type ``name`` declares.  For a type that cannot be
    loaded (its error comes when it is used), those of ``keys`` that look like a secret."""
    try:
        return frozenset(provider_class(name).secret_settings)
    except ConfigError:
        return frozenset(
            k for k in keys if any(w in k for w in _SECRET_WORDS) and not k.endswith(("_file", "_env"))
        )


_SECRET_WORDS = ("secret", "token", "password", "api_key")
