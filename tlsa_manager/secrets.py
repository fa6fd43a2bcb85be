"""Secrets (TSIG secrets, API tokens): read from a file or an environment variable, kept in.

One place for it, so every provider treats secrets alike:

- the value is returned and never put into a message; errors name the setting, and
  name the file or variable only when that cannot be the secret itself (a token pasted
  into ``api_token_env`` by mistake is not echoed back);
- a secret file other users can read is used, with a warning (``chmod 600``);
- commands we run (reload commands) get an environment without the variables secrets
  came from, nor any that look like credentials (:func:`scrubbed_environ`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsa_manager.errors import ConfigError, UsageError
from tlsa_manager.fsutil import read_regular

log = logging.getLogger(__name__)

#: Settings that hold a secret inline; refused on the command line (``ps`` shows it).
SECRET_KEYS = ("tsig_secret", "api_token", "token", "secret", "password", "api_key")
#: What an environment variable's name looks like; anything else may be a pasted secret.
_VAR_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
#: Names of variables that hold credentials in the environment of a typical run.
_CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|CREDENTIAL|TSIG|PRIVATE", re.IGNORECASE)
#: Variables read as secrets in this process: never passed on to a command.
_read_vars: set[str] = set()
SECRET_LIMIT = 64 * 1024


def is_secret_key(key: str) -> bool:
    """True for a setting that holds a secret inline (``api_token``, ``tsig_secret``, ...)."""
    lowered = key.lower()
    return lowered in SECRET_KEYS or (
        not lowered.endswith(("_file", "_env")) and any(lowered.endswith(k) for k in SECRET_KEYS)
    )


def _shown_var(var: str) -> str:
    """The variable's name if it looks like one; otherwise not shown (it may be the secret)."""
    return var if _VAR_NAME.fullmatch(var) else "(value not shown: it does not look like a variable name)"


def warn_if_readable(path: Path, what: str) -> None:
    """Warn once when a secret file is readable by other users (it should be 0600/0640)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o004:
        log.warning(
            "warning: %s: the %s is readable by every user (mode %o); chmod 600 %s", path, what, mode, path
        )


def read_secret_file(path: Path, what: str, key: str) -> str:
    """The stripped text of a secret file; errors never quote the content, and a path
    that names no file is not echoed (it may be the secret pasted into ``key``)."""
    if not path.exists() and not path.is_symlink():
        shown = str(path) if path.parent.is_dir() and not _looks_like_secret(path.name) else None
        raise ConfigError(
            f"{key}: {shown + ': ' if shown else ''}cannot read the {what} (no such file)",
            f"set {key} to the path of the file that holds the {what}",
        )
    data = read_regular(path, limit=SECRET_LIMIT, error=ConfigError, what=f"{what} file")
    warn_if_readable(path, what)
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the {what} file is not text", "put the secret in it as text") from None
    if not value:
        raise ConfigError(f"{path}: the {what} file is empty", "put the secret in it")
    return value


def _looks_like_secret(text: str) -> bool:
    """A run of 16 or more base64/token characters: could be a token or a TSIG secret."""
    return bool(re.search(r"[A-Za-z0-9+/=_-]{16,}", text)) and not re.fullmatch(r"[a-z0-9_./-]+", text)


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
        return read_secret_file(Path(str(config[file_key])), what, file_key)
    if inline_key and config.get(inline_key):
        return str(config[inline_key]).strip()
    var = str(config.get(env_key) or default_env or "")
    if not var:
        return None
    if not _VAR_NAME.fullmatch(var):
        raise ConfigError(
            f"{env_key} must name an environment variable (value not shown: it may be the {what} itself)",
            f'write {env_key} = "NAME" and export NAME=...; never put the {what} in the config',
        )
    _read_vars.add(var)
    value = os.environ.get(var, "").strip()
    if not value:
        raise ConfigError(
            f"environment variable {_shown_var(var)} ({what}) is not set", f"export {var}, or use {file_key}"
        )
    return value


def scrubbed_environ(extra_secret_vars: Iterable[str] = ()) -> dict[str, str]:
    """The environment for a command we run: without any variable a secret came from, and
    without any whose name says it holds a credential (a reload needs none of them)."""
    drop = _read_vars | set(extra_secret_vars)
    return {k: v for k, v in os.environ.items() if k not in drop and not _CREDENTIAL_NAME.search(k)}


def parse_provider_options(items: Iterable[str]) -> dict[str, str]:
    """``--provider-option KEY=VALUE`` settings; a secret there is refused (``ps`` shows it)."""
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if is_secret_key(key):
            raise UsageError(
                f"--provider-option {key}=... would put a secret on the command line, where ps shows it",
                f"use {key}_file or {key}_env (or a config file of mode 0600)",
            )
        if not sep or not key:
            shown = item if len(item) <= 40 and not _looks_like_secret(item) else "(value not shown)"
            raise UsageError(
                f"--provider-option {shown} is not KEY=VALUE", "e.g. --provider-option zone=example.com"
            )
        settings[key] = value
    return settings


def secret_options(
    key: str, what: str, default_env: str | None = None, *, inline: bool = True
) -> dict[str, str]:
    """The settings of one secret (``KEY_env``, ``KEY_file`` and, unless ``inline`` is
    false, ``KEY``), described alike for every provider."""
    default = f" (default {default_env})" if default_env else ""
    options = {
        f"{key}_env": f"environment variable holding the {what}{default}",
        f"{key}_file": f"file holding the {what}",
    }
    if inline:
        options[key] = f"the {what} inline (only in a config file of mode 0600)"
    return options


@dataclass(frozen=True)
class ProviderSecret:
    """A provider's secret, said once: its setting name, what it is, whose it is and the
    variable read by default.  The provider's ``secret_settings``, its documented
    settings and its read (:meth:`tlsa_manager.provider.Provider.secret`) come from it,
    so they cannot disagree."""

    key: str
    #: as the settings describe it, e.g. "API token"
    what: str
    #: whose it is, for messages, e.g. "Cloudflare" (messages say "Cloudflare API token")
    service: str
    default_env: str

    @property
    def label(self) -> str:
        return f"{self.service} {self.what}"

    def declared(self) -> dict[str, str]:
        """The provider's ``secret_settings``."""
        return {self.key: self.label}

    def options(self) -> dict[str, str]:
        """Its three settings, for the provider's ``settings``."""
        return secret_options(self.key, self.what, self.default_env)
