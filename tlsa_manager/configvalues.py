"""The checkers of single configuration values: each returns the value in its type or
raises one :class:`ConfigError` line naming the key, what is wrong and what to write
(config.py assembles hosts and providers from them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlsa_manager.errors import ConfigError, TlsaManagerError
from tlsa_manager.records import host_name

_EXAMPLE_PATHS = {"zone_file": "/etc/bind/db.example.com", "state_dir": "/var/lib/tlsa-manager"}


def path_value(value: object, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        what = "empty" if isinstance(value, str) else kind_of(value)
        raise ConfigError(
            f"{key} must be a path (a string), not {what}",
            f'e.g. {leaf(key)} = "{_EXAMPLE_PATHS.get(leaf(key), "/etc/ssl/mail.pem")}"',
        )
    path = Path(value)
    return path if path.is_absolute() else base / path


def list_value(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key} must be a list, not {kind_of(value)}", f'e.g. {key} = ["..."]')
    return value


def string_value(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        what = "empty" if isinstance(value, str) else kind_of(value)
        raise ConfigError(f"{key} must be a non-empty string, not {what}", f'e.g. {leaf(key)} = "..."')
    return value


def leaf(key: str) -> str:
    """The key as written in its table: ``probe`` of ``hosts."mx".probe``."""
    return key.rsplit(".", 1)[-1]


def check_host_name(name: object, where: str) -> None:
    """An MX host name: a DNS name, not empty, not an IP literal (records need a name)."""
    import ipaddress

    if not isinstance(name, str) or not name.strip().rstrip("."):
        raise ConfigError(f"{where}: the host name is empty", 'write [hosts."mail.example.com"]')
    literal = name.strip().strip("[]")
    try:
        # only a text with a colon (IPv6) or of digits and dots (IPv4) can be an address
        if ":" in literal or literal.replace(".", "").isdigit():
            ipaddress.ip_address(literal)
        else:
            raise ValueError(literal)
    except ValueError:
        pass
    else:
        raise ConfigError(
            f"{where}: {name!r} is an IP address, not a host name",
            "TLSA records live at _25._tcp.<MX host name>; give the name the MX record points to",
        )
    labels = name.strip().rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        raise ConfigError(
            f"{where}: {name!r} is not a host name", "give the MX host name, e.g. mail.example.com"
        )
    try:
        host_name(name)
    except TlsaManagerError as exc:
        raise ConfigError(exc.message, exc.hint) from None


def probe_address(value: object, key: str) -> str:
    """``probe``: an IP address or a host name to connect to; the port is ``probe_port``.
    Checked here, or a typo surfaces only when a deploy is to be verified."""
    import ipaddress
    import re

    text = string_value(value, key).strip()
    try:
        ipaddress.ip_address(text.strip("[]"))
        return text.strip("[]")
    except ValueError:
        pass
    label = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    if len(text) > 253 or not re.fullmatch(rf"{label}(\.{label})*\.?", text):
        raise ConfigError(
            f"{key} must be an IP address or a host name, not {text!r}",
            f'e.g. {leaf(key)} = "127.0.0.1" (the port goes in probe_port)',
        )
    return text


def bool_value(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}", f"write {key} = true")
    return value


def int_value(value: object, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(
            f"{key} must be a whole number from {lo} to {hi}, not {value!r}", f"e.g. {key} = {lo}"
        )
    return value


def table_value(value: object, key: str, example: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table, not {kind_of(value)}", f"write {example}")
    return value


def kind_of(value: object) -> str:
    return {list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
