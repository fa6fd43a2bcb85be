"""The settings many providers take, described once: a provider's ``settings`` spread
these (``**provider_settings.timeout(30)``), so one key means one thing, in one wording,
on every provider page of docs/config.md.  A provider still reads its values itself
(their defaults differ)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from tlsa_manager.errors import ConfigError


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


def token_api_url(value: object, default: str, provider: str) -> str:
    """The ``api_url`` an API token is sent to: https, or http to this machine only (a
    test server, a local proxy); plain http elsewhere would carry the token across the
    network in clear.  The URL is not echoed (it may carry user:password)."""
    url = str(value or default).rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # "Invalid IPv6 URL": an unclosed "[" (was an internal error)
        hint = f'write api_url = "{default}" or leave it out'
        raise ConfigError(f"{provider} api_url is not a URL", hint) from None
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and (host == "localhost" or _loopback(host)):
        return url
    raise ConfigError(
        f"{provider} api_url must be an https:// URL (http:// only to this machine: the API token "
        f"would cross the network in clear), not {parts.scheme or 'no scheme'}://{host}",
        f'write api_url = "{default}" or leave it out',
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
