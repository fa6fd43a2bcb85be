"""Run plan / sync / status for configured hosts: providers, ports, ledger, lock.

No printing here: the CLI formats what these functions return.  One provider
session per provider name serves every host that uses it in a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlsa_manager.catalog import Catalog
from tlsa_manager.config import Config, HostSpec
from tlsa_manager.engine import HostSettings, SyncReport, converge, make_plan
from tlsa_manager.hostports import LivePorts, host_settings
from tlsa_manager.ledger import Ledger, LedgerData
from tlsa_manager.planner import Plan
from tlsa_manager.provider import Provider
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
    return reports


def ledger_data(state_dir: Path) -> LedgerData:
    return Ledger(state_dir).load()
