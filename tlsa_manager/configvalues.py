"""The checkers of single configuration values: each returns the value in its type or
raises one :class:`ConfigError` line naming the key, what is wrong and what to write
(config.py assembles hosts and providers from them)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tlsa_manager.errors import ConfigError, TlsaManagerError
from tlsa_manager.records import host_name

_EXAMPLE_PATHS = {"zone_file": "/etc/bind/db.example.com", "state_dir": "/var/lib/tlsa-manager"}


#: the host keys whose values are each host's own (its files); a fleet's hosts share the rest
OWN_KEYS = frozenset({"cert", "certs", "key", "next_keys", "staged_dir"})


def cert_values(defaults: Mapping[str, Any], doc: Mapping[str, Any], where: str) -> list[object]:
    """The host's certificate files: its own ``cert``/``certs``, else the defaults'; one
    table giving both is refused (one of them would be ignored without a word)."""
    for table in (doc, defaults):
        if "cert" in table and "certs" in table:
            raise ConfigError(
                f"{where if table is doc else 'defaults'}: cert and certs are both given",
                "give cert = a file, or certs = [files], not both",
            )
        if "cert" in table or "certs" in table:
            value = table.get("certs", table.get("cert"))
            return value if isinstance(value, list) else ([value] if value else [])
    return []


def certs_value(values: list[object], where: str, base: Path) -> tuple[Path, ...]:
    return tuple(path_value(c, f"{where}.cert", base) for c in values)


def key_value(merged: Mapping[str, Any], where: str, base: Path) -> Path | None:
    return path_value(merged["key"], f"{where}.key", base) if merged.get("key") else None


def next_keys_value(merged: Mapping[str, Any], where: str, base: Path) -> tuple[Path, ...]:
    return tuple(path_value(k, f"{where}.next_keys", base) for k in list_value(merged, "next_keys", where))


def staged_dir_value(
    merged: Mapping[str, Any], where: str, base: Path, certs: tuple[Path, ...] = ()
) -> Path | None:
    """``staged_dir``, refused when it is the folder of a live file: a renewal staged
    there would be written over the live file itself, live at the MTA's next reload
    before its records are served (hooks.stage also compares the resolved paths)."""
    value = merged.get("staged_dir")
    if not value:
        return None
    staged = path_value(value, f"{where}.staged_dir", base)
    live = next((c for c in certs if os.path.normpath(c.parent) == os.path.normpath(staged)), None)
    if live is not None:
        raise ConfigError(
            f"{where}.staged_dir is the folder of the live file {live}: a renewal would be "
            "written over the live file before its records are served",
            'give staged_dir a folder of its own, e.g. staged_dir = "/etc/tlsa-manager/staged/HOST"',
        )
    return staged


def check_staged_apart(hosts: Iterable[tuple[str, Path | None, tuple[Path, ...]]]) -> None:
    """Refuse two hosts (name, staged_dir, live files) that stage to one file (a staged_dir
    in [defaults], live files of one name): each would take the other's renewal for its
    own staged chain, publish its key and deploy it, whichever host came first.  Hosts
    whose live file is one file (one MTA under two MX names) share its renewal: allowed."""
    seen: dict[str, tuple[str, str]] = {}
    for name, staged, certs in hosts:
        for cert in certs:
            if staged is None:
                break
            path = os.path.normpath(staged / cert.name)
            live = os.path.normpath(cert)
            other, other_live = seen.setdefault(path, (name, live))
            if other != name and other_live != live:
                raise ConfigError(
                    f'hosts."{other}" and hosts."{name}" both stage {cert.name} as {path}: a renewal '
                    "of one would be deployed as the other's live file",
                    'give each host its own staged_dir, e.g. staged_dir = "/etc/tlsa-manager/staged/HOST"',
                )


def frozen(value: object) -> object:
    """A hashable form of a TOML value that keeps apart what Python holds equal
    (``1``, ``1.0`` and ``true``; ``0.0`` and ``-0.0``); TypeError if there is none."""
    if isinstance(value, list):
        return (list, tuple(frozen(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, float):
        return (float, repr(value))
    return (type(value), value)


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


def nameserver_value(value: object, key: str) -> str:
    """One ``nameservers`` entry, its port checked now (its name is looked up when used)."""
    from tlsa_manager.endpoints import split_endpoint

    text = string_value(value, key)
    try:
        split_endpoint(text)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc.message}", exc.hint) from None
    return text


def instance_value(value: object) -> str | None:
    """The run's name in record comments and metrics: one line of text (a newline would
    split a comment or a metrics line)."""
    if value is not None and not (isinstance(value, str) and value.strip() and value.isprintable()):
        raise ConfigError("instance must be a non-empty line of text", 'e.g. instance = "mx1-postfix"')
    return value


def int_value(value: object, key: str, lo: int, hi: int, example: str) -> int:
    """A whole number in ``lo..hi``; the hint shows ``example`` (the default, as a user
    would write it), not the bound: "e.g. ttl = 1" reads as advice to use 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(
            f"{key} must be a whole number from {lo} to {hi}, not {value!r}", f"e.g. {leaf(key)} = {example}"
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


def blame_defaults(
    exc: ConfigError, where: str, table: Mapping[str, Any], defaults: Mapping[str, Any]
) -> ConfigError:
    """An error in a key the host took from ``[defaults]`` names ``defaults.KEY``, not the
    host: that is where the value is written (and every host would report it)."""
    for key in defaults.keys() - table.keys():
        wrong, right = f"{where}.{key}", f"defaults.{key}"
        if wrong in exc.message:
            hint = exc.hint.replace(wrong, right) if exc.hint else None
            return ConfigError(exc.message.replace(wrong, right), hint)
    return exc
