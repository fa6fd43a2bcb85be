"""The engine's ports for a real host: files, a provider, authoritative servers, the MTA.

- live chains: the files the MTA serves (``cert``/``certs`` in the host's config);
- staged chains: ``STAGED_DIR/<live file name>`` written by a hook (key + chain);
- next keys: ``next_keys`` files and the keys in ``next_dir`` (STATE_DIR/next-keys/HOST,
  see nextkey.py): bare keys, pre-published before any certificate;
- observations: every authoritative server (configured ``nameservers`` or the
  provider's), read directly; a zone file with no server to ask is its own only view;
- deploy: the staged file replaces the live one by rename, then the reload command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import dns.name

from tlsa_manager import clock, wire
from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import load_chain
from tlsa_manager.clock import ClockSample
from tlsa_manager.command import run_command
from tlsa_manager.config import HostSpec
from tlsa_manager.dnsview import DnsView, Endpoint, negative_ttl, parse_endpoint
from tlsa_manager.endpoints import ask_many, zone_nameservers, zone_of_reply
from tlsa_manager.engine import HostChains, HostSettings, StagedChanged
from tlsa_manager.errors import InputError, StateError, TlsaManagerError
from tlsa_manager.facts import ChainFacts, facts_from_chain
from tlsa_manager.fsutil import fsync_dir, move_into_place
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import chain_identity
from tlsa_manager.policy import IssuerFacts, issuers_from_catalog
from tlsa_manager.provider import ChangeSet, Provider, RRset
from tlsa_manager.records import Tlsa, owner_name, spki_der

log = logging.getLogger(__name__)


def chain_facts(path: Path, label: str, catalog: Catalog, key: Path | None = None) -> ChainFacts:
    """Load a chain file and describe it; a staged chain whose key does not match is a problem."""
    try:
        chain = load_chain(path, key)
    except InputError as exc:
        # A staged key+chain file whose parts disagree is a hazard to report (H24); a
        # separate key given for the live chain that does not match is an input error.
        if "does not match" in exc.message and key is None:
            loaded = load_chain(path)
            facts = facts_from_chain(loaded, label)
            return ChainFacts(facts.label, facts.leaf, facts.key_type, facts.cas, problem=exc.message)
        raise
    if chain.leaf is None and chain.key is None:
        raise InputError(
            f"{path}: holds only CA certificates, no server certificate or key",
            "point cert at the chain the MTA serves (leaf first), e.g. fullchain.pem",
        )
    issuer = catalog.issuer_of(chain)
    return facts_from_chain(chain, label, issuer.name if issuer else None)


def staged_path(spec: HostSpec, key_type: str) -> Path | None:
    return spec.staged_dir / f"{key_type}.pem" if spec.staged_dir else None


class Shared:
    """What the hosts of one run share, so that a fleet costs per zone, not per host:
    one :class:`DnsView` (and so one DNSKEY query per zone) per server list, one NS
    lookup per provider and zone, one SOA query per zone and server."""

    def __init__(self) -> None:
        self.views: dict[tuple[Endpoint, ...], DnsView] = {}
        self.servers: dict[tuple[int, dns.name.Name], list[Endpoint]] = {}
        self.soa: dict[tuple[Endpoint, dns.name.Name], int | None] = {}

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

    def discover(self, hosts: Sequence[LivePorts]) -> None:
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
            by_provider.setdefault(id(provider), (provider, []))[1].append(ports.owners[0].parent().parent())
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
) -> dict[dns.name.Name, tuple[ServerView, ...]]:
    """Poll every server until it serves ``wanted`` (bounded), asking again only for the
    owners not served yet, first after 50 ms, then backing off to ``poll_interval``.
    Returns the last views of the owners every server serves."""
    served: dict[dns.name.Name, tuple[ServerView, ...]] = {}
    left = list(wanted)
    deadline = time.monotonic() + timeout
    pause = 0.05
    # The change's last owner went in its last UPDATE: until every server serves it, ask
    # for that one alone (a fleet's full poll is thousands of queries), every 50 ms.
    last = left[-1:] if len(left) > 1 else []
    while last and time.monotonic() + 0.05 < deadline:
        if all(v.records == wanted[last[0]] for v in view.observe(last)[last[0]]):
            break
        time.sleep(0.05)
    while left:
        views = view.observe(left)
        for owner, owner_views in views.items():
            if all(v.records == wanted[owner] for v in owner_views):
                served[owner] = owner_views
        left = [o for o in left if o not in served]
        if not left or time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, poll_interval)
    return served


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
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.catalog = catalog
        self.propagation_timeout = propagation_timeout
        self.poll_interval = poll_interval
        self.owners = tuple(owner_name(spec.name, port) for port in spec.ports)
        self.shared = shared or Shared()
        self._endpoints: list[Endpoint] | None = None
        self._chain_cache: dict[tuple[object, ...], ChainFacts] = {}
        self._clock_start: ClockSample | None = None
        self.notes: list[str] = []
        #: the host's tool-managed next keys (nextkey.key_dir), when a state dir is known
        self.next_dir: Path | None = None
        #: per deployed or confirmed chain, what was checked after the reload, in words
        self.checks: dict[str, str] = {}

    # -- chains ---------------------------------------------------------------

    def chains(self) -> HostChains:
        live = []
        for index, path in enumerate(self.spec.certs):
            live.append(self._facts(path, f"live {path.name}", self.spec.key if index == 0 else None))
        staged = [self._facts(path, f"staged {path.name}") for path in self.staged_files()]
        next_keys = [self._facts(p, f"next {p.name}") for p in self.next_key_files()]
        return HostChains(tuple(live), tuple(staged), tuple(next_keys))

    def staged_files(self) -> list[Path]:
        """``STAGED_DIR/<live file name>`` for each live file, whatever its suffix.

        A hook stages under the live file's own name, so this is where it is found
        again; any other file there is named in a note rather than silently ignored.
        """
        staged_dir = self.spec.staged_dir
        if staged_dir and staged_dir.exists() and not staged_dir.is_dir():
            raise InputError(f"{staged_dir}: staged_dir is not a directory", "point staged_dir at a folder")
        if staged_dir is None or not staged_dir.is_dir():
            return []
        names = [p.name for p in self.spec.certs]
        found = [staged_dir / n for n in names if (staged_dir / n).is_file()]
        strays = sorted(
            p.name for p in staged_dir.iterdir() if p.name not in names and not p.name.startswith(".")
        )
        if strays:
            note = (
                f"{self.spec.name}: {', '.join(strays)} in {staged_dir} matches no live file "
                f"({', '.join(names) or 'none configured'}) and is ignored; stage under a live file's name"
            )
            if note not in self.notes:
                self.notes.append(note)
        return found

    def next_key_files(self) -> list[Path]:
        """Configured ``next_keys`` and the tool-managed ones (``tlsa-manager key next``)."""
        from tlsa_manager.nextkey import existing

        managed = existing(self.next_dir) if self.next_dir is not None and self.next_dir.is_dir() else []
        return [*self.spec.next_keys, *managed]

    def _facts(self, path: Path, label: str, key: Path | None = None) -> ChainFacts:
        """chain_facts, loaded again only when a file changed (a run plans a host up to
        three times; a deploy renames, which changes the inode)."""
        try:
            stamp = tuple(
                (s.st_ino, s.st_mtime_ns, s.st_ctime_ns, s.st_size)
                for s in map(os.stat, filter(None, (path, key)))
            )
        except OSError:
            return chain_facts(path, label, self.catalog, key)  # says what is wrong with the file
        cache_key = (path, label, key, stamp)
        if cache_key not in self._chain_cache:
            self._chain_cache[cache_key] = chain_facts(path, label, self.catalog, key)
        return self._chain_cache[cache_key]

    # -- DNS --------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        if self._endpoints is None:
            if self.spec.nameservers:
                self._endpoints = [parse_endpoint(n) for n in self.spec.nameservers]
            else:
                self._endpoints = self.shared.nameservers(self.provider, self.owners[0].parent().parent())
            if not self._endpoints and not self.spec.nameservers:
                self._endpoints = self.public_nameservers()
        return self._endpoints

    def public_nameservers(self) -> list[Endpoint]:
        """Every address of the zone's NS names, looked up in the DNS: for a provider that
        cannot say (Cloudflare, a zone file), so the gate still watches every server."""
        zone = self.zone()
        if zone is None:
            return []
        from tlsa_manager.resolve import ValidatingResolver

        try:
            return ValidatingResolver(timeout=3.0).authoritative_servers(zone)
        except TlsaManagerError:
            return []

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
        return self.spec.provider, dns.name.Name(owner.labels[3:]).to_text()  # parent of the host

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
                "%s: not every server serves the change after %.0f s",
                self.spec.name,
                self.propagation_timeout,
            )
        return served

    def negative_ttl(self) -> int:
        if self.spec.negative_ttl is not None:
            return self.spec.negative_ttl
        view = self.view()
        zone = dns.name.Name(self.owners[0].labels[3:])  # the host's parent domain
        if view is None:
            return 0
        values = [self.shared.negative_ttl(e, zone) for e in view.endpoints]
        return max((v for v in values if v is not None), default=3600)

    # -- deploy -----------------------------------------------------------------

    def deploy(self, chain: ChainFacts) -> None:
        """Swap the staged file into the live path by rename, then reload the MTA.

        The staged file is pinned by a hard link and re-read through it; only if it
        holds exactly the chain whose gate passed does the pinned inode replace the
        live file.  A file staged meanwhile under the same name is never deployed
        unpublished: it stays staged for the next run's gate.
        """
        source = next((p for p in self.staged_files() if f"staged {p.name}" == chain.label), None)
        if source is None:
            raise StagedChanged(f"{chain.label} vanished from the staged folder", "run the hook again")
        if source.is_symlink() or not source.is_file():
            raise InputError(
                f"{source}: the staged file is a link or not a regular file; it is not deployed",
                "stage the chain with 'tlsa-manager hook' (it writes a regular file)",
            )
        target = next((p for p in self.spec.certs if p.name == source.name), None)
        if target is None:
            raise InputError(
                f"{self.spec.name}: no live file named {source.name} to replace",
                f"add {source.name} to cert/certs in the host's config",
            )
        pinned = source.with_name(f".{source.name}.deploying")
        with contextlib.suppress(FileNotFoundError):
            pinned.unlink()
        os.link(source, pinned, follow_symlinks=False)
        pinned_inode = os.stat(pinned).st_ino
        try:
            now_staged = chain_facts(pinned, chain.label, self.catalog)
            if chain_identity(now_staged) != chain_identity(chain):
                raise StagedChanged(
                    f"{source} changed after its gate was computed (a newer renewal?)",
                    "the next run publishes and gates the new file",
                )
            move_into_place(pinned, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                pinned.unlink()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(source, follow_symlinks=False).st_ino == pinned_inode:
                source.unlink()  # still the file that went live: no longer staged
        fsync_dir(source.parent)
        self._reload(target)
        self.checks[chain.label] = self.verify_presented(chain)

    def confirm(self, chain: ChainFacts) -> None:
        """Re-run the reload and probe of a deploy a killed or failed run left unconfirmed."""
        self._reload(None)
        live = [c for c in self.chains().live if c.key_type == chain.key_type]
        self.checks[chain.label] = self.verify_presented(chain, live)

    def _reload(self, target: Path | None) -> None:
        if not self.spec.reload:
            return
        what = f"{target} is live" if target else ""
        run_command(self.spec.reload, timeout=120, what=what, hint="reload the MTA by hand")

    def probe_ports(self) -> tuple[int, ...]:
        """``probe_port`` if set, else every port of the host (what senders connect to)."""
        return (self.spec.probe_port,) if self.spec.probe_port else self.spec.ports

    def verify_presented(
        self, chain: ChainFacts, accepted: Sequence[ChainFacts] = (), wait: float = 15.0
    ) -> str:
        """After a deploy, STARTTLS on every probed port must show the new leaf (or one of
        ``accepted``), or the old records stay: the engine stops and the next run tries
        again.  Returns what was checked, in words: without a probe nothing was."""
        if not self.spec.probe:
            return "reloaded, not verified (no probe configured)"
        from tlsa_manager.tlsprobe import handshake, protocol_for

        wanted = {c.leaf.spki_der for c in (chain, *accepted)}
        for port in self.probe_ports():
            deadline = time.monotonic() + wait
            seen = "nothing"
            while True:
                presented = handshake(
                    self.spec.probe, port, self.spec.name, chain.key_type, protocol_for(port)
                )
                if presented.leaf is not None:
                    if spki_der(presented.leaf.public_key()) in wanted:
                        break
                    seen = "the previous certificate"
                elif presented.error:
                    seen = presented.error
                if time.monotonic() >= deadline:
                    raise TlsaManagerError(
                        f"{self.spec.name}: after the deploy, {self.spec.probe}:{port} still "
                        f"presents {seen} for {chain.key_type.upper()}; the old records stay published",
                        "check the MTA's certificate settings and reload it",
                    )
                time.sleep(0.5)
        where = ", ".join(f"{self.spec.probe}:{p}" for p in self.probe_ports())
        return f"verified: {where} presents it"

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """The chain the MTA presents for each live key type on each of the host's own
        ports (``probe``), or None if it cannot be asked."""
        if not self.spec.probe:
            return None
        from tlsa_manager.certs import Chain
        from tlsa_manager.tlsprobe import handshake, protocol_for

        out = []
        for port in self.probe_ports():
            for kind in sorted({c.key_type for c in self.chains().live}):
                seen = handshake(self.spec.probe, port, self.spec.name, kind, protocol_for(port))
                if seen.leaf is None:
                    return None
                sent = Chain(seen.leaf, seen.leaf.public_key(), seen.chain[1:])
                out.append(facts_from_chain(sent, f"{kind} chain on {self.spec.probe}:{port}"))
        return tuple(out)

    def read_clocks(self) -> ClockSample:
        return clock.sample()

    def now(self) -> float:
        """The wall clock; a step during the run (against the boot-time clock) stops the run."""
        sample = clock.sample()
        if self._clock_start is None:
            self._clock_start = sample
        elif why := clock.step(self._clock_start, sample, self.spec.slack):
            raise StateError(
                f"{why}, during this run; stopping", "check NTP; the next run restarts the history"
            )
        return sample.wall


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
