"""The deploy journal, and what a run does with it before it plans.

A deploy renames a staged file over the live one; until the reload is confirmed the
MTA may still present the chain it replaced, which then exists nowhere but in the
journal (:class:`~tlsa_manager.state.DeployIntent`).  Its records stay published
while the entry is open.  Before planning, a run checks whether the history can be
trusted (clock steps), probes the MTA when there is no history, and re-runs the
reload and probe of every deploy a killed or failed run left unconfirmed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import dns.name

from tlsa_manager.clock import ClockSample
from tlsa_manager.clock import future as clock_future
from tlsa_manager.clock import signed_future as clock_signed_future
from tlsa_manager.clock import step as clock_step
from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.facts import ChainFacts
from tlsa_manager.gates import gate_time
from tlsa_manager.hazards import MTA_OTHER_CHAIN, Hazard
from tlsa_manager.observations import History, ServerView
from tlsa_manager.plans import Gate, OwnerInput, chain_identity, name_text
from tlsa_manager.ports import HostPorts, HostSettings, Member, Save, SyncReport
from tlsa_manager.provider import ChangeSet, RRset
from tlsa_manager.state import HELD, PRESENTED, DeployIntent, LedgerData, deployed_label


def unconfirmed(ledger: LedgerData, host: str) -> tuple[ChainFacts, ...]:
    """Chains the MTA may still present: replaced by a deploy whose reload is not confirmed."""
    return tuple(
        replace(chain, label=_previous_label(label, chain))
        for label, entry in ledger.host(host).deploys.items()
        for chain in entry.previous
    )


def _previous_label(label: str, chain: ChainFacts) -> str:
    if label.startswith(PRESENTED):
        return chain.label
    if label.startswith(HELD):
        return f"previous {chain.label} (kept until the next sync: {deployed_label(label)} was not reloaded)"
    return f"previous {chain.label} (deploy of {label} not confirmed)"


def _replaced_records(member: Member, entry: DeployIntent) -> bool:
    """Does a replaced chain need a record of the host's kinds the deployed one does not
    (a new key, a new issuer, any renewal under "3 0 1")?  A renewal with the same key
    and issuer has nothing to keep."""
    kinds = member.settings.policy.kinds
    return any(old.matching(k) - entry.deployed.matching(k) for old in entry.previous for k in kinds)


def settle_deploy(member: Member, journal: dict[str, DeployIntent], label: str) -> None:
    """After a deploy renamed the file in place and its reload and probe (if any) passed:
    close its journal entry, so the records of the chain it replaced may go in this run.

    With no reload command and no probe nothing made the MTA load the new file and
    nothing can show which chain it presents: it may present the replaced one until it
    restarts, and a record that matches what a server may still present must not go
    (dane-rules I-3, C7).  The entry then stays open, under :data:`HELD`, until the next
    sync: its records stay for this run, and the next run closes it before it plans.  A
    renewal whose records are the replaced chain's (same key, same issuer) holds nothing."""
    entry = journal.pop(label)
    if member.ports.confirms_deploys or not _replaced_records(member, entry):
        return
    journal[f"{HELD} {label}"] = entry
    replaced = ", ".join(c.label for c in entry.previous) or "chain"
    member.report.notes.append(
        f"{label}: the records of the replaced {replaced} stay until the next sync: there is no "
        "reload command and no probe, so nothing shows when the MTA presents the new chain "
        "(reload the MTA before then, or set reload, and probe to verify)"
    )


def mismatch_hazards(ledger: LedgerData, host: str) -> tuple[Hazard, ...]:
    """H27: the MTA presents a chain other than the configured live file (blocks deploys)."""
    return tuple(
        MTA_OTHER_CHAIN.hazard(
            f"the MTA presents another {chain.key_type.upper()} chain than the configured "
            f"{entry.deployed.label}; its records stay and no {chain.key_type.upper()} deploy "
            "happens until it presents that file",
            "point the MTA at the configured certificate file and reload it (or fix cert/certs)",
            host,
        )
        for label, entry in ledger.host(host).deploys.items()
        if label.startswith(PRESENTED)
        for chain in entry.previous
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
    times += [e.since for e in host.deploys.values()]
    why = clock_step(ClockSample.from_json(host.clock), sample, settings.slack) or clock_future(
        times, sample.wall, settings.slack
    )
    host.clock = sample.as_json()
    if why:
        _restart_history(ledger, settings.host, why, report)
    if existed and not why:
        if _orphaned_keys(settings, ports, ledger):
            found = ports.presented()  # None: no probe configured, or it failed
            if found is not None:
                _journal_presented(settings, ports, ledger, report, sample.wall, found)
        return
    _probe_after_restart(settings, ports, ledger, report, sample.wall)


def _orphaned_keys(settings: HostSettings, ports: HostPorts, ledger: LedgerData) -> bool:
    """Would this run remove a "3 x x" record of ours, its key in no file any more?

    Right after a deploy of ours the journal holds the replaced chain until the MTA is
    seen presenting the new one.  A key gone from the files otherwise was replaced
    behind the tool's back (a live file copied in by hand, without a reload): the MTA
    may still present it, and its record must not go (I-3) before a probe says."""
    chains = ports.chains()
    known = [*chains.live, *chains.staged, *chains.next_keys, *unconfirmed(ledger, settings.host)]
    return any(
        record.usage == 3 and not any(record in chain.matching(record.params) for chain in known)
        for owner in ledger.host(settings.host).owners.values()
        for record in owner.managed
    )


HISTORY_RESTARTS = "the history starts again; gates wait as after a lost ledger"


def _restart_history(ledger: LedgerData, host: str, why: str, report: SyncReport) -> None:
    report.notes.append(f"{why}: {HISTORY_RESTARTS}")
    for rec in ledger.host(host).owners.values():
        rec.history = History()


def clock_behind_dns(
    member: Member, views: Mapping[dns.name.Name, Sequence[ServerView]], ledger: LedgerData
) -> bool:
    """A clock behind the DNS's signers (an RRSIG made after our "now") is a step not
    yet taken: the history restarts before anything is planned on it (once a run).
    True when it restarted (the probe may have journalled what the MTA presents)."""
    settings, report = member.settings, member.report
    signed = [v.signed_at for o in settings.owners for v in views.get(o, ()) if v.signed_at is not None]
    if not signed or any(HISTORY_RESTARTS in note for note in report.notes):
        return False  # nothing signed (no clock to read), or restarted already
    now = member.ports.now()
    why = clock_signed_future(signed, now, settings.slack)
    if not why:
        return False
    _restart_history(ledger, settings.host, why, report)
    _probe_after_restart(settings, member.ports, ledger, report, now)
    return True


def _probe_after_restart(
    settings: HostSettings, ports: HostPorts, ledger: LedgerData, report: SyncReport, wall: float
) -> None:
    """With no history: what does the MTA present (journalled if not the live file)?"""
    host = ledger.host(settings.host)
    found = ports.presented()
    if found is None:
        host.unverified = True
        problem = getattr(ports, "probe_problem", None)  # a configured probe that failed
        report.notes.append(
            f"no history and the MTA cannot be probed ({problem or 'set probe = ...'}): "
            "only records this ledger added will be removed"
        )
        return
    host.unverified = False
    _journal_presented(settings, ports, ledger, report, wall, found)


def _journal_presented(
    settings: HostSettings,
    ports: HostPorts,
    ledger: LedgerData,
    report: SyncReport,
    wall: float,
    found: Sequence[ChainFacts],
) -> None:
    """A chain the MTA presents that no live file holds goes into the journal (H27):
    its records stay and deploys of its key type wait until the MTA presents the file."""
    host = ledger.host(settings.host)
    live = ports.chains().live
    for chain in found:
        if any(chain_identity(chain) == chain_identity(c) for c in live):
            continue
        same = [c for c in live if c.key_type == chain.key_type]
        if not same:
            report.notes.append(f"the MTA presents a {chain.key_type.upper()} chain no cert/certs file holds")
            continue
        host.deploys[f"{PRESENTED} ({chain.key_type})"] = DeployIntent(
            same[0], (replace(chain, label=f"{chain.key_type} chain {PRESENTED}"),), wall
        )


def begin_runs(members: list[Member], ledger: LedgerData) -> None:
    for member in members:
        try:
            begin_run(member.settings, member.ports, ledger, member.report)
        except TlsaManagerError as exc:
            member.fail(exc)


def confirm_deploys(members: list[Member], ledger: LedgerData, save: Save) -> None:
    """Finish what a killed or failed run left: reload and probe until the server
    presents the deployed chain; only then may the records of the chain it replaced go."""
    for member in members:
        journal = ledger.host(member.settings.host).deploys
        for label, entry in list(journal.items()):
            try:
                if label.startswith(PRESENTED) and not _live_gate_passed(member, ledger, entry.deployed):
                    _presents_live(member.ports, entry.deployed)
                else:
                    member.ports.confirm(entry.deployed)
            except TlsaManagerError as exc:
                if label.startswith(PRESENTED):  # no deploy of ours: H27 says it, not a failure
                    member.report.notes.append(
                        f"the configured {entry.deployed.label} is not confirmed live: "
                        "the MTA still presents another chain (H27)"
                    )
                    continue
                if label.startswith(HELD):  # a probe configured since failed: unconfirmed now
                    journal[deployed_label(label)] = journal.pop(label)
                    label = deployed_label(label)
                member.report.notes.append(
                    f"the deploy of {label} is not confirmed ({exc.message}); "
                    "the records of the chain it replaced stay"
                )
                member.report.failures.append(f"the deploy of {label} is not confirmed")
                continue
            del journal[label]
            save(ledger)
            if label.startswith(PRESENTED):
                configured = entry.deployed.label
                member.report.notes.append(f"the MTA now presents the configured {configured} (H27 is over)")
                continue
            if label.startswith(HELD):
                deployed = deployed_label(label)
                member.report.notes.append(
                    f"the deploy of {deployed}: the records of the chain it replaced, kept until "
                    f"this sync, go now ({checks_of(member.ports, deployed)})"
                )
                continue
            checked = checks_of(member.ports, label)
            verb = "confirmed" if checked.startswith(("verified", "the server presents")) else "finished"
            member.report.notes.append(f"{verb} the deploy of {label}: {checked}")


def _live_gate_passed(member: Member, ledger: LedgerData, configured: ChainFacts) -> bool:
    """May the tool reload the MTA so that it presents the live files of this key type?

    Not a deploy of ours put them there (copied in by hand, or found so with no
    history): only once their records have been served as long as a staged chain's
    must (the one gate function, on the history kept so far) may a reload make them
    live (I-2); before that the run only probes (:func:`_presents_live`)."""
    settings = member.settings
    host = ledger.host(settings.host)
    live = [c for c in member.ports.chains().live if c.key_type == configured.key_type]
    now = member.ports.now()
    for owner in settings.owners:
        rec = host.owners.get(name_text(owner))
        latest = rec.history.latest() if rec is not None else None
        view = next((v for v in latest.views if v.records is not None), None) if latest else None
        if rec is None or latest is None or view is None or view.records is None:
            return False
        seen = OwnerInput(owner, RRset(owner, view.records, view.ttl), latest.views, rec.history)
        for chain in live:
            gate = gate_time(seen, chain, settings)
            if gate.opens_at is None or gate.opens_at > now:
                return False
    return bool(live)


def _presents_live(ports: HostPorts, configured: ChainFacts) -> None:
    """H27 ends when a probe shows the MTA presenting a live file of that key type.

    Probed, not reloaded, while the live file's gate is closed (:func:`_live_gate_passed`):
    a reload by the tool would make it live before its records have been served for two
    TTLs (I-2)."""
    found = ports.presented()
    live = [c for c in ports.chains().live if c.key_type == configured.key_type]
    if found is None or not any(chain_identity(c) == chain_identity(f) for c in live for f in found):
        raise TlsaManagerError(
            f"the MTA does not present the configured {configured.label}",
            "reload the MTA once the file's records have been served for two TTLs",
        )


def checks_of(ports: HostPorts, label: str) -> str:
    """What the ports checked after the reload (a probe, or nothing), in words."""
    checks: dict[str, str] = getattr(ports, "checks", {})
    return checks.get(label, "the server presents it")


def gated_chain(ports: HostPorts, gate: Gate) -> ChainFacts | None:
    """The staged chain re-read now, if it is exactly the one whose gate passed (else None)."""
    return next(
        (c for c in ports.chains().staged if c.label == gate.chain and chain_identity(c) == gate.identity),
        None,
    )


def record_applied(
    ledger: LedgerData, group: Sequence[tuple[Member, ChangeSet]], changed: dict[str, Member]
) -> None:
    """Written: in each host's report (and ``changed``), and the records it deleted are
    no longer the ledger's."""
    for member, changeset in group:
        member.report.applied.append(changeset)
        changed[member.settings.host] = member
        host = ledger.host(member.settings.host)
        for change in changeset.changes:
            rec = host.owner(name_text(change.owner))
            if change.delete & rec.managed:
                rec.managed = rec.managed - change.delete
