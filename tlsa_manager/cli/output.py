"""What plan, sync and hook write: plans, per-host results, failures, notes.

The words come from :mod:`tlsa_manager.report` (shared with status); this module only
writes them and returns the exit code they add up to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tlsa_manager.cli.common import emit_json, quiet, warn, write_lines
from tlsa_manager.errors import ExitCode, TlsaManagerError

if TYPE_CHECKING:
    from tlsa_manager.engine import SyncReport
    from tlsa_manager.hazards import Hazard, Severity
    from tlsa_manager.planner import Plan
    from tlsa_manager.report import StatusReport
    from tlsa_manager.runner import HostRun


def write_exit_reasons(
    host: str,
    hazards: Sequence[Hazard],
    failures: Sequence[str] = (),
    failing: Sequence[Severity] | None = None,
) -> None:
    """Under ``-q`` the report is left out, but not why the exit code is not 0: each
    failure and each hazard of a ``failing`` severity (default fatal, risk) is one
    stderr line, ``tlsa-manager: HOST: ...``."""
    from tlsa_manager.report import FAILING

    for failure in failures:
        sys.stderr.write(f"tlsa-manager: {host}: {failure}\n")
    for hazard in hazards:
        if hazard.severity in (FAILING if failing is None else failing):
            sys.stderr.write(f"tlsa-manager: {host}: {hazard.one_line()}\n")


def write_plan(plan: Plan) -> None:
    from tlsa_manager.report import gate_line

    if quiet():
        write_exit_reasons(plan.host, plan.hazards)
        return
    reasons = dict(plan.reasons)
    sys.stdout.write(plan.summary() + "\n")
    for change in plan.changes:
        sys.stdout.write(f"  {change.owner.to_text()}  (TTL {change.ttl})\n")
        for record in sorted(change.add):
            sys.stdout.write(f"    + {record.to_text()}\n        {reasons.get(record.to_text(), '')}\n")
        for record in sorted(change.delete):
            sys.stdout.write(f"    - {record.to_text()}\n        matches nothing live, staged or next\n")
        if change.ttl_change:
            sys.stdout.write(f"    TTL {change.expected_ttl} -> {change.ttl}\n")
    for gate in plan.gates:
        sys.stdout.write(f"  deploy {gate_line(gate)}\n")
    for owner, text in plan.unmanaged:
        sys.stdout.write(f"  unmanaged, kept: {owner} {text}\n")
    for hazard in plan.hazards:
        sys.stdout.write(f"  {hazard.one_line()}\n")


def warn_notes(runs: Sequence[HostRun]) -> None:
    """The hosts' and providers' notes, each once (hosts of a fleet share providers)."""
    notes = (n for run in runs for n in run.ports.notes + list(getattr(run.ports.provider, "notes", [])))
    for note in dict.fromkeys(notes):
        warn(note)


def report_failures(failures: Sequence[tuple[str, TlsaManagerError]], total: int) -> int:
    """One stderr line per host that stopped, then which ones; the exit code they share
    (1 when they differ), 0 when none failed."""
    for host, error in failures:
        sys.stderr.write(f"tlsa-manager: error: {host}: {error.one_line()}\n")
    if not failures:
        return ExitCode.OK
    names = ", ".join(h for h, _ in failures)
    sys.stderr.write(f"tlsa-manager: {len(failures)} of {total} hosts failed: {names}\n")
    codes = {int(e.exit_code) for _, e in failures}
    return codes.pop() if len(codes) == 1 else ExitCode.FAILURE


def report_syncs(
    args: argparse.Namespace,
    runs: Sequence[HostRun],
    reports: Sequence[SyncReport],
    dry_run: bool = False,
    hook: bool = False,
) -> int:
    """What sync and hook print, and their exit code (report.exit_code)."""
    from tlsa_manager.report import FAILING, HOOK_FAILING, exit_code, sync_as_dict, sync_lines, ttl_changes

    checks: dict[str, dict[str, str]] = {run.spec.name: run.ports.checks for run in runs}
    warn_notes(runs)
    if args.json:
        emit_json({"hosts": [sync_as_dict(r, checks.get(r.host, {}), dry_run) for r in reports]})
    for report in reports:
        if args.json:
            break
        if report.error is not None:
            continue
        if report.first_plan is not None and dry_run:
            write_plan(report.first_plan)
            continue
        if quiet():
            hazards = report.last_plan.hazards if report.last_plan else ()
            write_exit_reasons(report.host, hazards, report.failures, HOOK_FAILING if hook else FAILING)
            continue
        write_lines(
            sync_lines(
                report.host,
                report.last_plan,
                sum(len(c.add) for cs in report.applied for c in cs.changes),
                sum(len(c.delete) for cs in report.applied for c in cs.changes),
                report.deployed,
                checks.get(report.host, {}),
                report.notes,
                ttl_changes(report.applied),
            )
        )
    failed = report_failures([(r.host, r.error) for r in reports if r.error], len(reports))
    return failed or exit_code(
        (h for r in reports if r.last_plan for h in r.last_plan.hazards),
        [f for r in reports for f in r.failures],
        HOOK_FAILING if hook else FAILING,
    )


def write_status(report: StatusReport) -> None:
    """What ``status`` prints: its lines, or under ``-q`` only why the exit code is not 0
    (the unconfirmed deploys and the failing hazards of :meth:`StatusReport.exit_code`)."""
    if not quiet():
        write_lines(report.lines())
        return
    for plan in report.plans or ():
        write_exit_reasons(plan.host, plan.hazards)
    for item in report.as_dict()["hosts"]:
        deploys = item["unconfirmed_deploys"]
        write_exit_reasons(item["host"], (), [f"deploy of {d['deployed']} not confirmed" for d in deploys])
