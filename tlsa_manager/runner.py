"""Run plan / sync / status for configured hosts: providers, ports, ledger, lock.

No printing here: the CLI formats what these functions return.  One provider
session per provider name serves every host that uses it in a run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.name

from tlsa_manager import lastsync
from tlsa_manager.catalog import Catalog
from tlsa_manager.config import Config, HostSpec
from tlsa_manager.engine import HostSettings, SyncReport, converge, make_plan
from tlsa_manager.hostports import LivePorts, host_settings
from tlsa_manager.ledger import Ledger, LedgerData
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import Plan
from tlsa_manager.provider import Provider, RRset
from tlsa_manager.registry import provider_class


@dataclass
class HostRun:
    spec: HostSpec
    ports: LivePorts
    settings: HostSettings


class AtPorts(LivePorts):
    """LivePorts whose clock is fixed (``--at`` what-if)."""

    at: float = 0.0

    def now(self) -> float:
        return self.at


def open_hosts(
    config: Config,
    names: list[str],
    all_hosts: bool,
    catalog: Catalog,
    at: float | None = None,
    propagation_timeout: float = 300.0,
) -> list[HostRun]:
    providers: dict[str, Provider] = {}
    runs = []
    for spec in config.select(names, all_hosts):
        if spec.provider not in providers:
            settings = dict(config.providers[spec.provider])
            cls = provider_class(str(settings.pop("type")))
            settings.pop("name", None)
            providers[spec.provider] = cls(settings)
        ports: LivePorts
        if at is not None:
            ports = AtPorts(spec, providers[spec.provider], catalog, propagation_timeout)
            ports.at = at
        else:
            ports = LivePorts(spec, providers[spec.provider], catalog, propagation_timeout)
        runs.append(HostRun(spec, ports, host_settings(spec, catalog, ports.negative_ttl())))
    return runs


class LedgerPorts(LivePorts):
    """Ports that answer from the ledger's last observation: `status` never touches the network."""

    data: LedgerData
    at: float | None = None

    def _latest(self, owner: dns.name.Name) -> tuple[ServerView, ...]:
        host = self.data.hosts.get(self.spec.name)
        record = host.owners.get(owner.to_text()) if host else None
        latest = record.history.latest() if record else None
        return latest.views if latest else ()

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        out = {}
        for owner in owners:
            views = [v for v in self._latest(owner) if v.records is not None]
            first = views[0] if views else None
            out[owner] = RRset(owner, first.records or frozenset(), first.ttl) if first else RRset(owner)
        return out

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        return {owner: self._latest(owner) for owner in owners}

    def now(self) -> float:
        return self.at if self.at is not None else time.time()


def status_plans(
    config: Config, names: list[str], catalog: Catalog, state_dir: Path, at: float | None
) -> list[Plan]:
    """Plans computed from the ledger alone (offline), for `status`: gates and next safe times."""
    data = Ledger(state_dir).load()
    plans = []
    for spec in config.select(names, not names):
        ports = LedgerPorts(spec, None, catalog)  # type: ignore[arg-type]
        ports.data, ports.at = data, at
        settings = host_settings(spec, catalog, spec.negative_ttl or 0)
        plans.append(make_plan(settings, ports, data.copy(), record=False))
    return plans


def plan_hosts(runs: list[HostRun], state_dir: Path) -> list[Plan]:
    """Read-only: nothing is written, not even the observation."""
    data = Ledger(state_dir).load()
    return [make_plan(run.settings, run.ports, data, record=False) for run in runs]


def sync_hosts(
    runs: list[HostRun], state_dir: Path, *, dry_run: bool = False, lock_wait: float = 0.0
) -> list[SyncReport]:
    """Converge every host under the ledger lock; the ledger is saved after each step."""
    ledger = Ledger(state_dir)
    if dry_run:
        data = ledger.load()
        return [converge(run.settings, run.ports, data, lambda _d: None, dry_run=True) for run in runs]
    reports = []
    with ledger.locked(lock_wait):
        data = ledger.load()
        for run in runs:
            reports.append(converge(run.settings, run.ports, data, ledger.save))
        ledger.save(data)
        lastsync.record(state_dir, [run.spec.name for run in runs], time.time())
    return reports


def ledger_data(state_dir: Path) -> LedgerData:
    return Ledger(state_dir).load()
