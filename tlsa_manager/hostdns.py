"""A host's records and servers: its provider, its authoritative servers, the waits.

- observations: every authoritative server (configured ``nameservers`` or the
  provider's), read directly; a zone file with no server to ask is its own only view;
- :class:`Shared`: what the hosts of one run share (views, NS lookups, SOA minimums),
  so that a fleet costs per zone, not per host.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import dns.name

from tlsa_manager import wire
from tlsa_manager.config import HostSpec
from tlsa_manager.dnsview import DnsView, negative_ttl
from tlsa_manager.earlyviews import EarlyViews
from tlsa_manager.endpoints import (
    Endpoint,
    ask_many,
    host_of,
    parent_domain,
    parent_labels,
    parse_endpoint,
    zone_nameservers,
    zone_of_reply,
)
from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.observations import ServerView
from tlsa_manager.provider import ChangeSet, Provider, RRset
from tlsa_manager.records import Tlsa, owner_name

log = logging.getLogger("tlsa_manager.hostports")


class Discoverable(Protocol):
    """A host whose servers :meth:`Shared.discover` finds: its provider and owner names."""

    @property
    def provider(self) -> Provider: ...

    @property
    def owners(self) -> tuple[dns.name.Name, ...]: ...


class Shared:
    """What the hosts of one run share, so that a fleet costs per zone, not per host:
    one :class:`DnsView` (and so one DNSKEY query per zone) per server list, one NS
    lookup per provider and zone, one SOA query per zone and server."""

    def __init__(self) -> None:
        self.views: dict[tuple[Endpoint, ...], DnsView] = {}
        self.servers: dict[tuple[int, dns.name.Name], list[Endpoint]] = {}
        self.soa: dict[tuple[Endpoint, dns.name.Name], int | None] = {}
        self.public: dict[dns.name.Name, list[Endpoint]] = {}
        #: by owner: its parent domain as text (the change-set key)
        self.domains: dict[dns.name.Name, str] = {}
        #: the negative TTL by server list (its view) and zone labels: a zone's hosts share it
        self.negative_ttls: dict[tuple[int, tuple[bytes, ...]], int] = {}

    def view(self, endpoints: Sequence[Endpoint]) -> DnsView:
        key = tuple(endpoints)
        if key not in self.views:
            self.views[key] = DnsView(endpoints)
        return self.views[key]

    def nameservers(self, provider: Provider, zone: dns.name.Name) -> list[Endpoint]:
        key = (id(provider), zone)
        if key not in self.servers:
            self.servers[key] = [Endpoint(s.name, s.address, s.port) for s in provider.nameservers(zone)]
        return self.servers[key]

    def discover(self, hosts: Sequence[Discoverable]) -> None:
        """The authoritative servers of many hosts at once, for providers that use the
        default discovery (no ``nameservers`` configured): one pipelined SOA query per
        host name to find its zone, then the NS and their addresses once per zone,
        instead of all of that for every host.  What fails here is left to the
        per-host path, which says what is wrong."""
        by_provider: dict[int, tuple[Provider, list[dns.name.Name]]] = {}
        for ports in hosts:
            provider = ports.provider
            if type(provider).nameservers is not Provider.nameservers or provider.config.get("nameservers"):
                continue
            by_provider.setdefault(id(provider), (provider, []))[1].append(host_of(ports.owners[0]))
        for provider, names in by_provider.values():
            server = provider.discovery_server()
            todo = [n for n in dict.fromkeys(names) if (id(provider), n) not in self.servers]
            if server is None or not todo:
                continue
            timeout = float(provider.config.get("timeout", 10))
            apexes: dict[dns.name.Name, list[dns.name.Name]] = {}
            for name, reply in zip(
                todo, ask_many(server, [(n, wire.TYPE_SOA) for n in todo], timeout, False), strict=True
            ):
                apex = zone_of_reply(name, reply)
                if apex is not None:
                    apexes.setdefault(apex, []).append(name)
            for apex, members in apexes.items():
                try:
                    found = zone_nameservers(server, apex, timeout)
                except TlsaManagerError:
                    continue
                for name in members:
                    self.servers[(id(provider), name)] = found

    def negative_ttl(self, endpoint: Endpoint, zone: dns.name.Name) -> int | None:
        key = (endpoint, zone)
        if key not in self.soa:
            self.soa[key] = negative_ttl(endpoint, zone)
        return self.soa[key]


def wait_until_served(
    view: DnsView,
    wanted: dict[dns.name.Name, frozenset[Tlsa]],
    timeout: float,
    poll_interval: float = 2.0,
    early: EarlyViews | None = None,
) -> dict[dns.name.Name, tuple[ServerView, ...]]:
    """Poll every server until it serves ``wanted`` (bounded), asking again only for the
    owners not served yet, backing off to ``poll_interval``.  Returns the last views of
    the owners every server serves.

    The change's last owner went in its last UPDATE, so a server that serves it has the
    whole change: each server is polled for that owner alone (a fleet's full poll is
    thousands of queries) and observed in full as soon as it serves it.  The primary
    serves the change at once, so its answers (and their signatures, which the
    secondaries' identical answers then reuse) are read while the secondaries transfer;
    ``early`` holds what a server answered right after the write's last step
    (earlyviews.py): the owners it shows served are not asked again."""
    started = time.monotonic()
    deadline = started + timeout
    owners = list(wanted)
    served: dict[dns.name.Name, tuple[ServerView, ...]] = {}
    if len(owners) > 1:
        per_server = _observe_each_when_served(view, owners, wanted, deadline, early or {})
        if per_server is not None:
            for index, owner in enumerate(owners):
                views = tuple(found[index] for found in per_server)
                if all(v.records == wanted[owner] for v in views):
                    served[owner] = views
            log.info(
                "%d of %d owners served by every server after %.2f s",
                len(served),
                len(owners),
                time.monotonic() - started,
            )
    left = [o for o in owners if o not in served]
    pause = 0.05
    asked = len(owners) > 1  # the pass above asked every server just now
    while left:
        if asked:
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, poll_interval)
        asked = True
        for owner, owner_views in view.observe(left).items():
            if all(v.records == wanted[owner] for v in owner_views):
                served[owner] = owner_views
        left = [o for o in left if o not in served]
    return served


def _observe_each_when_served(
    view: DnsView,
    owners: list[dns.name.Name],
    wanted: dict[dns.name.Name, frozenset[Tlsa]],
    deadline: float,
    early: EarlyViews,
) -> list[list[ServerView]] | None:
    """Every server observed in full once it serves the last owner (every 50 ms until
    then), in the order of ``view.endpoints``; None if one does not before ``deadline``.
    An early view that shows an owner served stands for that server's answer.

    Each server is waited for and read on its own thread: the primary's full read (the
    owners of the write's earlier steps) then overlaps the secondaries' transfer and
    their reads, instead of delaying them."""
    last = owners[-1]

    def serves(endpoint: Endpoint, owner: dns.name.Name) -> bool:
        seen = early.get(endpoint, {}).get(owner)
        return seen is not None and seen.records == wanted[owner]

    def read_all(endpoint: Endpoint) -> list[ServerView]:
        again = [o for o in owners if not serves(endpoint, o)]
        fresh = dict(zip(again, view.observe_server(endpoint, again), strict=True)) if again else {}
        known = early.get(endpoint, {})
        return [fresh[o] if o in fresh else known[o] for o in owners]

    failed = threading.Event()  # one server's thread failed: the others stop polling

    def when_served(endpoint: Endpoint) -> tuple[list[ServerView] | None, int]:
        polls = 0
        try:
            while time.monotonic() + 0.05 < deadline and not failed.is_set():
                polls += 1
                if serves(endpoint, last) or view.observe_server(endpoint, [last])[0].records == wanted[last]:
                    return read_all(endpoint), polls
                failed.wait(0.05)
        except BaseException:
            failed.set()
            raise
        return None, polls

    if len(view.endpoints) > 1:
        with ThreadPoolExecutor(len(view.endpoints), thread_name_prefix="wait") as pool:
            results = list(pool.map(when_served, view.endpoints))
    else:
        results = [when_served(e) for e in view.endpoints]
    found = [views for views, _ in results if views is not None]
    log.info(
        "%d of %d servers serve the change's last owner after %d polls (%d read early)",
        len(found),
        len(view.endpoints),
        max((polls for _, polls in results), default=0),
        sum(1 for e in view.endpoints if early.get(e)),
    )
    if len(found) < len(view.endpoints):
        return None
    return found


class HostDns:
    """The DNS side of a host's ports: the provider's copy and every server's answer."""

    def __init__(
        self,
        spec: HostSpec,
        provider: Provider,
        shared: Shared,
        notes: list[str],
        propagation_timeout: float = 300.0,
        poll_interval: float = 2.0,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.shared = shared
        self.notes = notes
        self.propagation_timeout = propagation_timeout
        self.poll_interval = poll_interval
        self.owners = tuple(owner_name(spec.name, port) for port in spec.ports)
        self._endpoints: list[Endpoint] | None = None

    def endpoints(self) -> list[Endpoint]:
        if self._endpoints is None:
            if self.spec.nameservers:
                self._endpoints = [parse_endpoint(n) for n in self.spec.nameservers]
            else:
                self._endpoints = self.shared.nameservers(self.provider, host_of(self.owners[0]))
            if not self._endpoints and not self.spec.nameservers:
                self._endpoints = self.public_nameservers()
        return self._endpoints

    def public_nameservers(self) -> list[Endpoint]:
        """Every address of the zone's NS names, looked up in the DNS: for a provider that
        cannot say (Cloudflare, a zone file), so the gate still watches every server."""
        zone = self.zone()
        if zone is None:
            return []
        if zone not in self.shared.public:  # once per zone and run, for a whole fleet
            from tlsa_manager.resolve import ValidatingResolver

            try:
                self.shared.public[zone] = ValidatingResolver(timeout=3.0).authoritative_servers(zone)
            except TlsaManagerError:
                self.shared.public[zone] = []
        return self.shared.public[zone]

    def zone(self) -> dns.name.Name | None:
        """The apex of the zone holding the host's owner names (never the host name itself)."""
        owner = self.owners[0]
        zone_for = getattr(self.provider, "zone_for", None)
        if zone_for is not None:
            try:
                found = zone_for(owner)
            except TlsaManagerError:
                found = None
            if isinstance(found, tuple):  # Cloudflare: (zone id, zone name)
                found = found[-1]
            if isinstance(found, str):
                found = dns.name.from_text(found)
            if isinstance(found, dns.name.Name):
                return found
        from tlsa_manager.resolve import ValidatingResolver

        try:
            return ValidatingResolver(timeout=3.0).zone_of(owner)
        except TlsaManagerError:
            return None

    def view(self) -> DnsView | None:
        endpoints = self.endpoints()
        return self.shared.view(endpoints) if endpoints else None

    def zone_of(self, owner: dns.name.Name) -> tuple[str, str]:
        """Hosts of one provider under one parent domain share a change set."""
        text = self.shared.domains.get(owner)
        if text is None:  # Name.to_text costs ~20 us: once per owner, not per pass
            text = self.shared.domains[owner] = parent_domain(owner).to_text()
        return self.spec.provider, text

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        return self.provider.read(owners)

    def observe(
        self, owners: Sequence[dns.name.Name], published: dict[dns.name.Name, RRset] | None = None
    ) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        """Every server's answer; with no server to ask, the provider's copy (``published``
        when the caller just read it)."""
        view = self.view()
        if view is not None:
            return view.observe(owners)
        self.note_no_servers()
        if published is None or any(o not in published for o in owners):
            published = self.provider.read(owners)
        return {
            o: (
                ServerView(
                    f"{self.provider.name} (no servers configured)",
                    published[o].records,
                    published[o].ttl,
                    provider_copy=True,
                ),
            )
            for o in owners
        }

    def note_no_servers(self) -> None:
        # One text for every host of the provider: a fleet gets the note once, not per host.
        note = (
            f"provider {self.spec.provider}: no authoritative server can be asked; new keys and issuers "
            "stay staged unless propagation_delay is set (set nameservers = [...])"
        )
        if note not in self.notes:
            self.notes.append(note)

    def apply(self, changeset: ChangeSet) -> None:
        self.provider.apply(changeset)

    def wait_for_propagation(self, changeset: ChangeSet) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        """Poll every server until it serves the new RRsets (bounded); gates decide, not this."""
        view = self.view()
        if view is None or self.propagation_timeout <= 0:
            return {}  # the hook: it must return at once, the gates (and the timer) wait
        wanted = {c.owner: c.result for c in changeset.changes}
        served = wait_until_served(view, wanted, self.propagation_timeout, self.poll_interval)
        if len(served) < len(wanted):
            log.warning(
                "warning: %s: not every server serves the change after %.0f s "
                "(its deploys wait; the next run observes it again)",
                self.spec.name,
                self.propagation_timeout,
            )
        return served

    def negative_ttl(self) -> int:
        if self.spec.negative_ttl is not None:
            return self.spec.negative_ttl
        view = self.view()
        if view is None:
            return 0
        key = (id(view), parent_labels(self.owners[0]))  # plain labels: no name made per host
        if key not in self.shared.negative_ttls:
            zone = parent_domain(self.owners[0])
            values = [self.shared.negative_ttl(e, zone) for e in view.endpoints]
            self.shared.negative_ttls[key] = max((v for v in values if v is not None), default=3600)
        return self.shared.negative_ttls[key]
