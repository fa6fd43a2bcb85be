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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import dns.name

from tlsa_manager.clock import ClockSample
from tlsa_manager.clock import future as clock_future
from tlsa_manager.clock import step as clock_step
from tlsa_manager.errors import ProviderConflict, TlsaManagerError
from tlsa_manager.facts import ChainFacts, chain_from_json, chain_to_json
from tlsa_manager.hazards import MTA_OTHER_CHAIN, Hazard
from tlsa_manager.ledger import PRESENTED, LedgerData
from tlsa_manager.observations import History, ServerView
from tlsa_manager.planner import (
    DEFAULT_SLACK,
    DEFAULT_TTL_CEILING,
    Gate,
    OwnerInput,
    Plan,
    PlanInput,
    chain_identity,
    name_text,
    plan,
)
from tlsa_manager.policy import HostPolicy, IssuerFacts, desired
from tlsa_manager.provider import ChangeSet, OwnerChange, RRset

log = logging.getLogger(__name__)

Views = Mapping[dns.name.Name, tuple[ServerView, ...]]


@dataclass(frozen=True)
class HostChains:
    live: tuple[ChainFacts, ...]
    staged: tuple[ChainFacts, ...] = ()
    next_keys: tuple[ChainFacts, ...] = ()


class ZonePorts(Protocol):
    """Records of many owners at once, possibly in many zones (one run)."""

    def zone_of(self, owner: dns.name.Name) -> Hashable:
        """The unit of one change set and of failure: owners of one zone at one provider."""

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]: ...

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]: ...

    def apply(self, changeset: ChangeSet) -> None: ...

    def wait_for_propagation(self, changeset: ChangeSet) -> Views | None:
        """Wait until every server serves the change (bounded).  Returns the last
        observation of the owners seen served by every server (the engine observes the
        others again), or None."""


class HostPorts(ZonePorts, Protocol):
    """The outside world of one host, as the engine sees it."""

    def chains(self) -> HostChains: ...

    def deploy(self, chain: ChainFacts) -> None:
        """Put a staged chain live and reload; raise if the server does not present it."""

    def confirm(self, chain: ChainFacts) -> None:
        """Reload again; raise unless the server presents ``chain`` or a current live chain."""

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """What the MTA presents now on the host's own port, per key type; None if it cannot be asked."""

    def read_clocks(self) -> ClockSample:
        """The wall clock with the boot-time clock, to detect steps (tlsa_manager.clock)."""

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
    ttl_ceiling: int = DEFAULT_TTL_CEILING
    propagation_delay: float | None = None


@dataclass
class SyncReport:
    host: str
    plans: list[Plan] = field(default_factory=list)
    applied: list[ChangeSet] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: why this host stopped early (its own problem or its zone's); None when it finished
    error: TlsaManagerError | None = None
    #: what this run tried and could not finish (an unconfirmed deploy): exit code 1
    failures: list[str] = field(default_factory=list)

    @property
    def first_plan(self) -> Plan | None:
        return self.plans[0] if self.plans else None

    @property
    def last_plan(self) -> Plan | None:
        return self.plans[-1] if self.plans else None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class Member:
    """One host of a run: its settings, its ports, its report."""

    settings: HostSettings
    ports: HostPorts
    report: SyncReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = SyncReport(self.settings.host)


class StagedChanged(TlsaManagerError):
    """The staged file no longer holds the chain whose gate passed: nothing was deployed."""


Checkpoint = Callable[[str], None]
Save = Callable[[LedgerData], None]


def _no_checkpoint(step: str) -> None:
    return None


def unconfirmed(ledger: LedgerData, host: str) -> tuple[ChainFacts, ...]:
    """Chains the MTA may still present: replaced by a deploy whose reload is not confirmed."""
    return tuple(
        replace(chain, label=chain.label if label.startswith(PRESENTED)
                else f"previous {chain.label} (deploy of {label} not confirmed)")
        for label, entry in ledger.host(host).deploys.items()
        for chain in map(chain_from_json, entry["previous"])
    )


def _fail(member: Member, exc: TlsaManagerError) -> None:
    if member.report.error is None:
        member.report.error = exc
        log.debug("%s stops: %s", member.settings.host, exc.message)


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
            found = member.ports.chains()
        except TlsaManagerError as exc:
            _fail(member, exc)
            continue
        extra = unconfirmed(ledger, member.settings.host)
        chains[member.settings.host] = HostChains(found.live + extra, found.staged, found.next_keys)
    ready = [m for m in members if m.settings.host in chains]
    owners = [o for m in ready for o in m.settings.owners]
    published: dict[dns.name.Name, RRset] = {}
    views: dict[dns.name.Name, tuple[ServerView, ...]] = {}
    broken: dict[dns.name.Name, TlsaManagerError] = {}
    for group in _by_zone(zones, owners).values():
        try:
            published.update(zones.read(group))
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
            _fail(member, problem)
            continue
        plans[settings.host] = _plan_host(
            settings, chains[settings.host], member.ports.now(), published, views, ledger, record
        )
    return plans


def _plan_host(
    settings: HostSettings,
    chains: HostChains,
    now: float,
    published: Mapping[dns.name.Name, RRset],
    views: Views,
    ledger: LedgerData,
    record: bool,
) -> Plan:
    host = ledger.host(settings.host)
    owners = []
    for owner in settings.owners:
        rec = host.owner(name_text(owner))
        history = rec.history.observe(now, views.get(owner, ()), settings.slack)
        if record:
            rec.history = history
        rrset = published.get(owner, RRset(owner))
        # After a lost history nobody can vouch for the provider's marks: only what this
        # ledger added may go, until a probe shows what the MTA presents.
        marks = frozenset() if host.unverified else rrset.managed
        owners.append(OwnerInput(owner, rrset, views.get(owner, ()), history, rec.managed | marks))
    unknown = host.unverified and any(o.history.blind for o in owners)
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
            ttl_ceiling=settings.ttl_ceiling,
            history_unknown=unknown,
            propagation_delay=settings.propagation_delay,
            notices=mismatch_hazards(ledger, settings.host),
        )
    )


def mismatch_hazards(ledger: LedgerData, host: str) -> tuple[Hazard, ...]:
    """H27: the MTA presents a chain other than the configured live file (blocks deploys)."""
    return tuple(
        MTA_OTHER_CHAIN.hazard(
            f"the MTA presents another {chain.key_type.upper()} chain than the configured "
            f"{entry['deployed']['label']}; its records stay and no {chain.key_type.upper()} deploy "
            "happens until it presents that file",
            "point the MTA at the configured certificate file and reload it (or fix cert/certs)",
            host,
        )
        for label, entry in ledger.host(host).deploys.items()
        if label.startswith(PRESENTED)
        for chain in map(chain_from_json, entry["previous"])
    )


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
                    _fail(member, exc)
                    continue
                todo.append((member, changeset))
            if not todo:
                break
            for member, changeset in todo:
                host = self.ledger.host(member.settings.host)
                for change in changeset.changes:
                    rec = host.owner(change.owner.to_text())
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
                    for member, _ in group:
                        if attempt == 2:
                            _fail(member, exc)
                        else:
                            member.report.notes.append(f"conflict, re-planning once: {exc.message}")
                            conflicted.append(member)
                    continue
                except TlsaManagerError as exc:
                    for member, _ in group:
                        _fail(member, exc)
                    continue
                self.checkpoint("apply-returned")
                for member, changeset in group:
                    member.report.applied.append(changeset)
                    changed[member.settings.host] = member
                    host = self.ledger.host(member.settings.host)
                    for change in changeset.changes:
                        rec = host.owner(change.owner.to_text())
                        rec.managed = rec.managed - change.delete
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
            pending = [k for k, e in journal.items() if e["deployed"]["key_type"] == chain.key_type]
            if pending:
                kind = chain.key_type.upper()
                why = f"the previous {kind} deploy is not confirmed"
                if all(k.startswith(PRESENTED) for k in pending):
                    why = f"the MTA presents another {kind} chain than the configured one (H27)"
                report.notes.append(f"{chain.label}: not deployed, {why}")
                continue
            self.checkpoint("before-deploy")
            journal[chain.label] = {
                "deployed": chain_to_json(chain),
                "previous": [chain_to_json(c) for c in ports.chains().live if c.key_type == chain.key_type],
                "since": ports.now(),
            }
            self.save(self.ledger)
            self.checkpoint("deploy-intent")
            try:
                ports.deploy(chain)
            except StagedChanged as exc:
                del journal[chain.label]
                self.save(self.ledger)
                report.notes.append(f"{chain.label}: not deployed, {exc.message}")
                continue
            del journal[chain.label]
            self.save(self.ledger)
            report.deployed.append(chain.label)
            deployed_any = True
            self.checkpoint("deployed")
        return deployed_any


def gated_chain(ports: HostPorts, gate: Gate) -> ChainFacts | None:
    """The staged chain re-read now, if it is exactly the one whose gate passed (else None)."""
    return next(
        (c for c in ports.chains().staged if c.label == gate.chain and chain_identity(c) == gate.identity),
        None,
    )


def begin_run(settings: HostSettings, ports: HostPorts, ledger: LedgerData, report: SyncReport) -> None:
    """Before anything is planned: can the history be trusted, and what does the MTA present?

    A clock step (wall clock against the boot-time clock since the last run, or ledger
    times in the future) starts a new, blind history, as a lost ledger does.  With no
    history (first run, lost ledger, clock step) the MTA is probed before anything is
    published: a chain it presents that is not the configured live file goes into the
    deploy journal, so its records are published and kept and deploys of its key type
    wait (H27) until a later probe shows the live file.
    """
    existed = settings.host in ledger.hosts and any(
        o.history.entries for o in ledger.hosts[settings.host].owners.values()
    )
    host = ledger.host(settings.host)
    sample = ports.read_clocks()
    times = [t for o in host.owners.values() for e in o.history.entries for t in (e.first, e.last)]
    times += [float(e.get("since", 0)) for e in host.deploys.values()]
    why = clock_step(ClockSample.from_json(host.clock), sample, settings.slack) or clock_future(
        times, sample.wall, settings.slack
    )
    host.clock = sample.as_json()
    if why:
        report.notes.append(f"{why}: the history starts again; gates wait as after a lost ledger")
        for rec in host.owners.values():
            rec.history = History()
    if existed and not why:
        return
    found = ports.presented()
    if found is None:
        host.unverified = True
        report.notes.append(
            "no history and the MTA cannot be probed (set probe = ...): "
            "only records this ledger added will be removed"
        )
        return
    host.unverified = False
    live = ports.chains().live
    for chain in found:
        if any(chain_identity(chain) == chain_identity(c) for c in live):
            continue
        same = [c for c in live if c.key_type == chain.key_type]
        if not same:
            report.notes.append(f"the MTA presents a {chain.key_type.upper()} chain no cert/certs file holds")
            continue
        host.deploys[f"{PRESENTED} ({chain.key_type})"] = {
            "deployed": chain_to_json(same[0]),
            "previous": [chain_to_json(replace(chain, label=f"{chain.key_type} chain {PRESENTED}"))],
            "since": sample.wall,
        }


def _begin_runs(run: Run) -> None:
    for member in run.active():
        try:
            begin_run(member.settings, member.ports, run.ledger, member.report)
        except TlsaManagerError as exc:
            _fail(member, exc)


def _confirm_deploys(run: Run) -> None:
    """Finish what a killed or failed run left: reload and probe until the server
    presents the deployed chain; only then may the records of the chain it replaced go."""
    for member in run.active():
        journal = run.ledger.host(member.settings.host).deploys
        for label, entry in list(journal.items()):
            try:
                member.ports.confirm(chain_from_json(entry["deployed"]))
            except TlsaManagerError as exc:
                if label.startswith(PRESENTED):  # no deploy of ours: H27 says it, not a failure
                    member.report.notes.append(
                        f"the configured {entry['deployed']['label']} is not confirmed live: "
                        f"the MTA still presents another chain (H27)"
                    )
                    continue
                member.report.notes.append(
                    f"the deploy of {label} is not confirmed ({exc.message}); "
                    "the records of the chain it replaced stay"
                )
                member.report.failures.append(f"the deploy of {label} is not confirmed")
                continue
            del journal[label]
            run.save(run.ledger)
            if label.startswith(PRESENTED):
                configured = entry["deployed"]["label"]
                member.report.notes.append(f"the MTA now presents the configured {configured} (H27 is over)")
                continue
            checked = _checked(member.ports, label)
            verb = "confirmed" if checked.startswith(("verified", "the server presents")) else "finished"
            member.report.notes.append(f"{verb} the deploy of {label}: {checked}")


def _checked(ports: HostPorts, label: str) -> str:
    """What the ports checked after the reload (a probe, or nothing), in words."""
    checks: dict[str, str] = getattr(ports, "checks", {})
    return checks.get(label, "the server presents it")


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
        _begin_runs(run)
        _confirm_deploys(run)
    first = plan_members(run.active(), zones, ledger, record=not dry_run)
    for member in members:
        if member.settings.host in first:
            member.report.plans.append(first[member.settings.host])
    if dry_run:
        return [m.report for m in members]
    save(ledger)
    step("observed")
    after, changed, seen = run.apply(first)
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
            _fail(member, exc)
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
