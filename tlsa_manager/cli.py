"""The ``tlsa-manager`` command: argument parsing, output, exit codes.

The only module that prints.  Every command turns its inputs into calls of the
library, and every :class:`TlsaManagerError` into one line on stderr and its exit
code; a traceback appears only under ``--debug``.  Heavy imports (provider SDKs,
``requests``) happen inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tlsa_manager import __version__
from tlsa_manager.errors import ExitCode, TlsaManagerError, UsageError

DEFAULT_STATE_DIR = Path("/var/lib/tlsa-manager")
#: seconds the hook polls the servers after publishing (sync: --propagation-timeout)
HOOK_PROPAGATION = 5.0


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")


def _emit_json(document: Any) -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def state_dir(args: argparse.Namespace) -> Path:
    """--state-dir, then $TLSA_MANAGER_STATE_DIR, then /var/lib/tlsa-manager."""
    if getattr(args, "state_dir", None):
        return Path(args.state_dir)
    env = os.environ.get("TLSA_MANAGER_STATE_DIR")
    return Path(env) if env else DEFAULT_STATE_DIR


# ---------------------------------------------------------------- records


def cmd_records(args: argparse.Namespace) -> int:
    import logging

    from tlsa_manager.advice import kind_warnings
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.certs import load_chain, read_passphrase
    from tlsa_manager.derive import DEFAULT_KINDS, derive
    from tlsa_manager.records import (
        MatchingType,
        Selector,
        Usage,
        owner_name,
        spki_sha256,
        to_mtype,
        to_selector,
        to_usage,
    )

    owner = owner_name(args.host, args.port) if args.host else None
    if args.host is None and (args.port_given or args.ttl is not None):
        raise UsageError("--port and --ttl need --host", "add --host mail.example.com")
    if args.ttl is not None and not 0 <= args.ttl <= 2**31 - 1:
        raise UsageError(f"--ttl {args.ttl} is outside 0-2147483647", "use e.g. 3600")
    passphrase = read_passphrase(args.passphrase_file, args.passphrase_env)
    chain = load_chain(Path(args.file), Path(args.key) if args.key else None, passphrase)
    explicit = any(v is not None for v in (args.usage, args.selector, args.mtype))
    if explicit:
        selector = to_selector(args.selector) if args.selector is not None else Selector.SPKI
        mtype = to_mtype(args.mtype) if args.mtype is not None else MatchingType.SHA2_256
        usages = [to_usage(args.usage)] if args.usage is not None else [Usage.DANE_EE, Usage.DANE_TA]
        kinds = tuple((u, selector, mtype) for u in usages)
    else:
        kinds = DEFAULT_KINDS
    derived = derive(chain, kinds, strict=args.usage is not None)
    warnings = sorted({w for kind in kinds for w in kind_warnings(kind)})
    catalog = load_catalog(state_dir(args))
    # The default output is the set that is safe to publish: a Let's Encrypt root in the
    # file is only a cross-sign the chain may drop, so its "2 1 1" is left out unless asked.
    left_out = []
    for d in list(derived):
        if d.role == "ca" and d.certificate is not None:
            known = catalog.by_spki(spki_sha256(d.certificate.public_key()))
            if known is not None and known.is_root:
                if explicit or args.include_roots:
                    warnings.append(
                        f"{d.record.kind} for {known.name} pins a root key that Let's Encrypt "
                        "chains carry only as a cross-sign and may drop; pin the intermediates"
                    )
                else:
                    derived.remove(d)
                    left_out.append(known.name)
    issuer = catalog.issuer_of(chain) if not explicit else None
    siblings = ", ".join(i.name for i in catalog.siblings(issuer)) if issuer is not None else ""
    if issuer is not None and siblings:
        warnings.append(
            f"Let's Encrypt may sign the next certificate with {siblings} instead of {issuer.name}: "
            "publish what 'tlsa-manager export HOST --cert FILE' prints"
        )
    if left_out:
        warnings.append(
            f"left out 2 1 1 for {', '.join(left_out)}: Let's Encrypt roots that the chain carries "
            "only as cross-signs (--include-roots shows them)"
        )
    for warning in warnings:
        _warn(warning)
    ttl = args.ttl if args.ttl is not None else 3600
    if args.json:
        rows = []
        for d in derived:
            row: dict[str, Any] = {
                "usage": int(d.record.usage),
                "selector": int(d.record.selector),
                "mtype": int(d.record.mtype),
                "data": d.record.data.hex(),
                "text": d.record.to_text(),
                "role": d.role,
                "subject": d.subject,
                "key": d.key,
            }
            if d.role == "ca" and d.certificate is not None:
                issuer = catalog.by_spki(spki_sha256(d.certificate.public_key()))
                row["catalog"] = issuer.label() if issuer else None
            if owner is not None:
                row["owner"] = owner.to_text()
                row["ttl"] = ttl
            rows.append(row)
        _emit_json({"file": str(args.file), "records": rows, "warnings": warnings})
        return ExitCode.OK
    for d in derived:
        if owner is not None:
            sys.stdout.write(f"{owner.to_text()} {ttl} IN TLSA {d.record.to_text()}\n")
        else:
            sys.stdout.write(d.record.to_text() + "\n")
        logging.getLogger("tlsa_manager").info("%s pins %s %r (%s)", d.record.kind, d.role, d.subject, d.key)
    return ExitCode.OK


# ---------------------------------------------------------------- catalog


def cmd_catalog_list(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog

    catalog = load_catalog(state_dir(args))
    wanted = set(args.status.split(",")) if args.status else None
    issuers = [i for i in catalog.issuers if wanted is None or i.status in wanted]
    if args.json:
        _emit_json(
            {
                "origin": catalog.origin,
                "issuers": [
                    {
                        "name": i.name,
                        "key": i.key_description,
                        "key_type": i.key_type,
                        "status": i.status,
                        "root": i.is_root,
                        "not_before": i.not_before.isoformat(),
                        "not_after": i.not_after.isoformat(),
                        "tlsa_2_1_1": i.record.to_text(),
                        "certificates": [c.name for c in i.certs],
                    }
                    for i in issuers
                ],
            }
        )
        return ExitCode.OK
    sys.stdout.write(f"# catalog: {catalog.origin}\n")
    sys.stdout.write(f"{'NAME':<28} {'KEY':<11} {'STATUS':<8} {'VALID':<23} 2 1 1\n")
    for i in issuers:
        valid = f"{i.not_before:%Y-%m-%d}..{i.not_after:%Y-%m-%d}"
        sys.stdout.write(
            f"{i.name:<28} {i.key_description:<11} {i.status:<8} {valid:<23} {i.record.data.hex()}\n"
        )
    return ExitCode.OK


def cmd_catalog_show(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.certs import load_chain

    catalog = load_catalog(state_dir(args))
    chain = load_chain(Path(args.file))
    issuer = catalog.issuer_of(chain)
    if issuer is None:
        raise TlsaManagerError(
            f"{args.file}: its issuer is not a Let's Encrypt CA in the catalog ({catalog.origin})",
            "run 'tlsa-manager catalog update', or pin the leaf with \"3 1 1\" only",
        )
    siblings = catalog.siblings(issuer)
    if args.json:
        _emit_json(
            {
                "issuer": {
                    "name": issuer.name,
                    "status": issuer.status,
                    "tlsa_2_1_1": issuer.record.to_text(),
                },
                "siblings": [
                    {"name": s.name, "status": s.status, "tlsa_2_1_1": s.record.to_text()} for s in siblings
                ],
            }
        )
        return ExitCode.OK
    sys.stdout.write(f"issuer: {issuer.label()}  {issuer.record.to_text()}\n")
    for s in siblings:
        sys.stdout.write(f"could issue next: {s.label()}  {s.record.to_text()}\n")
    return ExitCode.OK


def cmd_catalog_update(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.catalog_update import DEFAULT_URL, update
    from tlsa_manager.freshness import catalog_changes

    directory = state_dir(args)
    before = load_catalog(directory)
    try:
        result = update(directory, url=args.url or DEFAULT_URL, timeout=args.timeout)
    except TlsaManagerError as exc:
        current = load_catalog(directory)
        raise type(exc)(
            f"catalog update failed: {exc.message}",
            f"still using the {current.origin} catalog; try again when online",
        ) from None
    for line in result.rejected:
        _warn(f"rejected {line}")
    if args.json:
        _emit_json(
            {
                "origin": result.catalog.origin,
                "accepted": result.accepted,
                "rejected": result.rejected,
                "changes": catalog_changes(before, result.catalog),
            }
        )
    else:
        sys.stdout.write(
            f"catalog updated: {len(result.accepted)} certificates accepted, "
            f"{len(result.rejected)} rejected; now using {result.catalog.origin}\n"
        )
        changes = catalog_changes(before, result.catalog) or [f"no change from the {before.origin} catalog"]
        for line in changes:
            sys.stdout.write(f"  {line}\n")
    return ExitCode.OK


# ---------------------------------------------------------------- simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.policy import issuers_from_catalog
    from tlsa_manager.simulation import load_scenario

    issuers = issuers_from_catalog(load_catalog(state_dir(args)))
    scenario = load_scenario(args.scenario, issuers)
    world = scenario.world
    world.narrate = not args.json
    world.quiet_timer = not args.verbose
    world.run(scenario.events, scenario.until, scenario.timer)
    violations = [v.describe(world.t0) for v in world.violations]
    if args.json:
        _emit_json(
            {
                "scenario": args.scenario,
                "description": scenario.description,
                "timeline": world.timeline,
                "violations": violations,
                "final": world.sender_verdict(),
            }
        )
    else:
        if scenario.description:
            sys.stdout.write(f"# {scenario.description}\n")
        for line in world.timeline:
            sys.stdout.write(line + "\n")
        if violations:
            sys.stdout.write(f"{len(violations)} moment(s) when a DANE sender would defer mail:\n")
            for line in violations[:20]:
                sys.stdout.write(f"  {line}\n")
        else:
            sys.stdout.write("no moment when a DANE sender would defer mail\n")
    return ExitCode.HAZARD if violations else ExitCode.OK


# ---------------------------------------------------------------- plan / sync / status / export


DEFAULT_CONFIG = Path("/etc/tlsa-manager/config.toml")


def _has_config(args: argparse.Namespace) -> bool:
    """Whether a configuration file or one-off flags say which hosts there are."""
    return bool(args.config or getattr(args, "cert", None) or DEFAULT_CONFIG.exists())


def _config(args: argparse.Namespace, *, publishing: bool = True) -> Any:
    """The configuration file, or a one-off configuration from flags (without
    ``publishing``, as for ``export``, no provider is needed: nothing is published)."""
    from tlsa_manager.config import config_from_flags, load_config

    flag_cert = getattr(args, "cert", None)
    if args.config and not flag_cert:
        return load_config(Path(args.config))
    if not flag_cert:
        if DEFAULT_CONFIG.exists():
            return load_config(DEFAULT_CONFIG)
        raise UsageError(
            "no configuration: give --config FILE, or --cert and a provider",
            "e.g. sync mail.example.com --cert fullchain.pem --zone-file db.example.com",
        )
    hosts = getattr(args, "hosts", [])
    if len(hosts) != 1:
        raise UsageError("with --cert, name exactly one host", "e.g. sync mail.example.com --cert ...")
    provider = args.provider or ("zonefile" if args.zone_file else None)
    if provider is None and not publishing:
        provider = "none"  # export prints the records; no provider is ever opened
    if provider is None:
        raise UsageError("with --cert, say where to publish", "add --zone-file FILE or --provider NAME")
    from tlsa_manager.secrets import parse_provider_options

    settings: dict[str, Any] = parse_provider_options(args.provider_option or [])
    if args.zone_file:
        settings["zone_file"] = args.zone_file
    extra: dict[str, Any] = {}
    if args.next_key:
        extra["next_keys"] = args.next_key
    if args.nameserver:
        extra["nameservers"] = args.nameserver
    if args.ttl is not None:
        extra["ttl"] = args.ttl
    if args.record:
        extra["records"] = args.record
    if args.staged_dir:
        extra["staged_dir"] = args.staged_dir
    return config_from_flags(
        hosts[0], certs=flag_cert, key=args.key, provider=provider, provider_settings=settings, extra=extra
    )


def _at(args: argparse.Namespace) -> float | None:
    import time as _time
    from datetime import datetime

    from tlsa_manager.durations import parse_duration

    value = getattr(args, "at", None)
    if not value:
        return None
    if value.startswith("+"):
        return _time.time() + parse_duration(value[1:], "--at")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r} is not a time", "use e.g. 2026-12-01T12:00Z or +6h") from None
    if parsed.tzinfo is None:
        raise UsageError(f"--at {value!r} has no time zone", "append Z for UTC") from None
    return parsed.timestamp()


def _runs(args: argparse.Namespace, at: float | None = None) -> tuple[Any, list[Any]]:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.runner import open_hosts

    config = _config(args)
    if config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)
    catalog = load_catalog(state_dir(args))
    runs = open_hosts(
        config,
        list(getattr(args, "hosts", [])),
        bool(getattr(args, "all", False)),
        catalog,
        at=at,
        propagation_timeout=getattr(args, "propagation_timeout", 300.0),
        state_dir=state_dir(args),
    )
    return config, runs


def _write_plan(plan: Any) -> None:
    from tlsa_manager.report import gate_line

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
    for owner, record in plan.unmanaged:
        sys.stdout.write(f"  unmanaged, kept: {owner} {record}\n")
    for hazard in plan.hazards:
        sys.stdout.write(f"  {hazard.one_line()}\n")


def _warn_notes(runs: list[Any]) -> None:
    """The hosts' and providers' notes, each once (hosts of a fleet share providers)."""
    notes = (n for run in runs for n in run.ports.notes + list(getattr(run.ports.provider, "notes", [])))
    for note in dict.fromkeys(notes):
        _warn(note)


def _report_failures(failures: list[tuple[str, Any]], total: int) -> int:
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


def cmd_plan(args: argparse.Namespace) -> int:
    from tlsa_manager.report import exit_code
    from tlsa_manager.runner import plan_hosts

    _config_obj, runs = _runs(args, _at(args))
    failures: list[tuple[str, Any]] = []
    plans = plan_hosts(runs, state_dir(args), failures if len(runs) > 1 else None)
    _warn_notes(runs)
    if args.json:
        _emit_json({"plans": [p.as_dict() for p in plans]})
    else:
        for plan in plans:
            _write_plan(plan)
    failed = _report_failures(failures, len(runs))
    return failed or exit_code(h for p in plans for h in p.hazards)


def cmd_sync(args: argparse.Namespace) -> int:
    from tlsa_manager.report import exit_code
    from tlsa_manager.runner import sync_hosts

    _config_obj, runs = _runs(args)
    reports = sync_hosts(runs, state_dir(args), dry_run=args.dry_run, lock_wait=args.wait_lock)
    code = _report_syncs(args, runs, reports, dry_run=args.dry_run)
    if args.dry_run and not any(r.error for r in reports):
        return exit_code(h for r in reports if r.first_plan for h in r.first_plan.hazards)
    return code


def _report_syncs(
    args: argparse.Namespace, runs: list[Any], reports: list[Any], dry_run: bool = False, hook: bool = False
) -> int:
    """What sync and hook print, and their exit code (report.exit_code)."""
    from tlsa_manager.report import FAILING, HOOK_FAILING, exit_code, sync_lines

    checks: dict[str, dict[str, str]] = {run.spec.name: run.ports.checks for run in runs}
    _warn_notes(runs)
    if args.json:
        _emit_json(
            {
                "hosts": [
                    {
                        "host": r.host,
                        "dry_run": dry_run,
                        "plans": [p.as_dict() for p in r.plans],
                        "applied": [len(cs.changes) for cs in r.applied],
                        "deployed": r.deployed,
                        "checks": checks.get(r.host, {}),
                        "notes": r.notes,
                        "error": r.error.one_line() if r.error else None,
                        "failures": r.failures,
                    }
                    for r in reports
                ]
            }
        )
    for report in reports:
        if args.json:
            break
        if report.error is not None:
            continue
        if report.first_plan is not None and dry_run:
            _write_plan(report.first_plan)
            continue
        lines = sync_lines(
            report.host,
            report.last_plan,
            sum(len(c.add) for cs in report.applied for c in cs.changes),
            sum(len(c.delete) for cs in report.applied for c in cs.changes),
            report.deployed,
            checks.get(report.host, {}),
            report.notes,
        )
        sys.stdout.write("".join(line + "\n" for line in lines))
    failed = _report_failures([(r.host, r.error) for r in reports if r.error], len(reports))
    return failed or exit_code(
        (h for r in reports if r.last_plan for h in r.last_plan.hazards),
        [f for r in reports for f in r.failures],
        HOOK_FAILING if hook else FAILING,
    )


def cmd_status(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.freshness import catalog_line, catalog_summary
    from tlsa_manager.report import status_document, status_exit, status_lines
    from tlsa_manager.runner import ledger_data, status_plans

    config = _config(args) if _has_config(args) else None
    if config is not None and config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)
    data = ledger_data(state_dir(args))
    if config is None:
        # No configuration: the ledger alone says which hosts there are; gates need the
        # certificate files, which only a configuration names.
        names = [h.rstrip(".").lower() for h in args.hosts] or sorted(data.hosts)
        unknown = [n for n in names if n not in data.hosts]
        if unknown:
            raise UsageError(
                f"{', '.join(unknown)}: not in the ledger of {state_dir(args)}",
                f"known: {', '.join(sorted(data.hosts)) or 'none'}; or give --config FILE",
            )
        specs, plans = None, None
    else:
        specs = config.select(list(args.hosts), not args.hosts)
        names = [spec.name for spec in specs]
        plans = status_plans(config, names, load_catalog(state_dir(args)), state_dir(args), _at(args))
    document = status_document(names, data, plans, str(state_dir(args)), specs)
    document["catalog"] = catalog_summary(state_dir(args))
    if args.json:
        _emit_json(document)
    else:
        lines = [catalog_line(document["catalog"]), *status_lines(document)]
        sys.stdout.write("".join(line + "\n" for line in lines))
    return status_exit(document, plans or [])


def cmd_export(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.hostports import LivePorts
    from tlsa_manager.policy import desired, issuers_from_catalog
    from tlsa_manager.records import owner_name

    config = _config(args, publishing=False)
    catalog = load_catalog(state_dir(args))
    documents = []
    for spec in config.select(list(args.hosts), bool(args.all)):
        ports = LivePorts(spec, None, catalog)  # type: ignore[arg-type]
        chains = ports.chains()
        want = desired(
            chains.live,
            chains.staged,
            chains.next_keys,
            issuers_from_catalog(catalog),
            spec.policy,
            owner=spec.name,
        )
        for port in spec.ports:
            owner = owner_name(spec.name, port)
            documents.append((spec, owner, want))
    if args.format == "json" or args.json:
        _emit_json(
            {
                "records": [
                    {
                        "owner": o.to_text(),
                        "ttl": s.ttl,
                        "record": d.record.to_text(),
                        "role": d.role,
                        "reason": d.reason,
                        "publish": "now",
                    }
                    for s, o, w in documents
                    for d in w.records
                ]
            }
        )
        return ExitCode.OK
    if args.format == "nsupdate":
        for spec, owner, want in documents:
            sys.stdout.write(
                f"; {spec.name}: add these now; remove old records only after the new chain is live\n"
            )
            for d in want.records:
                sys.stdout.write(f"update add {owner.to_text()} {spec.ttl} IN TLSA {d.record.to_text()}\n")
            sys.stdout.write("send\n")
        return ExitCode.OK
    for spec, owner, want in documents:
        sys.stdout.write(
            f"; {spec.name}: publish all of these now (pre-publishing is always safe);\n"
            f"; remove a record only when no server can present the chain it matches\n"
        )
        for d in want.records:
            sys.stdout.write(f"{owner.to_text()} {spec.ttl} IN TLSA {d.record.to_text()} ; {d.role}\n")
        for hazard in want.hazards:
            sys.stdout.write(f"; {hazard.one_line()}\n")
    return ExitCode.OK


def cmd_hook(args: argparse.Namespace) -> int:
    import os as _os

    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.hooks import hosts_for, renewal_from, stage
    from tlsa_manager.nextkey import next_key_files
    from tlsa_manager.runner import open_hosts, sync_hosts

    config = load_config(Path(args.config or "/etc/tlsa-manager/config.toml"))
    if config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)
    renewal = renewal_from(args.client, _os.environ, args.args, args.cert, args.key, args.host)
    specs = hosts_for(config, renewal)
    catalog = load_catalog(state_dir(args))
    # At most a few seconds for the servers to take the change: the hook returns at once
    # (an ACME client waits on it); gates decide on observations and the timer's next
    # sync deploys (docs/hooks.md), so a lagging secondary never blocks it.
    runs = open_hosts(
        config,
        [s.name for s in specs],
        False,
        catalog,
        propagation_timeout=HOOK_PROPAGATION,
        state_dir=state_dir(args),
    )
    # Staged under the ledger lock: never between another run's gate and its deploy.
    staged: list[tuple[str, Path]] = []
    reports = sync_hosts(
        runs,
        state_dir(args),
        lock_wait=args.wait_lock,
        prepare=lambda: staged.extend(
            (spec.name, stage(spec, renewal, next_key_files(spec, state_dir(args)))) for spec in specs
        ),
    )
    for name, target in staged if not args.json else ():
        sys.stdout.write(f"{name}: staged {target}\n")
    return _report_syncs(args, runs, reports, hook=True)


def cmd_key(args: argparse.Namespace) -> int:
    """``key next HOST`` / ``key csr HOST``: the tool-managed next keys (docs/key-rollover.md)."""
    from tlsa_manager.nextkey import key_command

    config = _config(args)
    if config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)
    lines, data = key_command(config.host(args.host), state_dir(args), args.action, args.type, args.name)
    if data is not None:
        sys.stdout.buffer.write(data)
    for line in lines:
        (sys.stderr if data is not None else sys.stdout).write(line + "\n")
    return ExitCode.OK


def cmd_check(args: argparse.Namespace) -> int:
    import datetime as dt

    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.check import Checker, nagios
    from tlsa_manager.dnsview import parse_endpoint
    from tlsa_manager.hazards import Severity, worst
    from tlsa_manager.records import Tlsa
    from tlsa_manager.resolve import ValidatingResolver

    records = None
    if args.records:
        from tlsa_manager.certs import read_bytes

        lines = read_bytes(Path(args.records)).decode("utf-8", "replace").splitlines()
        records = []
        for line in lines:
            text = line.split(";", 1)[0].strip()
            if not text:
                continue
            records.append(Tlsa.from_text(text.split(" TLSA ", 1)[1] if " TLSA " in text else text))
    resolver = ValidatingResolver(args.resolver, timeout=args.timeout)
    checker = Checker(
        resolver,
        load_catalog(state_dir(args)),
        port=args.port,
        timeout=args.timeout,
        workers=args.workers,
        records=records,
        nameservers=[parse_endpoint(n) for n in args.nameserver or []],
        rrsig_margin=dt.timedelta(days=args.rrsig_margin),
        protocol=args.protocol,
    )
    result = checker.run(args.target)
    if args.nagios:
        code, line = nagios(result)
        sys.stdout.write(line + "\n")
        return code
    if args.json:
        _emit_json(result.as_dict())
    else:
        sys.stdout.write(f"{result.target}: {result.verdict} (MX {result.mx})\n")
        for host in result.hosts:
            pref = f" (preference {host.preference})" if host.preference is not None else ""
            sys.stdout.write(f"  {host.host}{pref}: DANE {host.dane}; {host.detail}\n")
            for e in host.endpoints:
                sys.stdout.write(f"    {e.address} {e.algorithm}: {e.verdict} - {e.detail}\n")
            for line in host.authoritative:
                sys.stdout.write(f"    authoritative {line}\n")
        for hazard in result.all_hazards:
            sys.stdout.write(f"  {hazard.one_line()}\n")
    if result.verdict == "unknown":
        return ExitCode.FAILURE
    level = worst(result.all_hazards)
    if result.verdict != "pass" or level in (Severity.FATAL, Severity.RISK):
        return ExitCode.HAZARD
    return ExitCode.OK


def _metrics_source(args: argparse.Namespace) -> Callable[[], list[Any]]:
    import functools

    from tlsa_manager.metrics import gather

    config = _config(args)
    if config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)
    return functools.partial(
        gather,
        config,
        state_dir(args),
        list(args.hosts),
        live=not args.no_check,
        resolver=args.resolver,
        timeout=args.timeout,
    )


def cmd_metrics(args: argparse.Namespace) -> int:
    from tlsa_manager.fsutil import atomic_write
    from tlsa_manager.metrics import render

    data = render(_metrics_source(args)())
    if args.output == "-":
        sys.stdout.write(data.decode())
    else:
        atomic_write(Path(args.output), data, 0o644)
    return ExitCode.OK


def cmd_exporter(args: argparse.Namespace) -> int:
    from tlsa_manager.metrics import CachedSource, serve

    server, thread = serve(args.listen, CachedSource(_metrics_source(args), args.interval))
    sys.stderr.write(f"tlsa-manager: serving http://{args.listen}/metrics\n")
    sys.stderr.flush()
    try:
        thread.join()
    finally:
        server.shutdown()
    return ExitCode.OK


def cmd_install_units(args: argparse.Namespace) -> int:
    from tlsa_manager.units import TIMERS, cron_text, install

    if args.cron:
        sys.stdout.write(cron_text())
        return ExitCode.OK
    for path in install(Path(args.dir)):
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"now: systemctl daemon-reload && systemctl enable --now {' '.join(TIMERS)}\n")
    return ExitCode.OK


def _add_monitoring(sub: Any) -> None:
    for name, text in (
        ("metrics", "write Prometheus metrics (node_exporter textfile format) of a live check and the state"),
        ("exporter", "serve the same metrics on http://ADDR/metrics"),
    ):
        p = sub.add_parser(name, help=text)
        _add_host_flags(p)
        p.add_argument("--resolver", help="validating resolver ADDR[:PORT] for the live check")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per connection or query")
        p.add_argument("--no-check", action="store_true", help="state only: no live check (offline)")
        if name == "metrics":
            p.add_argument(
                "--output", required=True, metavar="FILE", help="the .prom file (written atomically), or -"
            )
            p.set_defaults(func=cmd_metrics)
        else:
            p.add_argument(
                "--listen", default="127.0.0.1:9469", metavar="ADDR:PORT", help="default 127.0.0.1:9469"
            )
            p.add_argument(
                "--interval", type=float, default=300.0, help="collect at most this often (seconds)"
            )
            p.set_defaults(func=cmd_exporter)
    iu = sub.add_parser(
        "install-units", help="install the systemd service and timer files (or print a cron file)"
    )
    iu.add_argument(
        "--dir", default="/etc/systemd/system", help="where to write them (default /etc/systemd/system)"
    )
    iu.add_argument("--cron", action="store_true", help="print an /etc/cron.d file instead")
    iu.set_defaults(func=cmd_install_units)


def _add_host_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("hosts", nargs="*", metavar="HOST", help="hosts to handle (default: all configured)")
    p.add_argument("--all", action="store_true", help="every configured host")
    g = p.add_argument_group("one-off configuration (no config file)")
    g.add_argument("--cert", action="append", help="chain file the MTA serves (repeat for RSA + ECDSA)")
    g.add_argument("--key", help="the key of the first --cert, if not in the same file")
    g.add_argument("--next-key", action="append", help="a pre-generated next key to pre-publish")
    g.add_argument("--zone-file", help="publish by editing this zone file (provider zonefile)")
    g.add_argument("--provider", help="provider type (zonefile, rfc2136, cloudflare, or a plugin)")
    g.add_argument("--provider-option", action="append", metavar="KEY=VALUE", help="a provider setting")
    g.add_argument("--nameserver", action="append", metavar="HOST:PORT", help="authoritative server to poll")
    g.add_argument("--ttl", type=int, help="TTL of the TLSA RRset (default 3600)")
    g.add_argument("--record", action="append", metavar="KIND", help='record kind, e.g. "3 1 1" (repeatable)')
    g.add_argument("--staged-dir", help="folder of staged chains (key + chain files)")


# ---------------------------------------------------------------- parser


def _add_records(sub: Any) -> None:
    p = sub.add_parser("records", help="print TLSA records for a certificate, chain or key file")
    p.add_argument("file", help="PEM or DER certificate, chain (fullchain.pem) or key file")
    p.add_argument("--key", help="the private or public key that belongs to the certificate")
    p.add_argument("--usage", type=int, help="0-3 (default: 3 for the leaf and 2 for each CA)")
    p.add_argument("--selector", type=int, help="0 whole certificate, 1 public key (default 1)")
    p.add_argument("--mtype", type=int, help="0 full, 1 SHA2-256, 2 SHA2-512 (default 1)")
    p.add_argument("--host", help="print zone-file lines at _PORT._tcp.HOST.")
    p.add_argument("--port", type=int, default=None, help="TCP port for the owner name (default 25)")
    p.add_argument("--ttl", type=int, help="TTL of the zone-file lines (default 3600)")
    p.add_argument(
        "--include-roots",
        action="store_true",
        help="also print 2 1 1 for Let's Encrypt roots the file carries as cross-signs (not safe to pin)",
    )
    p.add_argument("--passphrase-file", type=Path, help="file whose first line decrypts the key")
    p.add_argument("--passphrase-env", help="environment variable that holds the key passphrase")
    p.set_defaults(func=cmd_records)


def _add_catalog(sub: Any) -> None:
    p = sub.add_parser("catalog", help="the Let's Encrypt issuer catalog")
    csub = p.add_subparsers(dest="catalog_command", metavar="list|show|update", parser_class=_CommandParser)
    csub.required = True
    lp = csub.add_parser("list", help="every CA key: name, key type, status, validity, 2 1 1")
    lp.add_argument("--status", help="only these statuses, e.g. active,backup")
    lp.set_defaults(func=cmd_catalog_list)
    sp = csub.add_parser("show", help="name the issuer of a chain and the CAs that could issue next")
    sp.add_argument("file", help="certificate or chain file")
    sp.set_defaults(func=cmd_catalog_show)
    up = csub.add_parser("update", help="fetch and verify the current list from letsencrypt.org")
    # No default here: importing catalog_update (cryptography.x509) would slow every --help.
    up.add_argument("--url", help="the certificates page to read (default: letsencrypt.org's)")
    up.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    up.set_defaults(func=cmd_catalog_update)


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name (`sync HOST --state-dir X`
    works like `--state-dir X sync HOST`).  After the command they default to SUPPRESS, so
    an option given before it is not reset by the command's own parser."""

    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g = parser.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", default=d(None), help="configuration file (TOML)")
    g.add_argument("--state-dir", default=d(None), help="state directory (default /var/lib/tlsa-manager)")
    g.add_argument("--json", action="store_true", default=d(False), help="print one JSON document on stdout")
    g.add_argument("-v", "--verbose", action="count", default=d(0), help="say more on stderr")
    g.add_argument("-q", "--quiet", action="store_true", default=d(False), help="errors only")
    g.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks and debug logs")


class _CommandParser(_Parser):
    """A command's parser: it takes the global options too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, defaults=False)


class _Unbuilt:
    """Stands in for the parser of a command this run does not use: every call is a
    no-op.  Building all thirteen parsers costs more than the rest of ``--help``."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


class _NeedsFullParser(Exception):
    """The command guessed from argv was not the one argparse chose: build them all."""


class _LazySubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose parsers are built only for the command being run; the others
    appear in ``--help`` and in "invalid choice" errors by name and help line alone."""

    wanted: str | None = None

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.wanted is None or name == self.wanted:
            return super().add_parser(name, **kwargs)
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), kwargs.get("help")))
        self._name_parser_map[name] = _Unbuilt()
        return _Unbuilt()

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if isinstance(self._name_parser_map.get(values[0]), _Unbuilt):
            raise _NeedsFullParser
        super().__call__(parser, namespace, values, option_string)


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of argv: the first word that is not a global option or its value."""
    takes_value = {"--config", "--state-dir"}
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in takes_value:
            skip = True
        elif not word.startswith("-"):
            return word
    return ""  # no command at all: `--help`, `--version`


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's own parser is built in full."""
    parser = _Parser(
        prog="tlsa-manager",
        description="Keep the DANE TLSA records of mail servers correct through renewals.",
    )
    parser.register("action", "lazy_parsers", _LazySubParsers)
    parser.add_argument("--version", action="version", version=f"tlsa-manager {__version__}")
    _add_global_options(parser, defaults=True)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_CommandParser, action="lazy_parsers"
    )
    sub.wanted = command  # type: ignore[attr-defined]
    sub.required = True
    _add_records(sub)
    _add_catalog(sub)
    pl = sub.add_parser("plan", help="read-only: what sync would change, gates, hazards")
    _add_host_flags(pl)
    pl.add_argument("--at", help="plan as if it were this time (ISO 8601 with Z, or +6h)")
    pl.set_defaults(func=cmd_plan)
    sy = sub.add_parser("sync", help="converge safely; deploy staged chains whose gate has passed")
    _add_host_flags(sy)
    sy.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    sy.add_argument(
        "--wait-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run's lock (default: fail at once)",
    )
    sy.add_argument(
        "--propagation-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for every server to serve a change (default 300)",
    )
    sy.set_defaults(func=cmd_sync)
    st = sub.add_parser("status", help="the ledger: managed records, last observations, staged chains")
    _add_host_flags(st)
    st.add_argument("--at", help="as if it were this time (ISO 8601 with Z, or +6h)")
    st.set_defaults(func=cmd_status)
    ex = sub.add_parser("export", help="the desired records for manual DNS")
    _add_host_flags(ex)
    ex.add_argument("--format", choices=["zone", "nsupdate", "json"], default="zone")
    ex.set_defaults(func=cmd_export)
    hk = sub.add_parser("hook", help="post-renewal hook: stage the new chain, pre-publish, deploy if safe")
    hk.add_argument("client", choices=["certbot", "acme.sh", "lego", "dehydrated", "generic"])
    hk.add_argument("args", nargs="*", help="dehydrated: its deploy_cert arguments")
    hk.add_argument("--cert", help="generic: the full chain file")
    hk.add_argument("--key", help="generic: the private key file")
    hk.add_argument("--host", help="generic: the MX host name")
    hk.add_argument(
        "--wait-lock",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wait this long for a running sync (default 600)",
    )
    hk.set_defaults(func=cmd_hook)
    ky = sub.add_parser("key", help="next keys for a zero-wait rollover: make them, or a CSR from one")
    ky.add_argument(
        "action", choices=["next", "csr"], help="next: make the missing next keys; csr: print a CSR"
    )
    ky.add_argument("host", help="the configured MX host")
    ky.add_argument("--type", action="append", choices=["ecdsa", "rsa"], help="key type (repeat; csr: one)")
    ky.add_argument("--name", action="append", default=[], help="csr: a further DNS name (repeat)")
    ky.set_defaults(func=cmd_key, hosts=[], cert=None)
    ck = sub.add_parser("check", help="live DANE verification of a domain's MX hosts or one host")
    ck.add_argument("target", help="mail domain (its MX hosts are checked) or one MX host")
    ck.add_argument("--port", type=int, default=25, help="port connected to and TLSA port label (default 25)")
    ck.add_argument(
        "--protocol",
        choices=["smtp", "imap", "pop3", "tls"],
        help="how to reach TLS (default by port: 25/587 smtp, 143 imap, 110 pop3, 465/993/995/443 tls)",
    )
    ck.add_argument("--resolver", help="validating resolver ADDR[:PORT] (default: the system's)")
    ck.add_argument("--records", help="check against the TLSA records in this file instead of DNS")
    ck.add_argument("--nagios", action="store_true", help="one status line, exit 0/1/2/3 (Nagios/Icinga)")
    ck.add_argument("--timeout", type=float, default=10.0, help="seconds per connection or query")
    ck.add_argument("--workers", type=int, default=8, help="parallel connections (default 8)")
    ck.add_argument(
        "--nameserver",
        action="append",
        metavar="HOST:PORT",
        help="authoritative server to compare (repeat; default: every address of the zone's NS names)",
    )
    ck.add_argument(
        "--rrsig-margin",
        type=float,
        default=3.0,
        metavar="DAYS",
        help="warn when signatures expire within this many days (default 3)",
    )
    ck.set_defaults(func=cmd_check)
    _add_monitoring(sub)
    sim = sub.add_parser("simulate", help="replay a renewal timeline through the planner")
    sim.add_argument("scenario", help="scenario file (TOML), e.g. examples/scenarios/new-key.toml")
    sim.set_defaults(func=cmd_simulate)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    import logging

    level = logging.WARNING
    if args.debug:
        level = logging.DEBUG
    elif args.verbose:
        level = logging.INFO
    elif args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        try:
            args = build_parser(_command_in(argv)).parse_args(argv)
        except _NeedsFullParser:
            args = build_parser().parse_args(argv)
        args.port_given = getattr(args, "port", None) is not None
        if getattr(args, "port", 0) is None:
            args.port = 25
        _configure_logging(args)
        func: Callable[[argparse.Namespace], int] = args.func
        code = int(func(args))
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except TlsaManagerError as exc:
        if debug:
            raise
        sys.stderr.write(f"tlsa-manager: error: {exc.one_line()}\n")
        return int(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug of ours: one line unless --debug
        if debug:
            raise
        sys.stderr.write(
            f"tlsa-manager: internal error: {type(exc).__name__}: {exc}; "
            "run again with --debug for the traceback and please report it\n"
        )
        return int(ExitCode.FAILURE)
    except KeyboardInterrupt:
        sys.stderr.write("tlsa-manager: interrupted\n")
        return 130


def run() -> None:
    sys.exit(main())
