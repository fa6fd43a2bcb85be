"""The ledger's data model: what was published, what was seen, which deploys are open.

Pure values and their bookkeeping, no I/O: ``ledger.py`` reads and writes them (the
file, the lock, the schema, the JSON form), the engine changes them between phases.
Owner histories and chains are immutable and shared between copies; the containers
are what a run changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tlsa_manager.facts import ChainFacts
from tlsa_manager.observations import History
from tlsa_manager.records import Tlsa


@dataclass(frozen=True)
class DeployIntent:
    """One entry of a host's deploy journal: a chain put live whose reload is not yet
    confirmed, the chains it replaced (the MTA may still present one of them, so their
    records stay) and when.  Public bytes only: never a key."""

    deployed: ChainFacts
    previous: tuple[ChainFacts, ...]
    since: float


#: label prefix of a deploy-journal entry that is no deploy of ours: before the first
#: publish the MTA presented another chain than the configured file (H27)
PRESENTED = "presented by the MTA"

#: label prefix of a deploy-journal entry kept open one run on purpose: nothing reloaded
#: the MTA and nothing can probe it, so the replaced chain's records stay until the next
#: sync (tlsa_manager.journal.settle_deploy); no failure, unlike an unconfirmed deploy
HELD = "not reloaded:"


def deployed_label(label: str) -> str:
    """The deployed chain's label of a journal entry (a held entry's without its prefix)."""
    return label.removeprefix(HELD).strip()


@dataclass
class OwnerRecord:
    """Per owner name: records we published (managed) and the observation history."""

    managed: frozenset[Tlsa] = frozenset()
    history: History = field(default_factory=History)


@dataclass
class HostRecord:
    """One host's part of the ledger: its owners, its open deploys and what the last run
    read of the clocks."""

    owners: dict[str, OwnerRecord] = field(default_factory=dict)
    #: deploys not yet confirmed (the MTA may still present the chain they replaced), by
    #: deployed chain label.  Owned by the engine.
    deploys: dict[str, DeployIntent] = field(default_factory=dict)
    #: the clocks as the last run read them (tlsa_manager.clock), to detect steps
    clock: dict[str, Any] = field(default_factory=dict)
    #: the history began again (lost ledger, clock step) and no probe showed what the
    #: MTA presents: only records this ledger added may be removed
    unverified: bool = False
    #: the negative TTL the last sync's gates used (from the SOA), so that `status`,
    #: which never asks the network, computes the same gate times
    negative_ttl: int | None = None

    def owner(self, name: str) -> OwnerRecord:
        known = self.owners.get(name)  # not setdefault: it builds a record on every call
        return known if known is not None else self.owners.setdefault(name, OwnerRecord())

    def deploying(self, key_type: str) -> bool:
        """True while a deploy of this key type waits for its confirmation."""
        return any(e.deployed.key_type == key_type for e in self.deploys.values())


@dataclass
class LedgerData:
    """The whole ledger: one :class:`HostRecord` per host name."""

    hosts: dict[str, HostRecord] = field(default_factory=dict)

    def host(self, name: str) -> HostRecord:
        known = self.hosts.get(name)  # not setdefault: it builds a record on every call
        return known if known is not None else self.hosts.setdefault(name, HostRecord())

    def copy(self) -> LedgerData:
        """An independent copy (the values inside are immutable and shared)."""
        return LedgerData(
            {
                name: HostRecord(
                    {o: OwnerRecord(r.managed, r.history) for o, r in h.owners.items()},
                    dict(h.deploys),
                    dict(h.clock),
                    h.unverified,
                    h.negative_ttl,
                )
                for name, h in self.hosts.items()
            }
        )
