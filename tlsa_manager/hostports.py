"""The engine's ports for a real host: files, a provider, authoritative servers, the MTA.

- live chains: the files the MTA serves (``cert``/``certs`` in the host's config);
- staged chains: ``STAGED_DIR/<key type>.pem`` written by a hook (key + chain);
- next keys: ``next_keys`` files (bare keys, pre-published before any certificate);
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

from tlsa_manager import clock
from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import load_chain
from tlsa_manager.clock import ClockSample
from tlsa_manager.command import run_command
from tlsa_manager.config import HostSpec
from tlsa_manager.dnsview import DnsView, Endpoint, negative_ttl, parse_endpoint
from tlsa_manager.engine import HostChains, HostSettings, StagedChanged
from tlsa_manager.errors import InputError, StateError, TlsaManagerError
from tlsa_manager.facts import ChainFacts, facts_from_chain
from tlsa_manager.fsutil import fsync_dir, move_into_place
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import chain_identity
from tlsa_manager.policy import issuers_from_catalog
from tlsa_manager.provider import ChangeSet, Provider, RRset
from tlsa_manager.records import owner_name, spki_der

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


class LivePorts:
    """HostPorts for one configured host."""

    def __init__(
        self,
        spec: HostSpec,
        provider: Provider,
        catalog: Catalog,
        propagation_timeout: float = 300.0,
        poll_interval: float = 2.0,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.catalog = catalog
        self.propagation_timeout = propagation_timeout
        self.poll_interval = poll_interval
        self.owners = tuple(owner_name(spec.name, port) for port in spec.ports)
        self._view: DnsView | None = None
        self._clock_start: ClockSample | None = None
        self.notes: list[str] = []

    # -- chains ---------------------------------------------------------------

    def chains(self) -> HostChains:
        live = []
        for index, path in enumerate(self.spec.certs):
            live.append(
                chain_facts(path, f"live {path.name}", self.catalog, self.spec.key if index == 0 else None)
            )
        staged = []
        staged_dir = self.spec.staged_dir
        if staged_dir and staged_dir.exists() and not staged_dir.is_dir():
            raise InputError(f"{staged_dir}: staged_dir is not a directory", "point staged_dir at a folder")
        if staged_dir and staged_dir.is_dir():
            for path in sorted(staged_dir.glob("*.pem")):
                staged.append(chain_facts(path, f"staged {path.name}", self.catalog))
        next_keys = [chain_facts(p, f"next {p.name}", self.catalog) for p in self.spec.next_keys]
        return HostChains(tuple(live), tuple(staged), tuple(next_keys))

    # -- DNS --------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """The servers to watch: the configured list, else every address of the zone's NS
        names (from the provider where it can say, else from the DNS), for every provider."""
        if self.spec.nameservers:
            return [parse_endpoint(n) for n in self.spec.nameservers]
        zone = self.zone()
        if zone is None:
            return []
        try:
            servers = [Endpoint(s.name, s.address, s.port) for s in self.provider.nameservers(zone)]
        except TlsaManagerError as exc:
            log.warning("%s: %s", self.spec.name, exc.one_line())
            servers = []
        if servers:
            return servers
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
        if self._view is None:
            endpoints = self.endpoints()
            if endpoints:
                self._view = DnsView(endpoints)
        return self._view

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        return self.provider.read(owners)

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        view = self.view()
        if view is not None:
            return view.observe(owners)
        note = (
            f"{self.spec.name}: no authoritative server can be asked (the zone's NS gave none); "
            "new keys and issuers stay staged unless propagation_delay is set (set nameservers = [...])"
        )
        if note not in self.notes:
            self.notes.append(note)
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

    def apply(self, changeset: ChangeSet) -> None:
        self.provider.apply(changeset)

    def wait_for_propagation(self, changeset: ChangeSet) -> None:
        """Poll every server until it serves the new RRsets (bounded); gates decide, not this."""
        view = self.view()
        if view is None:
            return
        wanted = {c.owner: c.result for c in changeset.changes}
        deadline = time.monotonic() + self.propagation_timeout
        while time.monotonic() < deadline:
            views = view.observe(list(wanted))
            if all(v.records == wanted[o] for o, vs in views.items() for v in vs):
                return
            time.sleep(self.poll_interval)
        log.warning(
            "%s: not every server serves the change after %.0f s", self.spec.name, self.propagation_timeout
        )

    def negative_ttl(self) -> int:
        if self.spec.negative_ttl is not None:
            return self.spec.negative_ttl
        view = self.view()
        zone = self.owners[0].parent().parent().parent()
        if view is None:
            return 0
        values = [negative_ttl(e, zone) for e in view.endpoints]
        return max((v for v in values if v is not None), default=3600)

    # -- deploy -----------------------------------------------------------------

    def deploy(self, chain: ChainFacts) -> None:
        """Swap the staged file into the live path by rename, then reload the MTA.

        The staged file is pinned by a hard link and re-read through it; only if it
        holds exactly the chain whose gate passed does the pinned inode replace the
        live file.  A file staged meanwhile under the same name is never deployed
        unpublished: it stays staged for the next run's gate.
        """
        source = next(
            (
                p
                for p in (self.spec.staged_dir or Path("/nonexistent")).glob("*.pem")
                if f"staged {p.name}" == chain.label
            ),
            None,
        )
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
        self.verify_presented(chain)

    def confirm(self, chain: ChainFacts) -> None:
        """Re-run the reload and probe of a deploy a killed or failed run left unconfirmed."""
        self._reload(None)
        self.verify_presented(chain, [c for c in self.chains().live if c.key_type == chain.key_type])

    def _reload(self, target: Path | None) -> None:
        if not self.spec.reload:
            return
        what = f"{target} is live" if target else ""
        run_command(self.spec.reload, timeout=120, what=what, hint="reload the MTA by hand")

    def verify_presented(
        self, chain: ChainFacts, accepted: Sequence[ChainFacts] = (), wait: float = 15.0
    ) -> None:
        """After a deploy, STARTTLS must show the new leaf (or one of ``accepted``), or the
        old records stay: the engine stops and the next run tries again."""
        if not self.spec.probe:
            return
        from tlsa_manager.smtp import starttls

        wanted = {c.leaf.spki_der for c in (chain, *accepted)}
        deadline = time.monotonic() + wait
        seen = "nothing"
        while True:
            presented = starttls(self.spec.probe, self.spec.probe_port, self.spec.name, chain.key_type)
            if presented.leaf is not None:
                if spki_der(presented.leaf.public_key()) in wanted:
                    return
                seen = "the previous certificate"
            elif presented.error:
                seen = presented.error
            if time.monotonic() >= deadline:
                raise TlsaManagerError(
                    f"{self.spec.name}: after the deploy, {self.spec.probe}:{self.spec.probe_port} still "
                    f"presents {seen} for {chain.key_type.upper()}; the old records stay published",
                    "check the MTA's certificate settings and reload it",
                )
            time.sleep(0.5)

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """The chain the MTA presents for each live key type (``probe``), or None if unknown."""
        if not self.spec.probe:
            return None
        from tlsa_manager.certs import Chain
        from tlsa_manager.smtp import starttls

        out = []
        for kind in sorted({c.key_type for c in self.chains().live}):
            seen = starttls(self.spec.probe, self.spec.probe_port, self.spec.name, kind)
            if seen.leaf is None:
                return None
            sent = Chain(seen.leaf, seen.leaf.public_key(), seen.chain[1:])
            out.append(facts_from_chain(sent, f"{kind} chain on {self.spec.probe}:{self.spec.probe_port}"))
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


def host_settings(spec: HostSpec, catalog: Catalog, negative: int) -> HostSettings:
    return HostSettings(
        spec.name,
        tuple(owner_name(spec.name, p) for p in spec.ports),
        spec.policy,
        issuers_from_catalog(catalog),
        issuers_from_catalog(catalog, roots=True),
        negative,
        spec.ttl,
        spec.slack,
        spec.ttl_ceiling,
        spec.propagation_delay,
    )
