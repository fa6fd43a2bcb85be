"""The one place where read -> plan -> apply -> verify -> deploy -> clean up is wired.

Every outside effect goes through :class:`HostPorts` (the provider, the DNS views,
the deployer, the clock), so the same sequence runs against real BIND/Postfix in
``sync`` and against the simulated world of ``simulate`` and the test harness.

Crash safety comes from the order of the steps, not from luck:
1. observe every authoritative server and record it in the ledger;
2. write the records about to be added to the ledger as "managed" *before* applying
   them (a crash then leaves, at worst, a ledger entry for a record that is not there);
3. apply additions and safe removals in one compare-and-swap change per zone;
4. wait for propagation, observe again, save;
5. deploy a staged chain only if its gate has passed on the observations *and* every
   RRset just written still covers it; the chain it replaces is written to the
   ledger first (a deploy journal), because once the file is renamed the old chain
   exists nowhere else, yet the MTA presents it until its reload is confirmed;
6. re-plan with the new live set and remove what matches nothing any more.
A kill between any two steps leaves DNS covering every chain that can be live, and
the next run continues from what it observes: it first re-runs the reload and probe
of an unconfirmed deploy, and until that succeeds the replaced chain counts as live.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import dns.name

from tlsa_manager.errors import ProviderConflict, TlsaManagerError
from tlsa_manager.facts import ChainFacts, chain_from_json, chain_to_json
from tlsa_manager.ledger import LedgerData
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import DEFAULT_SLACK, OwnerInput, Plan, PlanInput, plan
from tlsa_manager.policy import HostPolicy, IssuerFacts, desired
from tlsa_manager.provider import ChangeSet, RRset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostChains:
    live: tuple[ChainFacts, ...]
    staged: tuple[ChainFacts, ...] = ()
    next_keys: tuple[ChainFacts, ...] = ()


class HostPorts(Protocol):
    """The outside world of one host, as the engine sees it."""

    def chains(self) -> HostChains: ...

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]: ...

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]: ...

    def apply(self, changeset: ChangeSet) -> None: ...

    def wait_for_propagation(self, changeset: ChangeSet) -> None: ...

    def deploy(self, chain: ChainFacts) -> None:
        """Put a staged chain live and reload; raise if the server does not present it."""

    def confirm(self, chain: ChainFacts) -> None:
        """Reload again; raise unless the server presents ``chain`` or a current live chain."""

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


@dataclass
class SyncReport:
    host: str
    plans: list[Plan] = field(default_factory=list)
    applied: list[ChangeSet] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: what this run tried and could not finish (an unconfirmed deploy): exit code 1
    failures: list[str] = field(default_factory=list)

    @property
    def first_plan(self) -> Plan | None:
        return self.plans[0] if self.plans else None

    @property
    def last_plan(self) -> Plan | None:
        return self.plans[-1] if self.plans else None


Checkpoint = Callable[[str], None]


def _no_checkpoint(step: str) -> None:
    return None


def unconfirmed(ledger: LedgerData, host: str) -> tuple[ChainFacts, ...]:
    """Chains the MTA may still present: replaced by a deploy whose reload is not confirmed."""
    return tuple(
        replace(chain, label=f"previous {chain.label} (deploy of {label} not confirmed)")
        for label, entry in ledger.host(host).deploys.items()
        for chain in map(chain_from_json, entry["previous"])
    )


def make_plan(settings: HostSettings, ports: HostPorts, ledger: LedgerData, *, record: bool) -> Plan:
    """Read, observe and plan; with ``record`` the observation goes into the ledger."""
    found = ports.chains()
    chains = HostChains(found.live + unconfirmed(ledger, settings.host), found.staged, found.next_keys)
    now = ports.now()
    published = ports.read(settings.owners)
    views = ports.observe(settings.owners)
    host = ledger.host(settings.host)
    owners = []
    for owner in settings.owners:
        rec = host.owner(owner.to_text())
        history = rec.history.observe(now, views.get(owner, ()), settings.slack)
        if record:
            rec.history = history
        rrset = published.get(owner, RRset(owner))
        owners.append(OwnerInput(owner, rrset, views.get(owner, ()), history, rec.managed | rrset.managed))
    want = desired(
        chains.live,
        chains.staged,
        chains.next_keys,
        settings.issuers,
        settings.policy,
        owner=settings.host,
    )
    return plan(
        PlanInput(
            host=settings.host,
            owners=tuple(owners),
            desired=want,
            now=now,
            live=chains.live,
            staged=chains.staged,
            next_keys=chains.next_keys,
            issuers=settings.issuers,
            roots=settings.roots,
            policy=settings.policy,
            negative_ttl=settings.negative_ttl,
            default_ttl=settings.default_ttl,
            slack=settings.slack,
        )
    )


def _apply(
    settings: HostSettings,
    ports: HostPorts,
    ledger: LedgerData,
    save: Callable[[LedgerData], None],
    current: Plan,
    checkpoint: Checkpoint,
    report: SyncReport,
) -> Plan:
    """Record intent, apply with compare-and-swap (re-plan once on conflict), record result."""
    for attempt in (1, 2):
        changeset = ChangeSet(current.changes)
        if changeset.is_noop:
            return current
        changeset.check_safe()
        host = ledger.host(settings.host)
        for change in changeset.changes:
            rec = host.owner(change.owner.to_text())
            rec.managed = rec.managed | change.add
        save(ledger)
        checkpoint("intent-saved")
        try:
            ports.apply(changeset)
        except ProviderConflict as exc:
            if attempt == 2:
                raise
            report.notes.append(f"conflict, re-planning once: {exc.message}")
            current = make_plan(settings, ports, ledger, record=True)
            report.plans.append(current)
            continue
        checkpoint("apply-returned")
        report.applied.append(changeset)
        for change in changeset.changes:
            rec = host.owner(change.owner.to_text())
            rec.managed = rec.managed - change.delete
        save(ledger)
        checkpoint("applied")
        ports.wait_for_propagation(changeset)
        checkpoint("propagated")
        return current
    return current


def converge(
    settings: HostSettings,
    ports: HostPorts,
    ledger: LedgerData,
    save: Callable[[LedgerData], None],
    *,
    dry_run: bool = False,
    checkpoint: Checkpoint = _no_checkpoint,
) -> SyncReport:
    """One sync of one host (the caller holds the ledger lock)."""
    report = SyncReport(settings.host)
    if not dry_run:
        _confirm_deploys(settings, ports, ledger, save, report)
    first = make_plan(settings, ports, ledger, record=not dry_run)
    report.plans.append(first)
    if dry_run:
        return report
    save(ledger)
    checkpoint("observed")
    applied = _apply(settings, ports, ledger, save, first, checkpoint, report)
    # Observe again after the change, then decide deploys on fresh observations.
    after = make_plan(settings, ports, ledger, record=True) if report.applied else applied
    if report.applied:
        report.plans.append(after)
        save(ledger)
    written = [c.result for cs in report.applied for c in cs.changes]
    deployed_any = False
    for gate in after.ready:
        chain = next(c for c in ports.chains().staged if c.label == gate.chain)
        if any(result and not chain.covered_by(result) for result in written):
            report.notes.append(f"{chain.label}: not deployed, a record kind just written does not match it")
            continue
        journal = ledger.host(settings.host).deploys
        if any(e["deployed"]["key_type"] == chain.key_type for e in journal.values()):
            report.notes.append(
                f"{chain.label}: not deployed, the previous {chain.key_type.upper()} deploy is not confirmed"
            )
            continue
        checkpoint("before-deploy")
        journal[chain.label] = {
            "deployed": chain_to_json(chain),
            "previous": [chain_to_json(c) for c in ports.chains().live if c.key_type == chain.key_type],
            "since": ports.now(),
        }
        save(ledger)
        checkpoint("deploy-intent")
        ports.deploy(chain)
        del journal[chain.label]
        save(ledger)
        report.deployed.append(chain.label)
        deployed_any = True
        checkpoint("deployed")
    if deployed_any:
        cleanup = make_plan(settings, ports, ledger, record=True)
        report.plans.append(cleanup)
        save(ledger)
        before = len(report.applied)
        _apply(settings, ports, ledger, save, cleanup, checkpoint, report)
        if len(report.applied) > before:
            # observe what the removal left, so the ledger (and `status`) shows what is served
            make_plan(settings, ports, ledger, record=True)
            save(ledger)
    return report


def _confirm_deploys(
    settings: HostSettings,
    ports: HostPorts,
    ledger: LedgerData,
    save: Callable[[LedgerData], None],
    report: SyncReport,
) -> None:
    """Finish what a killed or failed run left: reload and probe until the server presents
    the deployed chain; only then may the records of the chain it replaced go."""
    journal = ledger.host(settings.host).deploys
    for label, entry in list(journal.items()):
        try:
            ports.confirm(chain_from_json(entry["deployed"]))
        except TlsaManagerError as exc:
            report.notes.append(
                f"the deploy of {label} is not confirmed ({exc.message}); "
                "the records of the chain it replaced stay"
            )
            report.failures.append(f"the deploy of {label} is not confirmed")
            continue
        del journal[label]
        save(ledger)
        checked = _checked(ports, label)
        verb = "confirmed" if checked.startswith(("verified", "the server presents")) else "finished"
        report.notes.append(f"{verb} the deploy of {label}: {checked}")


def _checked(ports: HostPorts, label: str) -> str:
    """What the ports checked after the reload (a probe, or nothing), in words."""
    checks: dict[str, str] = getattr(ports, "checks", {})
    return checks.get(label, "the server presents it")
