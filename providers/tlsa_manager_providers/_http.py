"""The retry rules the HTTP providers share (deSEC, Cloudflare).

A 429 means the request was not processed: it is repeated after Retry-After when
that is within the provider's ``max_retry_after`` and tries are left, else the run
stops with one line.  A 5xx or a timeout is retried for reads after a short pause;
a write is never repeated blindly (the caller reads again to learn what happened).
"""

from __future__ import annotations

import logging
import time

from tlsa_manager.errors import ProviderError

log = logging.getLogger(__name__)

#: the setting that bounds :func:`wait_rate_limit` (each provider reads it, default 60)
MAX_RETRY_AFTER = {"max_retry_after": "longest Retry-After to honour on 429, seconds (default 60)"}


def retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (only the delta-seconds form is used by these APIs)."""
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def wait_rate_limit(service: str, what: str, seconds: float, bound: float, *, last: bool, hint: str) -> None:
    """Sleep out a 429's Retry-After, or raise when it exceeds ``bound`` or no try is left."""
    if seconds > bound or last:
        raise ProviderError(f"{service} rate-limits {what} (Retry-After {seconds:g}s)", hint)
    log.info("%s rate limit on %s: waiting %.0f s", service, what, seconds)
    time.sleep(seconds)


def backoff(attempt: int) -> None:
    """The pause before the next try of a read after a 5xx or a timeout (0.5 s, 1 s, ...)."""
    time.sleep(0.5 * (attempt + 1))
