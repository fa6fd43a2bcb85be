"""What plan, status, sync and hook say, built in one place so that they agree (no printing).

Issue 13: an operator acts on these words, so every command words a gate the same
way (from the planner's one gate-time function, to the second), claims a check only
when one ran, and maps what it found to one exit-code contract (docs/cli.md):

- 1 when something the run tried did not finish (a deploy whose reload or probe
  fails, so the chain it replaced stays live);
- else 4 when a hazard of severity fatal or risk is found;
- else 0 (a pending gate is not an error; info hazards never change the code).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tlsa_manager.config import HostSpec
from tlsa_manager.errors import ExitCode
from tlsa_manager.hazards import Hazard, Severity
from tlsa_manager.ledger import LedgerData
from tlsa_manager.planner import Gate, Plan, iso, short_time
from tlsa_manager.state import HELD, PRESENTED, deployed_label

if TYPE_CHECKING:
    from tlsa_manager.engine import SyncReport
    from tlsa_manager.provider import ChangeSet

FAILING = (Severity.FATAL, Severity.RISK)
# An ACME client treats any non-zero exit of its hook as a failed renewal step
# (dehydrated stops there): right after the hook's own write a secondary that has not
# caught up yet (H18 risk) is the normal case, which the timer's next sync handles.
HOOK_FAILING = (Severity.FATAL,)


def exit_code(
    hazards: Iterable[Hazard], failures: Sequence[str] = (), failing: Sequence[Severity] = FAILING
) -> ExitCode:
    """The one contract: failure 1, else a hazard of a ``failing`` severity 4, else 0."""
    if failures:
        return ExitCode.FAILURE
    if any(h.severity in failing for h in hazards):
        return ExitCode.HAZARD
    return ExitCode.OK


def gate_line(gate: Gate) -> str:
    """``staged ecdsa.pem: may go live not before 2026-11-25 14:05:07Z (served by ...)``."""
    if gate.ready:
        return f"{gate.chain}: may go live now ({gate.reason})"
    if gate.opens_at is not None:
        return f"{gate.chain}: may go live not before {short_time(gate.opens_at)} ({gate.reason})"
    return f"{gate.chain}: may not go live yet ({gate.reason})"


def sync_lines(
    host: str,
    plan: Plan | None,
    added: int,
    removed: int,
    deployed: Sequence[str],
    checks: dict[str, str],
    notes: Sequence[str],
    ttls: Sequence[str] = (),
) -> list[str]:
    """The lines `sync` and `hook` print for one host (``ttls``: :func:`ttl_changes`)."""
    done = []
    if added or removed:
        done.append(f"{added} added, {removed} removed")
    done.extend(ttls)
    for label in deployed:
        done.append(f"deployed {label} ({checks.get(label, 'the server presents it')})")
    lines = [f"{host}: {'; '.join(done) if done else 'nothing to change'}"]
    for gate in plan.gates if plan else ():
        if not gate.ready:
            lines.append(f"  {gate_line(gate)}; it stays staged, the next sync deploys it")
    lines += [f"  note: {note}" for note in notes]
    lines += [f"  {hazard.one_line()}" for hazard in (plan.hazards if plan else ())]
    return lines


def ttl_changes(applied: Sequence[ChangeSet]) -> list[str]:
    """``TTL 300 -> 3600`` per distinct TTL step written (a step of its own, so without
    additions or removals): a sync that wrote one must not say "nothing to change"."""
    steps: dict[tuple[int | None, int], int] = {}
    for changeset in applied:
        for change in changeset.changes:
            if change.ttl_change:
                steps[(change.expected_ttl, change.ttl)] = steps.get((change.expected_ttl, change.ttl), 0) + 1
    return [
        f"TTL {old} -> {new}" + (f" ({count} owners)" if count > 1 else "")
        for (old, new), count in sorted(steps.items(), key=str)
    ]


@dataclass(frozen=True)
class StatusReport:
    """What `status` shows: per host the servers' last observation with its time, the
    managed records, gates (the same function as plan/sync), hazards, open deploys, and
    which issuer catalog is in use.  Without a configuration (``specs``/``plans`` None)
    the ledger alone: no gates."""

    names: Sequence[str]
    data: LedgerData
    plans: Sequence[Plan] | None
    state_dir: str
    specs: Sequence[HostSpec] | None
    #: freshness.catalog_summary: origin, as of, age
    catalog: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        by_name = {spec.name: spec for spec in self.specs or ()}
        hosts = [self._host(index, name, by_name.get(name)) for index, name in enumerate(self.names)]
        return {
            "state_dir": self.state_dir,
            "configured": self.specs is not None,
            "hosts": hosts,
            "catalog": self.catalog,
        }

    def _host(self, index: int, name: str, spec: HostSpec | None) -> dict[str, Any]:
        host = self.data.hosts.get(name)
        plan = self.plans[index] if self.plans is not None else None
        owners = {}
        for owner, rec in sorted(host.owners.items()) if host else ():
            latest = rec.history.latest()
            owners[owner] = {
                "managed": sorted(r.to_text() for r in rec.managed),
                "observed_at": iso(latest.last) if latest else None,
                "servers": {
                    v.server: (None if v.records is None else sorted(r.to_text() for r in v.records))
                    for v in (latest.views if latest else ())
                },
                "history_entries": len(rec.history.entries),
            }
        unconfirmed = [
            {"deployed": label, "since": iso(entry.since), "replaced": len(entry.previous)}
            for label, entry in (host.deploys.items() if host else ())
            if label in self._deploys(name)
        ]
        held = [  # not reloaded, no probe: kept until the next sync on purpose, no failure
            {"deployed": deployed_label(label), "since": iso(entry.since), "replaced": len(entry.previous)}
            for label, entry in (host.deploys.items() if host else ())
            if label.startswith(HELD)
        ]
        item: dict[str, Any] = {
            "host": name,
            "owners": owners,
            "gates": [g.as_dict() | {"line": gate_line(g)} for g in plan.gates] if plan else [],
            "hazards": [h.as_dict() | {"line": h.one_line()} for h in plan.hazards] if plan else [],
            "unconfirmed_deploys": unconfirmed,
            "held_deploys": held,
        }
        if spec is not None:  # None: reloaded after a deploy, never verified
            item["deploys_verified_by"] = f"probe {spec.probe}" if spec.probe else None
        return item

    def lines(self) -> list[str]:
        from tlsa_manager.freshness import catalog_line

        document = self.as_dict()
        return [catalog_line(self.catalog), *status_lines(document)]

    def exit_code(self) -> ExitCode:
        failures = [label for name in self.names for label in self._deploys(name)]
        return exit_code([h for p in self.plans or () for h in p.hazards], failures)

    def _deploys(self, name: str) -> list[str]:
        """The host's unconfirmed deploys of ours: a chain the MTA presents on its own
        (journalled under PRESENTED) is no deploy of ours; the plan's H27 says it.  A
        deploy held until the next sync (HELD: no reload, no probe) is no failure."""
        host = self.data.hosts.get(name)
        return [label for label in host.deploys if not label.startswith((PRESENTED, HELD))] if host else []


def sync_as_dict(report: SyncReport, checks: dict[str, str], dry_run: bool) -> dict[str, Any]:
    """One host of `sync --json` / `hook --json`: its plans, what was applied and deployed."""
    return {
        "host": report.host,
        "dry_run": dry_run,
        "plans": [p.as_dict() for p in report.plans],
        "applied": [len(cs.changes) for cs in report.applied],
        "deployed": report.deployed,
        "checks": checks,
        "notes": report.notes,
        "error": report.error.one_line() if report.error else None,
        "failures": report.failures,
    }


def status_lines(document: dict[str, Any]) -> list[str]:
    lines = []
    if not document["configured"]:
        state_dir = document["state_dir"]
        lines.append(
            f"# from the ledger in {state_dir} only: give --config for deploy gates"
            if document["hosts"]
            else f"# the ledger in {state_dir} knows no host yet: run sync first"
        )
    for item in document["hosts"]:
        lines.append(f"{item['host']}:")
        if not item["owners"]:
            lines.append("  never synced (no history: deploy gates start closed)")
        for owner, info in item["owners"].items():
            lines.append(f"  {owner} as last observed at {info['observed_at']}:")
            for server, records in info["servers"].items():
                served = "no answer" if records is None else f"{len(records)} record(s)"
                lines.append(f"    {server}: {served}")
            for record in info["managed"]:
                lines.append(f"    managed: {record}")
            any_server = {r for records in info["servers"].values() if records for r in records}
            for record in sorted(any_server - set(info["managed"])):  # someone else's, or by hand
                lines.append(f"    served, not managed: {record}")
        for gate in item["gates"]:
            lines.append(f"  {gate['line']}")
        for deploy in item["unconfirmed_deploys"]:
            lines.append(
                f"  deploy of {deploy['deployed']} since {deploy['since']} not confirmed (reload or probe "
                "did not finish): the replaced chain's records stay until the next sync confirms it"
            )
        for deploy in item["held_deploys"]:
            lines.append(
                f"  deploy of {deploy['deployed']} since {deploy['since']} was not reloaded (no reload "
                "command, no probe): the replaced chain's records stay until the next sync"
            )
        if "deploys_verified_by" in item and item["deploys_verified_by"] is None:
            lines.append("  deploys are not verified: no probe configured (set probe = ADDRESS)")
        for hazard in item["hazards"]:
            lines.append(f"  {hazard['line']}")
    return lines
