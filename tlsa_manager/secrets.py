"""Read a secret (TSIG secret, API token) from a file or an environment variable.

One place for it, so every provider treats secrets alike: the value is returned and
never put into a message; errors name the file or the variable, not the content.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlsa_manager.errors import ConfigError


def read_secret(
    config: Mapping[str, Any],
    what: str,
    *,
    file_key: str,
    env_key: str,
    inline_key: str | None = None,
    default_env: str | None = None,
) -> str | None:
    """The secret from ``config[file_key]`` (a path), ``config[inline_key]`` or the variable
    named by ``config[env_key]`` (or ``default_env``); None if none of them is configured."""
    if config.get(file_key):
        path = Path(str(config[file_key]))
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})", "check the path") from None
        if not value:
            raise ConfigError(f"{path}: the {what} file is empty", "put the secret in it")
        return value
    if inline_key and config.get(inline_key):
        return str(config[inline_key]).strip()
    var = config.get(env_key) or default_env
    if not var:
        return None
    value = os.environ.get(str(var), "").strip()
    if not value:
        raise ConfigError(
            f"environment variable {var} ({what}) is not set", f"export {var}, or use {file_key}"
        )
    return value
