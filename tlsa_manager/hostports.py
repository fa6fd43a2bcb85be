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

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import dns.name

from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import load_chain
from tlsa_manager.command import run_command
from tlsa_manager.config import HostSpec
from tlsa_manager.dnsview import DnsView, Endpoint, negative_ttl, parse_endpoint
from tlsa_manager.engine import HostChains, HostSettings
from tlsa_manager.errors import InputError, TlsaManagerError
from tlsa_manager.facts import ChainFacts, facts_from_chain
from tlsa_manager.fsutil import move_into_place
from tlsa_manager.observations import ServerView
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
        self.notes: list[str] = []
        #: the host's tool-managed next keys (nextkey.key_dir), when a state dir is known
        self.next_dir: Path | None = None
        #: per deployed or confirmed chain, what was checked after the reload, in words
        self.checks: dict[str, str] = {}

    # -- chains ---------------------------------------------------------------

    def chains(self) -> HostChains:
        live = []
        for index, path in enumerate(self.spec.certs):
            live.append(
                chain_facts(path, f"live {path.name}", self.catalog, self.spec.key if index == 0 else None)
            )
        staged = [
            chain_facts(path, f"staged {path.name}", self.catalog) for path in self.staged_files()
        ]
        next_keys = [chain_facts(p, f"next {p.name}", self.catalog) for p in self.next_key_files()]
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

    # -- DNS --------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        if self.spec.nameservers:
            return [parse_endpoint(n) for n in self.spec.nameservers]
        zone = self.owners[0].parent().parent()
        servers = self.provider.nameservers(zone)
        return [Endpoint(s.name, s.address, s.port) for s in servers]

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
            f"{self.spec.name}: no authoritative server to ask; the provider's copy is the only view "
            "(set nameservers = [...] so gates wait for real servers)"
        )
        if note not in self.notes:
            self.notes.append(note)
        published = self.provider.read(owners)
        return {
            o: (
                ServerView(
                    f"{self.provider.name} (no servers configured)", published[o].records, published[o].ttl
                ),
            )
            for o in owners
        }

    def apply(self, changeset: ChangeSet) -> None:
        self.provider.apply(changeset)

    def wait_for_propagation(self, changeset: ChangeSet) -> None:
        """Poll every server until it serves the new RRsets (bounded); gates decide, not this."""
        view = self.view()
        if view is None or self.propagation_timeout <= 0:
            return  # the hook: it must return at once, the gates (and the timer) wait
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
        """Swap the staged file into the live path by rename, then reload the MTA."""
        source = next((p for p in self.staged_files() if f"staged {p.name}" == chain.label), None)
        if source is None:
            raise InputError(f"{chain.label}: staged file vanished", "run the hook again")
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
        move_into_place(source, target)
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

    def now(self) -> float:
        return time.time()


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
    )
