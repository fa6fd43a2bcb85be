"""What the engine sees of the world and what it reports: its ports and per-host records.

:class:`HostPorts` is one host's chains, deploy and clock; :class:`ZonePorts` reads,
observes and writes the records of every host of a run at once.  ``hostports.py``
implements them for real hosts, ``simulation.py`` for a simulated world.  The
engine's phases (``engine.py``, ``journal.py``) share :class:`Member`: a host's
settings, ports and report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dns.name

from tlsa_manager.clock import ClockSample
from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.facts import ChainFacts
from tlsa_manager.observations import ServerView
from tlsa_manager.plans import DEFAULT_SLACK, DEFAULT_TTL_CEILING, Plan
from tlsa_manager.policy import HostPolicy, IssuerFacts
from tlsa_manager.provider import ChangeSet, RRset
from tlsa_manager.state import LedgerData

log = logging.getLogger("tlsa_manager.engine")

Views = Mapping[dns.name.Name, tuple[ServerView, ...]]


@dataclass(frozen=True)
class HostChains:
    """The chains of one host as read from disk: the live ones, the staged ones waiting
    for their records, and the next keys published in advance."""

    live: tuple[ChainFacts, ...]
    staged: tuple[ChainFacts, ...] = ()
    next_keys: tuple[ChainFacts, ...] = ()


class ZonePorts(Protocol):
    """Records of many owners at once, possibly in many zones (one run)."""

    def zone_of(self, owner: dns.name.Name) -> Hashable:
        """The unit of one change set and of failure: owners of one zone at one provider."""

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]: ...

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]: ...

    def apply(self, changeset: ChangeSet) -> None: ...

    def wait_for_propagation(self, changeset: ChangeSet) -> Views | None:
        """Wait until every server serves the change (bounded).  Returns the last
        observation of the owners seen served by every server (the engine observes the
        others again), or None."""


class HostPorts(ZonePorts, Protocol):
    """The outside world of one host, as the engine sees it."""

    def chains(self) -> HostChains: ...

    def deploy(self, chain: ChainFacts) -> None:
        """Put a staged chain live and reload; raise if the server does not present it."""

    def confirm(self, chain: ChainFacts) -> None:
        """Reload again; raise unless the server presents ``chain`` or a current live chain."""

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """What the MTA presents now on the host's own port, per key type; None if it cannot be asked."""

    @property
    def confirms_deploys(self) -> bool:
        """Can a deploy be confirmed in the run that makes it (a reload command, a probe)?"""

    def read_clocks(self) -> ClockSample:
        """The wall clock with the boot-time clock, to detect steps (tlsa_manager.clock)."""

    def now(self) -> float: ...


@dataclass(frozen=True)
class HostSettings:
    """What the engine needs of a host's configuration."""

    host: str
    owners: tuple[dns.name.Name, ...]
    policy: HostPolicy = field(default_factory=HostPolicy)
    issuers: tuple[IssuerFacts, ...] = ()
    roots: tuple[IssuerFacts, ...] = ()
    negative_ttl: int = 0
    default_ttl: int = 3600
    slack: float = DEFAULT_SLACK
    ttl_ceiling: int = DEFAULT_TTL_CEILING
    propagation_delay: float | None = None


@dataclass
class SyncReport:
    """What a sync did for one host (plans, applied change sets, deploys, notes) and why
    it stopped, if it did: the CLI's summary and exit code come from it."""

    host: str
    plans: list[Plan] = field(default_factory=list)
    applied: list[ChangeSet] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: why this host stopped early (its own problem or its zone's); None when it finished
    error: TlsaManagerError | None = None
    #: what this run tried and could not finish (an unconfirmed deploy): exit code 1
    failures: list[str] = field(default_factory=list)

    @property
    def first_plan(self) -> Plan | None:
        return self.plans[0] if self.plans else None

    @property
    def last_plan(self) -> Plan | None:
        return self.plans[-1] if self.plans else None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class Member:
    """One host of a run: its settings, its ports, its report."""

    settings: HostSettings
    ports: HostPorts
    report: SyncReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = SyncReport(self.settings.host)

    def fail(self, exc: TlsaManagerError) -> None:
        """This host stops here (the first error is the one reported); the others go on."""
        if self.report.error is None:
            self.report.error = exc
            log.debug("%s stops: %s", self.settings.host, exc.message)


class StagedChanged(TlsaManagerError):
    """The staged file no longer holds the chain whose gate passed: nothing was deployed."""


Checkpoint = Callable[[str], None]
#: the steps of a run a :data:`Checkpoint` is called at, in the order a deploying run
#: passes them (``renamed`` comes from the deploy's rename): where a simulated crash,
#: lost ledger, staging race or interleaving can strike
CHECKPOINTS = (
    "observed", "intent-saved", "apply-returned", "applied", "propagated",
    "gated", "before-deploy", "deploy-intent", "renamed", "deployed",
)  # fmt: skip
Save = Callable[[LedgerData], None]
