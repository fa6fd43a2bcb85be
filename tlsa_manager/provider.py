"""The provider interface: how published TLSA RRsets are read and changed.

Modelled on octoDNS (plan is a value, apply is a separate step) and keyring
(backends are discovered through entry points and pass one shared test suite).
A provider never rewrites a whole RRset: it applies a :class:`ChangeSet` of single
record additions and deletions, each owner guarded by the RRset it expects to find
(compare-and-swap), all-or-nothing where the backend allows it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import dns.name

from tlsa_manager.endpoints import Endpoint, configured, zone_apex, zone_nameservers
from tlsa_manager.errors import OwnersRefused, ProviderConflict, ProviderError, TlsaManagerError
from tlsa_manager.records import Tlsa
from tlsa_manager.secrets import ProviderSecret, read_secret

_T = TypeVar("_T")
_K = TypeVar("_K")


@dataclass(frozen=True)
class RRset:
    """The TLSA records at one owner name, with their TTL (None when absent)."""

    owner: dns.name.Name
    records: frozenset[Tlsa] = frozenset()
    ttl: int | None = None
    #: records the provider itself marks as ours (e.g. a Cloudflare comment)
    managed: frozenset[Tlsa] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.records

    def texts(self) -> list[str]:
        return sorted(r.to_text() for r in self.records)


def read_owners(
    read: Callable[[Sequence[dns.name.Name]], Mapping[dns.name.Name, RRset]],
    owners: Sequence[dns.name.Name],
    published: dict[dns.name.Name, RRset],
    refused: dict[dns.name.Name, TlsaManagerError],
) -> list[dns.name.Name]:
    """``read(owners)`` into ``published``; the owners the read refuses alone
    (:class:`OwnersRefused`: a CNAME at the owner) go into ``refused`` with their error.
    Returns the owners read."""
    try:
        published.update(read(owners))
        return list(owners)
    except OwnersRefused as exc:
        published.update(exc.found)
        refused.update(exc.refused)
        return [o for o in owners if o not in exc.refused]


@dataclass(frozen=True)
class OwnerChange:
    """Additions and deletions at one owner, guarded by the RRset expected there now."""

    owner: dns.name.Name
    expected: frozenset[Tlsa]
    add: frozenset[Tlsa] = frozenset()
    delete: frozenset[Tlsa] = frozenset()
    ttl: int = 3600
    #: the RRset's TTL now; when it differs from ``ttl`` the change sets the new TTL
    expected_ttl: int | None = None

    @property
    def result(self) -> frozenset[Tlsa]:
        return (self.expected - self.delete) | self.add

    @property
    def ttl_change(self) -> bool:
        return bool(self.expected) and self.expected_ttl is not None and self.expected_ttl != self.ttl

    @property
    def is_noop(self) -> bool:
        return not (self.add - self.expected) and not (self.delete & self.expected) and not self.ttl_change


@dataclass(frozen=True)
class ChangeSet:
    """Everything one sync changes in one zone; applied at once or not at all."""

    changes: tuple[OwnerChange, ...] = ()

    @property
    def is_noop(self) -> bool:
        return all(c.is_noop for c in self.changes)

    def check_safe(self) -> None:
        """Refuse a change set that would empty a managed RRset (dane-rules E6, H25)."""
        for change in self.changes:
            if change.expected and not change.result:
                raise ProviderError(
                    f"refusing to leave {change.owner} without TLSA records",
                    "remove the host from the configuration to turn DANE off on purpose",
                )


@dataclass(frozen=True)
class Capabilities:
    """What a backend can promise; the engine adapts its waiting to it."""

    atomic: bool
    compare_and_swap: bool
    eventual_propagation: bool
    min_ttl: int = 1
    can_list_nameservers: bool = True


#: one authoritative endpoint to poll (a name for reports, an address and port to query)
NameServer = Endpoint


class Provider(abc.ABC):
    """Base class of every provider; subclasses are found by entry point name."""

    #: the entry-point name, e.g. "rfc2136"
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: config keys this provider accepts, with a one-line description each
    settings: ClassVar[Mapping[str, str]] = {}
    #: the secrets this provider takes, by setting name (e.g. ``api_token``), with what
    #: each is.  The inline key (if ``settings`` accepts it) is allowed only in a 0600
    #: config file; ``NAME_file`` and ``NAME_env`` name where the secret is read from.
    #: The core knows no provider's keys: validation and redaction use this.
    secret_settings: ClassVar[Mapping[str, str]] = {}
    #: after a successful ``apply`` the provider holds exactly each change's result (an
    #: atomic compare-and-swap write that marks nothing): once every server serves it,
    #: the run takes the RRset from the write and the servers' answers instead of
    #: reading every written owner again (fleet.py)
    holds_what_it_wrote: ClassVar[bool] = False
    #: who publishes through this provider (config ``instance``, default the machine's
    #: host name): a provider that marks records as managed marks them per instance, so
    #: two machines publishing at one owner name never remove each other's records
    instance: str = ""
    #: set around :meth:`apply` by the run (earlyviews.py): a provider that writes in
    #: steps may call it with the owners each step committed, so that the primary is
    #: read while the next step is sent; providers that write at once ignore it
    committed: Callable[[Sequence[dns.name.Name]], None] | None = None

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - set(self.settings) - {"type", "name"}
        if unknown:
            from tlsa_manager.errors import ConfigError

            raise ConfigError(
                f"provider {self.name}: unknown setting(s) {', '.join(sorted(unknown))}",
                f"known settings: {', '.join(sorted(self.settings))}",
            )
        self.config = dict(config)
        #: backend writes so far (UPDATE messages, API calls that change, file rewrites):
        #: one name for every provider, so a no-op can be proven to write nothing
        self.writes = 0
        #: every request to the backend, reads and writes (DNS messages, HTTP calls, file
        #: reads and rewrites): what docs/performance.md counts
        self.requests = 0
        #: things the operator should know (printed with the run's report)
        self.notes: list[str] = []

    def check_changes(self, changeset: ChangeSet) -> None:
        """Refuse, before anything is written, a change set that would empty a managed
        RRset or set a TTL the backend does not take (one line naming the fix)."""
        changeset.check_safe()
        minimum = self.capabilities.min_ttl
        for change in changeset.changes:
            if not change.is_noop and change.ttl < minimum:
                raise ProviderError(
                    f"TTL {change.ttl} at {change.owner} is below the {self.name} minimum of {minimum} s",
                    f"set ttl = {minimum} or more for this host; nothing was changed",
                )

    def pending(self, changeset: ChangeSet) -> list[OwnerChange]:
        """The changes that write something, after :meth:`check_changes` allowed them all."""
        self.check_changes(changeset)
        return [c for c in changeset.changes if not c.is_noop]

    @abc.abstractmethod
    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        """The TLSA RRsets at these owners as the provider holds them."""

    @abc.abstractmethod
    def apply(self, changeset: ChangeSet) -> None:
        """Apply all changes, or none; raise ProviderConflict if an expectation fails."""

    def nameservers(self, zone: dns.name.Name) -> list[NameServer]:
        """Authoritative servers to poll for propagation: the configured ``nameservers``,
        else the NS of the zone holding ``zone`` (the apex or any name in it) as
        :meth:`discovery_server` knows them, else none (then the provider's own copy is
        the only view and the run says so)."""
        listed = configured(self.config.get("nameservers"))
        if listed:
            return listed
        server = self.discovery_server()
        if server is None:
            return []
        timeout = float(self.config.get("timeout", 10))
        return zone_nameservers(server, zone_apex(server, zone, timeout), timeout)

    def discovery_server(self) -> Endpoint | None:
        """A DNS server that answers for the zone (its NS and their addresses), if known."""
        return None

    def secret(self, secret: ProviderSecret) -> str:
        """The provider's secret from the file ``KEY_file``, inline ``KEY`` (0600 config
        only) or the variable named by ``KEY_env`` (default ``secret.default_env``).
        Errors name the setting, never the value."""
        value = read_secret(
            self.config,
            secret.label,
            file_key=f"{secret.key}_file",
            env_key=f"{secret.key}_env",
            inline_key=secret.key,
            default_env=secret.default_env,
        )
        assert value is not None  # a default variable is always named
        return value

    @classmethod
    def secret_keys(cls) -> frozenset[str]:
        """Every setting that holds or names a secret: the inline key, ``_file``, ``_env``."""
        return frozenset(
            f"{name}{suffix}" for name in cls.secret_settings for suffix in ("", "_file", "_env")
        )

    @classmethod
    def redacted(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The settings with every secret replaced, for messages and debug output; also the
        ``_file``/``_env`` values, which hold the secret itself when mistyped."""
        keys = cls.secret_keys()
        return {k: ("<redacted>" if k in keys else v) for k, v in config.items()}

    def close(self) -> None:
        """Release sessions and connections."""

    def __repr__(self) -> str:  # never show settings: they may hold secrets
        return f"<{type(self).__name__} provider>"


def grouped(items: Iterable[_T], key: Callable[[_T], _K]) -> dict[_K, list[_T]]:
    """``items`` by ``key`` (e.g. owners or changes by zone), in their first-seen order."""
    out: dict[_K, list[_T]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def conflict(owner: dns.name.Name, expected: frozenset[Tlsa], found: frozenset[Tlsa]) -> ProviderConflict:
    """The error for a failed compare-and-swap, naming what differed."""
    missing = sorted(r.to_text() for r in expected - found)
    extra = sorted(r.to_text() for r in found - expected)
    detail = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra)}" if extra else "",
        )
        if part
    )
    return ProviderConflict(
        f"{owner} changed since it was read ({detail or 'content differs'})",
        "someone else edited it; run again to re-read and re-plan",
    )


def close_once(handle: Any) -> None:
    """Close a session or SDK client made on first use, if one was made (the caller then
    forgets it, so a second close does nothing)."""
    if handle is not None:
        handle.close()
