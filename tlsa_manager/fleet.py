"""The engine's zone ports for every host of a run: owners routed to their provider
and to their authoritative servers, so that a fleet costs per zone, not per host.

The engine hands over all owners of a zone at once; here they go to the provider in
one ``read`` and one ``apply`` per provider, to each server list in one pipelined
observation (:meth:`DnsView.observe`), and the wait for propagation polls only the
owners not served yet.  A zone without servers to ask is observed from the
provider's copy just read, not read a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import dns.name

from tlsa_manager.earlyviews import EarlyViews, early_views
from tlsa_manager.errors import OwnersRefused, ProviderConflict, TlsaManagerError
from tlsa_manager.hostports import LivePorts, wait_until_served
from tlsa_manager.observations import ServerView
from tlsa_manager.provider import ChangeSet, RRset, read_owners
from tlsa_manager.records import Tlsa

log = logging.getLogger(__name__)


class FleetZones:
    """ZonePorts over the LivePorts of a run's hosts."""

    def __init__(self, hosts: Sequence[LivePorts]) -> None:
        self.by_owner = {owner: ports for ports in hosts for owner in ports.owners}
        self._read: dict[dns.name.Name, RRset] = {}
        #: written owners every server was seen serving right after the write, whose
        #: provider holds what it wrote: the next read takes these instead of asking
        self._known: dict[dns.name.Name, RRset] = {}
        #: what the primary served right after the last step of the last write (earlyviews.py)
        self._early: EarlyViews = {}

    def _split(
        self, owners: Sequence[dns.name.Name], key: str
    ) -> list[tuple[LivePorts, list[dns.name.Name]]]:
        """Owners grouped by provider (``key="provider"``) or by server list (``"view"``),
        each group with the ports of its first host."""
        groups: dict[object, tuple[LivePorts, list[dns.name.Name]]] = {}
        for owner in owners:
            ports = self.by_owner[owner]
            if key == "provider":
                ident: object = id(ports.provider)
            else:
                view = ports.view()
                ident = id(view) if view is not None else ("provider", id(ports.provider))
            groups.setdefault(ident, (ports, []))[1].append(owner)
        return list(groups.values())

    def zone_of(self, owner: dns.name.Name) -> Hashable:
        return self.by_owner[owner].zone_of(owner)

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        known, self._known = self._known, {}  # only the read right after the wait
        out = {o: known[o] for o in owners if o in known}
        refused: dict[dns.name.Name, TlsaManagerError] = {}
        for ports, group in self._split([o for o in owners if o not in known], "provider"):
            read_owners(ports.provider.read, group, out, refused)
        self._read.update(out)
        if refused:
            raise OwnersRefused(refused, out)
        return out

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        out: dict[dns.name.Name, tuple[ServerView, ...]] = {}
        for ports, group in self._split(owners, "view"):
            out.update(ports.observe(group, self._read))
            if ports.view() is None:
                for owner in group:
                    self.by_owner[owner].note_no_servers()
        return out

    def apply(self, changeset: ChangeSet) -> None:
        self._read.clear()
        self._known.clear()
        self._early = {}
        changes = {c.owner: c for c in changeset.changes}
        written: list[dns.name.Name] = []
        for ports, group in self._split(list(changes), "provider"):
            with early_views(ports.provider, ports.view(), written) as early:
                try:
                    ports.apply(ChangeSet(tuple(changes[o] for o in group)))
                except ProviderConflict as exc:
                    exc.written = frozenset(written)  # the steps before the conflict: written
                    raise
            written.extend(group)
            for endpoint, views in early.items():
                self._early.setdefault(endpoint, {}).update(views)

    def wait_for_propagation(self, changeset: ChangeSet) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        wanted = {c.owner: c.result for c in changeset.changes}
        served: dict[dns.name.Name, tuple[ServerView, ...]] = {}
        for ports, group in self._split(list(wanted), "view"):
            view = ports.view()
            if view is None or ports.dns.propagation_timeout <= 0:
                continue  # no server to ask, or the hook: it returns at once, the gates wait
            got = wait_until_served(
                view,
                {o: wanted[o] for o in group},
                ports.dns.propagation_timeout,
                ports.dns.poll_interval,
                self._early,
            )
            if len(got) < len(group):
                late = [o.to_text() for o in group if o not in got]
                log.warning(
                    "warning: %d of %d owners not served by every server after %.0f s: %s "
                    "(their deploys wait; the next run observes them again)",
                    len(late),
                    len(group),
                    ports.dns.propagation_timeout,
                    ", ".join(late[:3]) + (f" and {len(late) - 3} more" if len(late) > 3 else ""),
                )
            served.update(got)
            self._known.update(
                _as_written(
                    {o: v for o, v in got.items() if self.by_owner[o].provider.holds_what_it_wrote}, wanted
                )
            )
        return served


def _as_written(
    served: dict[dns.name.Name, tuple[ServerView, ...]], wanted: dict[dns.name.Name, frozenset[Tlsa]]
) -> dict[dns.name.Name, RRset]:
    """The provider's copy of owners just written and served by every server: the
    change's result at the TTL the servers give it (a compare-and-swap write that
    applied leaves exactly the result)."""
    out = {}
    for owner, views in served.items():
        if views and all(v.records == wanted[owner] for v in views):
            ttls = [v.ttl for v in views if v.ttl is not None]
            out[owner] = RRset(owner, wanted[owner], min(ttls) if ttls and wanted[owner] else None)
    return out
