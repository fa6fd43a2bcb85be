"""The engine's ports for a real host: its files on one side, its DNS on the other.

:class:`LivePorts` joins a :class:`~tlsa_manager.hostfiles.HostFiles` (chain files,
deploy, probe) and a :class:`~tlsa_manager.hostdns.HostDns` (provider, authoritative
servers) with a clock, given rather than subclassed: the wall clock guarded against
steps for ``sync``, a fixed time for ``--at`` what-ifs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import dns.name

from tlsa_manager import clock
from tlsa_manager.catalog import Catalog
from tlsa_manager.clock import ClockSample
from tlsa_manager.config import HostSpec
from tlsa_manager.dnsview import DnsView
from tlsa_manager.endpoints import Endpoint
from tlsa_manager.errors import StateError
from tlsa_manager.facts import ChainFacts
from tlsa_manager.hostdns import HostDns, Shared, wait_until_served
from tlsa_manager.hostfiles import HostFiles, chain_facts, staged_path
from tlsa_manager.observations import ServerView
from tlsa_manager.policy import IssuerFacts, issuers_from_catalog
from tlsa_manager.ports import HostChains, HostSettings
from tlsa_manager.provider import ChangeSet, Provider, RRset
from tlsa_manager.records import owner_name

#: the two sides live in hostfiles / hostdns; these names stay importable from here
__all__ = [
    "Clock",
    "LivePorts",
    "Shared",
    "WallClock",
    "catalog_facts",
    "chain_facts",
    "fixed_clock",
    "host_settings",
    "staged_path",
    "wait_until_served",
]

#: "now" for the engine, in seconds since the epoch
Clock = Callable[[], float]


class WallClock:
    """The wall clock; a step during the run (against the boot-time clock) stops the run."""

    def __init__(self, slack: float) -> None:
        self.slack = slack
        self._start: ClockSample | None = None

    def __call__(self) -> float:
        sample = clock.sample()
        if self._start is None:
            self._start = sample
        elif why := clock.step(self._start, sample, self.slack):
            raise StateError(
                f"{why}, during this run; stopping", "check NTP; the next run restarts the history"
            )
        return sample.wall


def fixed_clock(at: float) -> Clock:
    """A clock that always says ``at`` (``--at``: what would happen then)."""
    return lambda: at


class LivePorts:
    """HostPorts for one configured host."""

    def __init__(
        self,
        spec: HostSpec,
        provider: Provider,
        catalog: Catalog,
        propagation_timeout: float = 300.0,
        poll_interval: float = 2.0,
        shared: Shared | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self.catalog = catalog
        self.provider = provider
        self.notes: list[str] = []
        self.files = HostFiles(spec, catalog, self.notes)
        self.dns = HostDns(spec, provider, shared or Shared(), self.notes, propagation_timeout, poll_interval)
        #: the host's owner names (the fleet routes by them); the wait's timing is ``dns``'s
        self.owners = self.dns.owners
        self.clock: Clock = clock if clock is not None else WallClock(spec.slack)

    # -- what callers and tests read ---------------------------------------------

    @property
    def next_dir(self) -> Path | None:
        return self.files.next_dir

    @next_dir.setter
    def next_dir(self, value: Path | None) -> None:
        self.files.next_dir = value

    @property
    def checks(self) -> dict[str, str]:
        return self.files.checks

    # -- chains and deploy ----------------------------------------------------------

    def chains(self) -> HostChains:
        return self.files.chains()

    def deploy(self, chain: ChainFacts) -> None:
        self.files.deploy(chain)

    def confirm(self, chain: ChainFacts) -> None:
        self.files.confirm(chain)

    def presented(self) -> tuple[ChainFacts, ...] | None:
        return self.files.presented()

    @property
    def confirms_deploys(self) -> bool:
        """A reload command or a probe can show, in the run of a deploy, that the MTA took
        the new chain; with neither, the replaced chain's records wait a run (journal.py)."""
        return bool(self.spec.reload or self.spec.probe)

    @property
    def probe_problem(self) -> str | None:
        """Why the configured probe could not be asked (None: it was, or there is none)."""
        return self.files.probe_problem

    # -- DNS ----------------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        return self.dns.endpoints()

    def zone(self) -> dns.name.Name | None:
        return self.dns.zone()

    def view(self) -> DnsView | None:
        return self.dns.view()

    def zone_of(self, owner: dns.name.Name) -> tuple[str, str]:
        return self.dns.zone_of(owner)

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        return self.dns.read(owners)

    def observe(
        self, owners: Sequence[dns.name.Name], published: dict[dns.name.Name, RRset] | None = None
    ) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        return self.dns.observe(owners, published)

    def note_no_servers(self) -> None:
        self.dns.note_no_servers()

    def apply(self, changeset: ChangeSet) -> None:
        self.dns.apply(changeset)

    def wait_for_propagation(self, changeset: ChangeSet) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        return self.dns.wait_for_propagation(changeset)

    def negative_ttl(self) -> int:
        return self.dns.negative_ttl()

    # -- clock --------------------------------------------------------------------------

    def read_clocks(self) -> ClockSample:
        return clock.sample()

    def now(self) -> float:
        return self.clock()


_CATALOG_FACTS: dict[int, tuple[Catalog, tuple[IssuerFacts, ...], tuple[IssuerFacts, ...]]] = {}


def catalog_facts(catalog: Catalog) -> tuple[tuple[IssuerFacts, ...], tuple[IssuerFacts, ...]]:
    """(issuers, roots) of a catalog, computed once: every host of a run shares them (and
    so their cached records), instead of hashing the catalog again per host."""
    known = _CATALOG_FACTS.get(id(catalog))
    if known is None or known[0] is not catalog:
        known = (catalog, issuers_from_catalog(catalog), issuers_from_catalog(catalog, roots=True))
        _CATALOG_FACTS.clear()
        _CATALOG_FACTS[id(catalog)] = known
    return known[1], known[2]


def host_settings(spec: HostSpec, catalog: Catalog, negative: int) -> HostSettings:
    issuers, roots = catalog_facts(catalog)
    return HostSettings(
        spec.name,
        tuple(owner_name(spec.name, p) for p in spec.ports),
        spec.policy,
        issuers,
        roots,
        negative,
        spec.ttl,
        spec.slack,
        spec.ttl_ceiling,
        spec.propagation_delay,
    )
