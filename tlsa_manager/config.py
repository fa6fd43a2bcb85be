"""The configuration file (TOML) and the one-off configuration built from flags.

Reference: docs/config.md.  Every mistake is one :class:`ConfigError` line naming
the key and what to write instead.  Secrets are never inline unless the file is
readable by its owner only (0600): a TSIG secret or API token comes from a file
(``*_file``) or an environment variable (``*_env``).
"""

from __future__ import annotations

import functools
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsa_manager.configvalues import (
    OWN_KEYS,
    blame_defaults,
    bool_value,
    cert_values,
    certs_value,
    check_host_name,
    check_staged_apart,
    frozen,
    instance_value,
    int_value,
    key_value,
    list_value,
    nameserver_value,
    next_keys_value,
    path_value,
    probe_address,
    staged_dir_value,
    table_value,
)
from tlsa_manager.derive import DEFAULT_KINDS
from tlsa_manager.durations import parse_duration
from tlsa_manager.errors import ConfigError, InputError
from tlsa_manager.fsutil import decode_text, read_regular
from tlsa_manager.policy import HostPolicy, validate_kinds
from tlsa_manager.records import Params, parse_params
from tlsa_manager.secrets import is_secret_key

CONFIG_LIMIT = 4 * 1024 * 1024
HOST_KEYS = {
    "provider",
    "ports",
    "cert",
    "key",
    "certs",
    "next_keys",
    "auto_next_keys",
    "records",
    "ttl",
    "budget",
    "prune",
    "unsafe_allow_fragile_kinds",
    "pin_backup_issuers",
    "slack",
    "negative_ttl",
    "reload",
    "staged_dir",
    "nameservers",
    "probe",
    "probe_port",
    "ttl_ceiling",
    "propagation_delay",
}


@dataclass(frozen=True)
class HostSpec:
    """One MX host as configured."""

    name: str
    provider: str
    ports: tuple[int, ...] = (25,)
    certs: tuple[Path, ...] = ()
    key: Path | None = None
    next_keys: tuple[Path, ...] = ()
    #: keep one next key per key type in STATE_DIR/next-keys/HOST (docs/key-rollover.md)
    auto_next_keys: bool = False
    kinds: tuple[Params, ...] = DEFAULT_KINDS
    ttl: int = 3600
    budget: int = 12
    prune: bool = False
    unsafe_allow_fragile_kinds: bool = False
    pin_backup_issuers: bool = True
    slack: float = 300.0
    negative_ttl: int | None = None
    reload: tuple[str, ...] = ()
    staged_dir: Path | None = None
    nameservers: tuple[str, ...] = ()
    probe: str | None = None
    #: None: probe every port in ``ports``
    probe_port: int | None = None
    ttl_ceiling: int = 86400
    propagation_delay: float | None = None

    @property
    def policy(self) -> HostPolicy:
        """Kept on the spec: a fleet's copies of one checked spec share it (its hash)."""
        known: HostPolicy | None = self.__dict__.get("_policy")
        if known is None:
            known = HostPolicy(
                self.kinds, self.budget, self.unsafe_allow_fragile_kinds, self.pin_backup_issuers, self.prune
            )
            object.__setattr__(self, "_policy", known)
        return known


@dataclass(frozen=True)
class Config:
    providers: Mapping[str, Mapping[str, Any]]
    hosts: Mapping[str, HostSpec]
    state_dir: Path | None = None
    source: str = "flags"
    #: who publishes (Cloudflare comment marks are per instance); default: the host name
    instance: str | None = None

    def host(self, name: str) -> HostSpec:
        wanted = name.rstrip(".").lower()
        if wanted not in self.hosts:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise ConfigError(f"host {name!r} is not configured in {self.source}", f"configured: {known}")
        return self.hosts[wanted]

    def select(self, names: list[str], all_hosts: bool = False) -> list[HostSpec]:
        if all_hosts or not names:
            if not self.hosts:
                raise ConfigError(f"no hosts configured in {self.source}", 'add [hosts."mail.example.com"]')
            return [self.hosts[h] for h in sorted(self.hosts)]
        return [self.host(n) for n in names]


@functools.lru_cache(maxsize=256)
def _kinds(records: tuple[str, ...]) -> tuple[Params, ...]:
    """Parsed once per distinct list: a fleet's hosts mostly share one (errors are not cached)."""
    return tuple(parse_params(k) for k in records)


@functools.lru_cache(maxsize=256)
def _validate_kinds(kinds: tuple[Params, ...], unsafe: bool) -> None:
    validate_kinds(kinds, unsafe)


def _copy_spec(checked: HostSpec, **own: object) -> HostSpec:
    """``dataclasses.replace(checked, **own)`` without running ``__init__`` again
    (a frozen dataclass of 22 fields: the copy is most of a host's time): every field
    is a value already checked, HostSpec has no ``__post_init__``."""
    spec = object.__new__(HostSpec)
    spec.__dict__.update(checked.__dict__, **own)
    return spec


class _FleetSpecs:
    """The hosts of one configuration: a fleet's hosts mostly share every setting but
    their name and files, so the shared settings are checked once per distinct set and
    each further host only for its name and files (a thousand hosts: milliseconds, not a
    tenth of a second).  A host that fails any check is checked again in full by
    :func:`_host_spec`, so the error is the one a host of its own would get."""

    def __init__(self, defaults: Mapping[str, Any], base: Path, providers: Mapping[str, Any]) -> None:
        self.defaults = defaults
        self.base = base
        self.providers = providers
        self.checked: dict[object, HostSpec] = {}

    def spec(self, name: str, doc: Mapping[str, Any]) -> HostSpec:
        merged = {**self.defaults, **doc}
        try:
            shared = tuple((k, frozen(v)) for k, v in merged.items() if k not in OWN_KEYS)
            checked = self.checked.get(shared)
        except TypeError:  # a value with no hashable form: checked in full
            shared, checked = None, None
        if checked is not None:
            where = f'hosts."{name}"'
            try:
                check_host_name(name, where)
                certs = certs_value(cert_values(self.defaults, doc, where), where, self.base)
                key = key_value(merged, where, self.base)
                next_keys = next_keys_value(merged, where, self.base)
                staged_dir = staged_dir_value(merged, where, self.base, certs)
            except ConfigError:
                certs = ()
            if certs:
                return _copy_spec(
                    checked,
                    name=name.rstrip(".").lower(),
                    certs=certs,
                    key=key,
                    next_keys=next_keys,
                    staged_dir=staged_dir,
                )
        spec = _host_spec(name, doc, self.defaults, self.base, self.providers)
        if shared is not None:
            spec.policy  # noqa: B018  (made now: the copies of this spec share it)
            self.checked[shared] = spec
        return spec


def _host_spec(
    name: str, doc: Mapping[str, Any], defaults: Mapping[str, Any], base: Path, providers: Mapping[str, Any]
) -> HostSpec:
    merged = {**defaults, **doc}
    where = f'hosts."{name}"'
    unknown = set(merged) - HOST_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}", "see docs/config.md for the host keys"
        )
    check_host_name(name, where)
    provider = merged.get("provider")
    if not provider:
        if len(providers) == 1:
            provider = next(iter(providers))
        else:
            raise ConfigError(f"{where}: no provider", 'add provider = "NAME" naming a [providers.NAME]')
    if not isinstance(provider, str) or provider not in providers:
        raise ConfigError(
            f"{where}: provider {provider!r} is not defined",
            f"define [providers.{provider}] or use one of: {', '.join(sorted(providers)) or 'none'}",
        )
    certs = cert_values(defaults, doc, where)
    records = merged.get("records", ["3 1 1", "2 1 1"])
    if not isinstance(records, list) or not records or not all(isinstance(k, str) for k in records):
        raise ConfigError(
            f"{where}.records must be a list of record kinds", 'e.g. records = ["3 1 1", "2 1 1"]'
        )
    kinds = _kinds(tuple(records))
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"{where}.records names a kind twice", "list each kind once")
    unsafe = bool_value(
        merged.get("unsafe_allow_fragile_kinds", False), f"{where}.unsafe_allow_fragile_kinds"
    )
    _validate_kinds(kinds, unsafe)
    ports = merged.get("ports", [25])
    if not isinstance(ports, list) or not ports:
        raise ConfigError(f"{where}.ports must be a list of ports", "e.g. ports = [25]")
    if len(set(map(repr, ports))) != len(ports):
        raise ConfigError(f"{where}.ports lists a port twice", "list each port once, e.g. ports = [25, 465]")
    reload = merged.get("reload", [])
    if not isinstance(reload, list) or not all(isinstance(a, str) and a for a in reload):
        raise ConfigError(
            f"{where}.reload must be a list of strings (no shell)",
            'e.g. reload = ["systemctl", "reload", "postfix"]',
        )
    neg = merged.get("negative_ttl")
    spec = HostSpec(
        name=name.rstrip(".").lower(),
        provider=str(provider),
        ports=tuple(int_value(p, f"{where}.ports", 1, 65535, "[25]") for p in ports),
        certs=certs_value(certs, where, base),
        key=key_value(merged, where, base),
        next_keys=next_keys_value(merged, where, base),
        auto_next_keys=bool_value(merged.get("auto_next_keys", False), f"{where}.auto_next_keys"),
        kinds=kinds,
        ttl=int_value(merged.get("ttl", 3600), f"{where}.ttl", 1, 2**31 - 1, "3600"),
        budget=int_value(merged.get("budget", 12), f"{where}.budget", 1, 100, "12"),
        prune=bool_value(merged.get("prune", False), f"{where}.prune"),
        unsafe_allow_fragile_kinds=unsafe,
        pin_backup_issuers=bool_value(merged.get("pin_backup_issuers", True), f"{where}.pin_backup_issuers"),
        slack=parse_duration(merged.get("slack", 300), f"{where}.slack"),
        negative_ttl=int(parse_duration(neg, f"{where}.negative_ttl")) if neg is not None else None,
        reload=tuple(reload),
        staged_dir=staged_dir_value(merged, where, base, certs_value(certs, where, base)),
        nameservers=tuple(
            nameserver_value(n, f"{where}.nameservers") for n in list_value(merged, "nameservers", where)
        ),
        probe=probe_address(merged["probe"], f"{where}.probe") if "probe" in merged else None,
        probe_port=int_value(merged["probe_port"], f"{where}.probe_port", 1, 65535, "25")
        if merged.get("probe_port") is not None
        else None,
        ttl_ceiling=int(parse_duration(merged.get("ttl_ceiling", 86400), f"{where}.ttl_ceiling")),
        propagation_delay=(
            parse_duration(merged["propagation_delay"], f"{where}.propagation_delay")
            if merged.get("propagation_delay") is not None
            else None
        ),
    )
    if not certs:
        raise ConfigError(
            f"{where}: no certificate (cert or certs)",
            'add cert = "/etc/ssl/mail/fullchain.pem": records are derived from the chain the MTA serves',
        )
    return spec


def check_secret_settings(name: str, settings: Mapping[str, Any], path: Path | None) -> None:
    """Inline secrets only in a file nobody else can read; which keys are secrets, the
    provider declares (``Provider.secret_settings``), the core lists none."""
    from tlsa_manager.registry import secret_settings

    secrets = secret_settings(str(settings.get("type", "")), settings)
    inline = [k for k in settings if k in secrets or is_secret_key(k)]
    if not inline or path is None:
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"providers.{name}.{inline[0]} is inline in {path}, which others may read (mode {mode:o})",
            f"chmod 600 {path}, or use {inline[0]}_file / {inline[0]}_env",
        )


def load_config(path: Path) -> Config:
    """Parse and check a configuration file (a regular file only: a FIFO would hang us)."""
    try:
        raw = read_regular(path, limit=CONFIG_LIMIT, what="configuration file")
    except InputError as exc:
        if "no such" in exc.message:
            raise InputError(
                f"{path}: no such configuration file", "give --config PATH, or use flags"
            ) from None
        raise
    text = decode_text(raw, path, ConfigError)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", "fix the syntax at that line") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply", "a tlsa-manager configuration is flat tables"
        ) from None
    return config_from_dict(doc, Path(os.path.abspath(path)).parent, str(path), path)


def _provider_settings(name: str, settings: dict[str, Any], base: Path) -> dict[str, Any]:
    """Provider settings with relative file paths resolved against the config file's folder
    (as for ``cert``): a run from another directory must not read an unrelated file."""
    out = dict(settings, name=name)
    for key, value in settings.items():
        if key.endswith("_file"):  # a path (a string), or one line naming the key
            out[key] = str(path_value(value, f"providers.{name}.{key}", base))
    return out


def config_from_dict(doc: Mapping[str, Any], base: Path, source: str, path: Path | None = None) -> Config:
    unknown = set(doc) - {"state_dir", "instance", "providers", "hosts", "defaults"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}",
            "use state_dir, instance, [defaults], [providers.NAME], [hosts.NAME]",
        )
    providers: dict[str, Mapping[str, Any]] = {}
    for name, settings in table_value(doc.get("providers", {}), "providers", "[providers.NAME]").items():
        if not isinstance(settings, dict) or "type" not in settings:
            raise ConfigError(f"providers.{name} needs a type", 'e.g. type = "rfc2136"')
        if not isinstance(settings["type"], str):
            raise ConfigError(f"providers.{name}.type must be a string", 'e.g. type = "rfc2136"')
        check_secret_settings(name, settings, path)
        providers[name] = _provider_settings(name, settings, base)
    defaults = table_value(doc.get("defaults", {}), "defaults", "[defaults] with host keys")
    if set(defaults) - HOST_KEYS:
        raise ConfigError(
            f"defaults: unknown key(s) {', '.join(sorted(set(defaults) - HOST_KEYS))}",
            "see docs/config.md for the host keys",
        )
    hosts: dict[str, HostSpec] = {}
    specs = _FleetSpecs(defaults, base, providers)
    for name, hdoc in table_value(doc.get("hosts", {}), "hosts", '[hosts."mail.example.com"]').items():
        where = f'hosts."{name}"'
        table = table_value(hdoc, where, f'[hosts."{name}"] with cert = "..." under it')
        try:
            spec = specs.spec(name, table)
        except ConfigError as exc:
            raise blame_defaults(exc, where, table, defaults) from None
        if spec.name in hosts:
            raise ConfigError(
                f"{where}: the same host as another entry (names differ only by case or a trailing dot)",
                "keep one entry per host",
            )
        hosts[spec.name] = spec
    check_staged_apart((h.name, h.staged_dir, h.certs) for h in hosts.values())
    state = path_value(doc["state_dir"], "state_dir", base) if "state_dir" in doc else None
    instance = instance_value(doc.get("instance"))
    return Config(providers, hosts, state, source, instance)


def config_from_flags(
    host: str,
    *,
    certs: list[str],
    key: str | None,
    provider: str,
    provider_settings: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> Config:
    """A one-off configuration for ``sync HOST --cert ... --provider zonefile --zone-file ...``."""
    doc: dict[str, Any] = {
        "providers": {provider: dict(provider_settings, type=provider)},
        "hosts": {host: {"provider": provider, "certs": certs, **({"key": key} if key else {}), **extra}},
    }
    return config_from_dict(doc, Path.cwd(), "flags")
