"""The settings many providers take, described once: a provider's ``settings`` spread
these (``**provider_settings.timeout(30)``), so one key means one thing, in one wording,
on every provider page of docs/config.md.  A provider still reads its values itself
(their defaults differ)."""

from __future__ import annotations


def nameservers(detail: str = "") -> dict[str, str]:
    """``nameservers``, which :meth:`tlsa_manager.provider.Provider.nameservers` reads for
    every provider; ``detail`` says what is polled without it."""
    meaning = "authoritative servers to poll, host:port list"
    return {"nameservers": f"{meaning} ({detail})" if detail else meaning}


def timeout(default: int, per: str = "request") -> dict[str, str]:
    """``timeout``: how long one request (or DNS query) to the backend may take."""
    return {"timeout": f"seconds per {per} (default {default})"}


def api_url(default: str) -> dict[str, str]:
    """``api_url``: where an HTTP provider's API is (a test server, a proxy)."""
    return {"api_url": f"API base URL (default {default})"}


def zone(found: str) -> dict[str, str]:
    """``zone`` for a provider that finds the apex itself when it is left out; ``found``
    says how ("by SOA")."""
    return {"zone": f"zone apex; found {found} when left out"}
