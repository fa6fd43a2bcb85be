"""``plan``, ``sync``, ``status``, ``export``: the configured hosts (docs/plan.md,
docs/sync.md, docs/status.md, docs/export.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tlsa_manager.cli.common import (
    Subparsers,
    add_host_flags,
    add_wait_lock,
    at_time,
    configured,
    emit_json,
    has_config,
    seconds,
    state_dir,
    write_lines,
)
from tlsa_manager.cli.output import report_failures, report_syncs, warn_notes, write_plan, write_status
from tlsa_manager.errors import ExitCode, TlsaManagerError, UsageError

if TYPE_CHECKING:
    from tlsa_manager.runner import HostRun

AT_HELP = {
    "plan": "plan as if it were this time (ISO 8601 with Z, +6h or -3h)",
    "status": "as if it were this time (ISO 8601 with Z, +6h or -3h)",
}


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    add_host_flags(p)
    if name in AT_HELP:
        p.add_argument("--at", help=AT_HELP[name])
    if name == "sync":
        p.add_argument("--dry-run", action="store_true", help="show the plan and stop")
        add_wait_lock(p, 0.0, "wait this long for another run's lock (default: fail at once)")
        p.add_argument(
            "--propagation-timeout",
            type=seconds(0.0),
            default=300.0,
            metavar="SECONDS",
            help="how long to wait for every server to serve a change (default 300)",
        )
    if name == "export":
        p.add_argument(
            "--format",
            choices=["zone", "nsupdate", "json"],
            help="zone lines (default), nsupdate input, or json (the same as --json)",
        )


def run(args: argparse.Namespace) -> int:
    commands = {"plan": plan, "sync": sync, "status": status, "export": export}
    return commands[args.command](args)


def open_runs(args: argparse.Namespace, at: float | None = None) -> list[HostRun]:
    """The runs of the hosts named (or all with --all), providers opened."""
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.runner import open_hosts

    config = configured(args)
    return open_hosts(
        config,
        list(getattr(args, "hosts", [])),
        bool(getattr(args, "all", False)),
        load_catalog(state_dir(args)),
        at=at,
        propagation_timeout=getattr(args, "propagation_timeout", 300.0),
        state_dir=state_dir(args),
    )


def plan(args: argparse.Namespace) -> int:
    from tlsa_manager.report import exit_code
    from tlsa_manager.runner import plan_hosts

    runs = open_runs(args, at_time(args))
    failures: list[tuple[str, TlsaManagerError]] = []
    plans = plan_hosts(runs, state_dir(args), failures if len(runs) > 1 else None)
    warn_notes(runs)
    if args.json:
        emit_json({"plans": [p.as_dict() for p in plans]})
    else:
        for item in plans:
            write_plan(item)
    failed = report_failures(failures, len(runs))
    return failed or exit_code(h for p in plans for h in p.hazards)


def sync(args: argparse.Namespace) -> int:
    from tlsa_manager.report import exit_code
    from tlsa_manager.runner import sync_hosts

    runs = open_runs(args)
    reports = sync_hosts(runs, state_dir(args), dry_run=args.dry_run, lock_wait=args.wait_lock)
    code = report_syncs(args, runs, reports, dry_run=args.dry_run)
    if args.dry_run and not any(r.error for r in reports):
        return exit_code(h for r in reports if r.first_plan for h in r.first_plan.hazards)
    return code


def status(args: argparse.Namespace) -> int:
    from tlsa_manager.runner import status_report

    config = configured(args) if has_config(args) else None
    at = at_time(args) if config is not None else None  # gates need a configuration
    report = status_report(config, args.hosts, state_dir(args), at)
    if args.json:
        emit_json(report.as_dict())
    else:
        write_status(report)
    return report.exit_code()


def export(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.export import export_records

    form = export_format(args)
    config = configured(args, publishing=False)  # its state_dir's catalog, as plan/sync/status
    report = export_records(config, args.hosts, bool(args.all), load_catalog(state_dir(args)))
    if form == "json":
        emit_json(report.as_dict())
    elif form == "nsupdate":
        write_lines(report.nsupdate_lines())
    else:
        write_lines(report.zone_lines())
    return ExitCode.OK


def export_format(args: argparse.Namespace) -> str:
    """``--json`` is ``--format json``; with another ``--format`` the user asked for two
    outputs at once, and either guess would hand a script the wrong one: a usage error."""
    if args.json and args.format not in (None, "json"):
        raise UsageError(
            f"export --format {args.format} --json: two output formats",
            f"leave out --json for {args.format} lines, or --format for JSON",
        )
    return "json" if args.json else str(args.format or "zone")
