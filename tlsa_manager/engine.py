"""The one place where read -> plan -> apply -> verify -> deploy -> clean up is wired.

Every outside effect goes through ports: :class:`HostPorts` for one host's chains,
deploy and clock, :class:`ZonePorts` for reading, observing and writing the records
of every host of a run at once.  The same sequence runs against real BIND/Postfix in
``sync`` and against the simulated world of ``simulate`` and the test harness.

A run converges all its hosts together, phase by phase (``converge_run``): every host
is read and observed first (one provider read and one observation per zone, not per
host), then one change set per zone is applied, then everything written is waited
for once and observed once.  A sync of one host is a run of one (``converge``).

Crash safety comes from the order of the phases, not from luck; each phase finishes
for every host before the next starts:
1. observe every authoritative server and record it in the ledger;
2. write the records about to be added to the ledger as "managed" *before* applying
   them (a crash then leaves, at worst, a ledger entry for a record that is not there);
3. apply additions and safe removals in one compare-and-swap change set per zone;
4. wait for propagation, observe again, save;
5. deploy a staged chain only if its gate has passed on the observations *and* every
   RRset just written still covers it; the chain it replaces is written to the
   ledger first (a deploy journal), because once the file is renamed the old chain
   exists nowhere else, yet the MTA presents it until its reload is confirmed;
6. re-plan with the new live set and remove what matches nothing any more.
A kill between any two steps leaves DNS covering every chain that can be live, and
the next run continues from what it observes: it first re-runs the reload and probe
of an unconfirmed deploy, and until that succeeds the replaced chain counts as live.

A failure is confined to what it touches: a host whose certificate does not load, or
whose deploy fails, stops alone; a zone whose read or write fails stops its hosts.
Their reports carry the error; the other hosts go on.

The ports and reports are in ``ports.py``, the deploy journal and what a run does
before planning (step 0: clocks, the MTA's chain, unconfirmed deploys) in
``journal.py``, one host's planner input in ``hostplan.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping, Sequence

import dns.name

from tlsa_manager.errors import ExitCode, ProviderConflict, TlsaManagerError
from tlsa_manager.hostplan import plan_host
from tlsa_manager.journal import begin_runs as _begin_runs
from tlsa_manager.journal import clock_behind_dns, gated_chain, record_applied, settle_deploy, unconfirmed
from tlsa_manager.journal import confirm_deploys as _confirm_deploys
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import Plan
from tlsa_manager.plans import name_text
from tlsa_manager.ports import (
    Checkpoint,
    HostChains,
    HostPorts,
    HostSettings,
    Member,
    Save,
    StagedChanged,
    SyncReport,
    Views,
    ZonePorts,
)
from tlsa_manager.provider import ChangeSet, OwnerChange, RRset, read_owners
from tlsa_manager.records import Tlsa
from tlsa_manager.state import PRESENTED, DeployIntent, LedgerData, OwnerRecord

#: the ports and reports live in tlsa_manager.ports; these names stay importable from here
__all__ = [
    "HostChains",
    "HostPorts",
    "HostSettings",
    "Member",
    "StagedChanged",
    "SyncReport",
    "ZonePorts",
    "converge",
    "converge_run",
    "make_plan",
    "plan_members",
]

log = logging.getLogger(__name__)


def _no_checkpoint(step: str) -> None:
    return None


def _by_zone(zones: ZonePorts, owners: Sequence[dns.name.Name]) -> dict[Hashable, list[dns.name.Name]]:
    out: dict[Hashable, list[dns.name.Name]] = {}
    for owner in owners:
        out.setdefault(zones.zone_of(owner), []).append(owner)
    return out


def plan_members(
    members: Sequence[Member],
    zones: ZonePorts,
    ledger: LedgerData,
    *,
    record: bool,
    seen: Views | None = None,
) -> dict[str, Plan]:
    """Read, observe and plan every host; with ``record`` the observations go into the ledger.

    One read and one observation per zone for all owners of the run; ``seen`` holds
    observations just made (the last poll of the propagation wait), used instead of
    asking again.  A host whose chains do not load, or whose zone cannot be read,
    gets an error and no plan.
    """
    chains: dict[str, HostChains] = {}
    for member in members:
        try:
            chains[member.settings.host] = _host_chains(member, ledger)
        except TlsaManagerError as exc:
            member.fail(exc)
    ready = [m for m in members if m.settings.host in chains]
    owners = [o for m in ready for o in m.settings.owners]
    published: dict[dns.name.Name, RRset] = {}
    views: dict[dns.name.Name, tuple[ServerView, ...]] = {}
    broken: dict[dns.name.Name, TlsaManagerError] = {}
    for group in _by_zone(zones, owners).values():
        try:
            group = read_owners(zones.read, group, published, broken)
            unseen = [o for o in group if seen is None or o not in seen]
            views.update(zones.observe(unseen) if unseen else {})
            views.update({o: seen[o] for o in group if seen is not None and o in seen})
        except TlsaManagerError as exc:
            broken.update((o, exc) for o in group)
    plans: dict[str, Plan] = {}
    for member in ready:
        settings = member.settings
        problem = next((broken[o] for o in settings.owners if o in broken), None)
        if problem is not None:
            member.fail(problem)
            continue
        if record and clock_behind_dns(member, views, ledger):
            chains[settings.host] = _host_chains(member, ledger)  # with what the probe journalled
        plans[settings.host] = plan_host(
            settings, chains[settings.host], member.ports.now(), published, views, ledger, record
        )
    return plans


def _host_chains(member: Member, ledger: LedgerData) -> HostChains:
    """The host's chains, the live ones with those the MTA may still present (journal)."""
    found = member.ports.chains()
    extra = unconfirmed(ledger, member.settings.host)
    return HostChains(found.live + extra, found.staged, found.next_keys)


def make_plan(settings: HostSettings, ports: HostPorts, ledger: LedgerData, *, record: bool) -> Plan:
    """Read, observe and plan one host; raises what stopped it."""
    member = Member(settings, ports)
    plans = plan_members([member], ports, ledger, record=record)
    if member.report.error is not None:
        raise member.report.error
    return plans[settings.host]


class Run:
    """One run over many hosts: the phases of :func:`converge_run` share this state."""

    def __init__(
        self,
        members: Sequence[Member],
        zones: ZonePorts,
        ledger: LedgerData,
        save: Save,
        checkpoint: Checkpoint,
    ) -> None:
        self.members = list(members)
        self.zones = zones
        self.ledger = ledger
        self.save = save
        self.checkpoint = checkpoint

    def active(self, members: Sequence[Member] | None = None) -> list[Member]:
        return [m for m in (self.members if members is None else members) if not m.report.failed]

    def replan(self, members: Sequence[Member], seen: Views | None = None) -> dict[str, Plan]:
        plans = plan_members(self.active(members), self.zones, self.ledger, record=True, seen=seen)
        for member in members:
            if member.settings.host in plans:
                member.report.plans.append(plans[member.settings.host])
        return plans

    def apply(self, plans: Mapping[str, Plan]) -> tuple[dict[str, Plan], list[Member], Views]:
        """Record intent, apply one compare-and-swap change set per zone (a zone that
        conflicts is re-planned once), record the result, wait once for all of it.

        Returns the latest plan of every host, the hosts that changed and the last
        observation of the wait."""
        latest = dict(plans)
        current = dict(plans)
        changed: dict[str, Member] = {}
        seen: dict[dns.name.Name, tuple[ServerView, ...]] = {}
        for attempt in (1, 2):
            members = [m for m in self.active() if m.settings.host in current]
            todo: list[tuple[Member, ChangeSet]] = []
            for member in members:
                changeset = ChangeSet(current[member.settings.host].changes)
                if changeset.is_noop:
                    continue
                try:
                    changeset.check_safe()
                except TlsaManagerError as exc:
                    member.fail(exc)
                    continue
                todo.append((member, changeset))
            if not todo:
                break
            intent: dict[str, list[tuple[OwnerRecord, frozenset[Tlsa]]]] = {}  # what each newly marks
            for member, changeset in todo:
                host = self.ledger.host(member.settings.host)
                for change in changeset.changes:
                    rec = host.owner(name_text(change.owner))
                    intent.setdefault(member.settings.host, []).append((rec, change.add - rec.managed))
                    if not change.add <= rec.managed:  # the same set stays the same object (ledger memo)
                        rec.managed = rec.managed | change.add
            self.save(self.ledger)
            self.checkpoint("intent-saved")
            zones: dict[Hashable, list[tuple[Member, ChangeSet]]] = {}
            for member, changeset in todo:
                zones.setdefault(self.zones.zone_of(member.settings.owners[0]), []).append(
                    (member, changeset)
                )
            conflicted: list[Member] = []
            written: list[OwnerChange] = []
            for group in zones.values():
                whole = ChangeSet(tuple(c for _, cs in group for c in cs.changes))
                try:
                    self.zones.apply(whole)
                except ProviderConflict as exc:
                    # a write in steps: what its steps before the conflict committed is written
                    done = [
                        (m, cs)
                        for m, cs in group
                        if all(c.is_noop or c.owner in exc.written for c in cs.changes)
                    ]
                    record_applied(self.ledger, done, changed)
                    written.extend(c for _, cs in done for c in cs.changes)
                    for member in [m for m, _ in group if all(m is not d for d, _ in done)]:
                        if attempt == 2:
                            member.fail(exc)
                        else:
                            member.report.notes.append(f"conflict, re-planning once: {exc.message}")
                            conflicted.append(member)
                    continue
                except TlsaManagerError as exc:
                    for member, _ in group:
                        if exc.exit_code == ExitCode.USAGE:  # refused as bad input: nothing written
                            for rec, marked in intent.get(member.settings.host, []):
                                rec.managed = rec.managed - marked
                        member.fail(exc)
                    continue
                self.checkpoint("apply-returned")
                record_applied(self.ledger, group, changed)
                written.extend(whole.changes)
            if written:
                self.save(self.ledger)
                self.checkpoint("applied")
                seen.update(self.zones.wait_for_propagation(ChangeSet(tuple(written))) or {})
                self.checkpoint("propagated")
            if not conflicted:
                break
            current = self.replan(conflicted)
            latest.update(current)
        return latest, list(changed.values()), seen

    def deploy(self, member: Member, after: Plan) -> bool:
        """Deploy the host's staged chains whose gate passed; True if any went live."""
        report, ports = member.report, member.ports
        written = [c.result for cs in report.applied for c in cs.changes]
        deployed_any = False
        for gate in after.ready:
            self.checkpoint("gated")
            chain = gated_chain(ports, gate)
            if chain is None:
                report.notes.append(
                    f"{gate.chain}: not deployed, the staged file changed after its gate was computed "
                    "(the next run gates what it holds now)"
                )
                continue
            if any(result and not chain.covered_by(result) for result in written):
                report.notes.append(
                    f"{chain.label}: not deployed, a record kind just written does not match it"
                )
                continue
            journal = self.ledger.host(member.settings.host).deploys
            if self.ledger.host(member.settings.host).deploying(chain.key_type):
                kind = chain.key_type.upper()
                why = f"the previous {kind} deploy is not confirmed"
                pending = [k for k, e in journal.items() if e.deployed.key_type == chain.key_type]
                if all(k.startswith(PRESENTED) for k in pending):
                    why = f"the MTA presents another {kind} chain than the configured one (H27)"
                report.notes.append(f"{chain.label}: not deployed, {why}")
                continue
            self.checkpoint("before-deploy")
            previous = tuple(c for c in ports.chains().live if c.key_type == chain.key_type)
            journal[chain.label] = DeployIntent(chain, previous, ports.now())
            self.save(self.ledger)
            self.checkpoint("deploy-intent")
            try:
                ports.deploy(chain)
            except StagedChanged as exc:
                del journal[chain.label]
                self.save(self.ledger)
                report.notes.append(f"{chain.label}: not deployed, {exc.message}")
                continue
            settle_deploy(member, journal, chain.label)  # closed, or held one run (no reload, no probe)
            self.save(self.ledger)
            report.deployed.append(chain.label)
            deployed_any = True
            self.checkpoint("deployed")
        return deployed_any


def converge_run(
    members: Sequence[Member],
    zones: ZonePorts,
    ledger: LedgerData,
    save: Save,
    *,
    dry_run: bool = False,
    checkpoint: Checkpoint = _no_checkpoint,
) -> list[SyncReport]:
    """One sync of every host of a run, phase by phase (the caller holds the ledger lock).

    Errors that are not :class:`TlsaManagerError` (a crash) propagate; every expected
    failure stays in the report of the host it stopped."""
    started = time.monotonic()

    def step(name: str) -> None:
        log.info("%7.2f s  %s (%d hosts)", time.monotonic() - started, name, len(members))
        checkpoint(name)

    run = Run(members, zones, ledger, save, step)
    if not dry_run:
        _begin_runs(run.active(), ledger)
        _confirm_deploys(run.active(), ledger, save)
    first = plan_members(run.active(), zones, ledger, record=not dry_run)
    for member in members:
        if member.settings.host in first:
            member.report.plans.append(first[member.settings.host])
    if dry_run:
        return [m.report for m in members]
    # A run that writes saves these observations with its intent a moment later (a
    # crash in between loses only what the next run observes again).
    writes = any(not ChangeSet(plan.changes).is_noop for plan in first.values())
    if not writes:
        save(ledger)
    step("observed")
    after, changed, seen = run.apply(first)
    if writes and not changed:
        save(ledger)  # every write was refused or failed: the observations still go in
    # Observe again after the change, then decide deploys on fresh observations.
    if changed:
        after.update(run.replan(changed, seen))
        save(ledger)
    deployed: list[Member] = []
    for member in run.active():
        plan_now = after.get(member.settings.host)
        if plan_now is None or not plan_now.ready:
            continue
        try:
            if run.deploy(member, plan_now):
                deployed.append(member)
        except TlsaManagerError as exc:
            member.fail(exc)
    if deployed:
        cleanup = run.replan(deployed)
        save(ledger)
        _, removed, seen = run.apply(cleanup)
        if removed:
            # observe what the removal left, so the ledger (and `status`) shows what is served
            plan_members(run.active(removed), zones, ledger, record=True, seen=seen)
            save(ledger)
    return [m.report for m in members]


def converge(
    settings: HostSettings,
    ports: HostPorts,
    ledger: LedgerData,
    save: Save,
    *,
    dry_run: bool = False,
    checkpoint: Checkpoint = _no_checkpoint,
) -> SyncReport:
    """One sync of one host (the caller holds the ledger lock); raises what stopped it."""
    member = Member(settings, ports)
    converge_run([member], ports, ledger, save, dry_run=dry_run, checkpoint=checkpoint)
    if member.report.error is not None:
        raise member.report.error
    return member.report
