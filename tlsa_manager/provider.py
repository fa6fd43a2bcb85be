"""The provider interface: how published TLSA RRsets are read and changed.

Modelled on octoDNS (plan is a value, apply is a separate step) and keyring
(backends are discovered through entry points and pass one shared test suite).
A provider never rewrites a whole RRset: it applies a :class:`ChangeSet` of single
record additions and deletions, each owner guarded by the RRset it expects to find
(compare-and-swap), all-or-nothing where the backend allows it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import dns.name

from tlsa_manager.errors import ProviderConflict, ProviderError
from tlsa_manager.records import Tlsa


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


@dataclass(frozen=True)
class NameServer:
    """One authoritative endpoint to poll: a name for reports and an address to query."""

    name: str
    address: str
    port: int = 53


class Provider(abc.ABC):
    """Base class of every provider; subclasses are found by entry point name."""

    #: the entry-point name, e.g. "rfc2136"
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: config keys this provider accepts, with a one-line description each
    settings: ClassVar[Mapping[str, str]] = {}
    #: who publishes through this provider (config ``instance``, default the machine's
    #: host name): a provider that marks records as managed marks them per instance, so
    #: two machines publishing at one owner name never remove each other's records
    instance: str = ""

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - set(self.settings) - {"type", "name"}
        if unknown:
            from tlsa_manager.errors import ConfigError

            raise ConfigError(
                f"provider {self.name}: unknown setting(s) {', '.join(sorted(unknown))}",
                f"known settings: {', '.join(sorted(self.settings))}",
            )
        self.config = dict(config)

    @abc.abstractmethod
    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        """The TLSA RRsets at these owners as the provider holds them."""

    @abc.abstractmethod
    def apply(self, changeset: ChangeSet) -> None:
        """Apply all changes, or none; raise ProviderConflict if an expectation fails."""

    def nameservers(self, zone: dns.name.Name) -> list[NameServer]:
        """Authoritative servers to poll for propagation (config may override)."""
        return []

    def close(self) -> None:
        """Release sessions and connections."""

    def __repr__(self) -> str:  # never show settings: they may hold secrets
        return f"<{type(self).__name__} provider>"


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
