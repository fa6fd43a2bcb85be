"""Durations as people write them in configs and scenarios: ``90``, ``30s``, ``1h30m``, ``2d``."""

from __future__ import annotations

import math
import re

from tlsa_manager.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
MAX_SECONDS = 10 * 366 * 86400  # ten years: anything longer is a typo (and inf/nan never)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from an int/float or a string like ``1d2h``; a clear error otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration", 'write e.g. 300, "5m" or "2h"')
    if isinstance(value, int | float):
        if not math.isfinite(value) or value > MAX_SECONDS:
            raise ConfigError(f"{what}: {value} is not a usable duration", 'write e.g. 300, "5m" or "2h"')
        if value < 0:
            raise ConfigError(f"{what}: {value} is negative", "durations are 0 or more")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{what}: {value!r} is not a duration", 'write e.g. 300, "5m" or "2h"')
    text = value.strip().lower().replace(" ", "")
    if text.isdigit() and text.isascii():
        return parse_duration(int(text), what)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"{what}: {value!r} is not a duration", 'write e.g. 300, "5m", "2h" or "1d12h"')
    total = sum(float(n) * _UNIT[u] for n, u in parts)
    if total > MAX_SECONDS:
        raise ConfigError(f"{what}: {value!r} is longer than ten years", 'write e.g. 300, "5m" or "2h"')
    return total


def positive_seconds(value: object, what: str) -> float:
    """A timeout: a duration above 0 (``10``, ``"30s"``; a flag's ``"10"`` too)."""
    seconds = parse_duration(value, what)
    if seconds <= 0:
        raise ConfigError(f"{what}: must be above 0 seconds", "e.g. 10")
    return seconds
