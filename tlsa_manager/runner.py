"""Run plan / sync / status for configured hosts: providers, ports, ledger, lock.

No printing here: the CLI formats what these functions return.  One provider
session per provider name serves every host that uses it in a run.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.name

from tlsa_manager import lastsync
from tlsa_manager.catalog import Catalog
from tlsa_manager.config import Config, HostSpec
from tlsa_manager.engine import HostSettings, Member, SyncReport, converge_run, make_plan, plan_members
from tlsa_manager.errors import TlsaManagerError, UsageError
from tlsa_manager.fleet import FleetZones
from tlsa_manager.hostports import LivePorts, Shared, fixed_clock, host_settings
from tlsa_manager.ledger import Ledger, LedgerData
from tlsa_manager.nextkey import key_dir, refresh
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import Plan
from tlsa_manager.provider import Provider, RRset
from tlsa_manager.registry import provider_class
from tlsa_manager.report import StatusReport


@dataclass
class HostRun:
    """One configured host opened for a run: its spec, the ports it reads and writes
    through, and its settings."""

    spec: HostSpec
    ports: LivePorts
    settings: HostSettings


def open_hosts(
    config: Config,
    names: list[str],
    all_hosts: bool,
    catalog: Catalog,
    at: float | None = None,
    propagation_timeout: float = 300.0,
    state_dir: Path | None = None,
) -> list[HostRun]:
    providers: dict[str, Provider] = {}
    shared = Shared()
    ports_of = []
    for spec in config.select(names, all_hosts):
        if spec.provider not in providers:
            settings = dict(config.providers[spec.provider])
            cls = provider_class(str(settings.pop("type")))
            settings.pop("name", None)
            providers[spec.provider] = cls(settings)
            providers[spec.provider].instance = config.instance or socket.gethostname()
        clock = fixed_clock(at) if at is not None else None
        ports = LivePorts(
            spec, providers[spec.provider], catalog, propagation_timeout, shared=shared, clock=clock
        )
        if state_dir is not None:
            ports.next_dir = key_dir(state_dir, spec.name)
        ports_of.append(ports)
    shared.discover([p for p in ports_of if not p.spec.nameservers])
    # the negative TTL is asked once per server list and zone (hostdns.Shared), not per host
    return [HostRun(p.spec, p, host_settings(p.spec, catalog, p.negative_ttl())) for p in ports_of]


class LedgerPorts(LivePorts):
    """Ports that answer from the ledger's last observation: `status` never touches the network."""

    data: LedgerData

    def _latest(self, owner: dns.name.Name) -> tuple[ServerView, ...]:
        host = self.data.hosts.get(self.spec.name)
        record = host.owners.get(owner.to_text()) if host else None
        latest = record.history.latest() if record else None
        return latest.views if latest else ()

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        """What the provider holds, as best the ledger knows: of the servers' last answers,
        the one closest to the records this tool last wrote (a lagging secondary's is not)."""
        out = {}
        host = self.data.hosts.get(self.spec.name)
        for owner in owners:
            record = host.owners.get(owner.to_text()) if host else None
            managed = record.managed if record else frozenset()
            views = [v for v in self._latest(owner) if v.records is not None]
            best = min(views, key=lambda v: len((v.records or frozenset()) ^ managed), default=None)
            out[owner] = RRset(owner, best.records or frozenset(), best.ttl) if best else RRset(owner)
        return out

    def observe(
        self, owners: Sequence[dns.name.Name], published: dict[dns.name.Name, RRset] | None = None
    ) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        return {owner: self._latest(owner) for owner in owners}


def status_plans(
    config: Config,
    names: list[str],
    catalog: Catalog,
    state_dir: Path,
    at: float | None,
    data: LedgerData | None = None,
) -> list[Plan]:
    """Plans computed from the ledger alone (offline), for `status`: gates and next safe
    times.  ``data``: the ledger as already read (else it is read here)."""
    data = data if data is not None else Ledger(state_dir).load()
    plans = []
    for spec in config.select(names, not names):
        clock = fixed_clock(at) if at is not None else time.time
        ports = LedgerPorts(spec, None, catalog, clock=clock)  # type: ignore[arg-type]
        ports.data = data
        ports.next_dir = key_dir(state_dir, spec.name)
        settings = host_settings(spec, catalog, status_negative_ttl(spec, data))
        plans.append(make_plan(settings, ports, data.copy(), record=False))
    return plans


def status_negative_ttl(spec: HostSpec, data: LedgerData) -> int:
    """The negative TTL the last sync used (configured, else its SOA reading), so `status`
    shows the gate time `sync` acts on; never synced: the conservative 3600 s."""
    if spec.negative_ttl is not None:
        return spec.negative_ttl
    host = data.hosts.get(spec.name)
    return host.negative_ttl if host is not None and host.negative_ttl is not None else 3600


def _members(runs: list[HostRun]) -> tuple[list[Member], FleetZones]:
    return [Member(run.settings, run.ports) for run in runs], FleetZones([run.ports for run in runs])


def plan_hosts(
    runs: list[HostRun], state_dir: Path, failures: list[tuple[str, TlsaManagerError]] | None = None
) -> list[Plan]:
    """Read-only: nothing is written, not even the observation.  Every host is read and
    observed in one pass per zone.  A host that cannot be planned goes into
    ``failures`` when given (the others are planned), else its error is raised."""
    data = Ledger(state_dir).load()
    members, zones = _members(runs)
    plans = plan_members(members, zones, data, record=False)
    for member in members:
        error = member.report.error
        if error is not None:
            if failures is None:
                raise error
            failures.append((member.settings.host, error))
    return [plans[m.settings.host] for m in members if m.settings.host in plans]


def sync_hosts(
    runs: list[HostRun],
    state_dir: Path,
    *,
    dry_run: bool = False,
    lock_wait: float = 0.0,
    prepare: Callable[[], None] | None = None,
) -> list[SyncReport]:
    """Converge every host together under the ledger lock (engine.converge_run); the
    ledger is saved after each phase.  A host that failed has ``error`` set in its
    report; a run of one host raises it instead (one line, its exit code).

    ``prepare`` runs under the lock first: the hook stages there, so a renewal can
    never replace a staged file between another run's gate and its deploy.
    """
    ledger = Ledger(state_dir)
    members, zones = _members(runs)
    if dry_run:
        reports = converge_run(members, zones, ledger.load(), lambda _d: None, dry_run=True)
    else:
        with ledger.locked(lock_wait):
            if prepare is not None:
                prepare()
            data = ledger.load()
            made: dict[str, list[str]] = {}
            for run, member in zip(runs, members, strict=True):
                data.host(run.spec.name).negative_ttl = run.settings.negative_ttl
                try:
                    made[run.spec.name] = refresh_next_keys(run)
                except TlsaManagerError as exc:
                    member.report.error = exc  # this host stops here; the others go on
            reports = converge_run(members, zones, data, ledger.save)
            for report in reports:
                report.notes[:0] = made.get(report.host, [])
            ledger.save(data)
            lastsync.record(
                state_dir, [r.host for r in reports if r.error is None and not r.failures], time.time()
            )
    if len(reports) == 1 and reports[0].error is not None:
        raise reports[0].error
    return reports


def refresh_next_keys(run: HostRun) -> list[str]:
    """With ``auto_next_keys``: retire next keys a live or staged chain now uses and make
    the missing ones, before the sync plans (so the new key is pre-published in this run)."""
    if not run.spec.auto_next_keys or run.ports.next_dir is None:
        return []
    chains = run.ports.chains()
    in_use = [*chains.live, *chains.staged]
    done = refresh(run.ports.next_dir, {c.key_type for c in in_use}, {c.leaf.spki_der for c in in_use})
    return done.notes()


def status_report(
    config: Config | None, hosts: Sequence[str], state_dir: Path, at: float | None
) -> StatusReport:
    """`status`, offline: the ledger, and with a configuration the gates and hazards the
    last observation gives (:func:`status_plans`).  Without one the ledger alone says
    which hosts there are; gates need the certificate files, which only a configuration
    names.  Unknown hosts are a usage error."""
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.freshness import catalog_summary

    data = Ledger(state_dir).load()
    specs: list[HostSpec] | None = None
    plans: list[Plan] | None = None
    if config is None:
        names = [h.rstrip(".").lower() for h in hosts] or sorted(data.hosts)
        unknown = [n for n in names if n not in data.hosts]
        if unknown:
            raise UsageError(
                f"{', '.join(unknown)}: not in the ledger of {state_dir}",
                f"known: {', '.join(sorted(data.hosts)) or 'none'}; or give --config FILE",
            )
    else:
        specs = config.select(list(hosts), not hosts)
        names = [spec.name for spec in specs]
        plans = status_plans(config, names, load_catalog(state_dir), state_dir, at, data)
    return StatusReport(names, data, plans, str(state_dir), specs, catalog_summary(state_dir))
