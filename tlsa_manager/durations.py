"""Durations as people write them in configs and scenarios: ``90``, ``30s``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re

from tlsa_manager.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from an int/float or a string like ``1d2h``; a clear error otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration", 'write e.g. 300, "5m" or "2h"')
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{what}: {value} is negative", "durations are 0 or more")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if text.isdigit():
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"{what}: {value!r} is not a duration", 'write e.g. 300, "5m", "2h" or "1d12h"')
    return sum(float(n) * _UNIT[u] for n, u in parts)
