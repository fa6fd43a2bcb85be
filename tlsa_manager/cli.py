"""The ``tlsa-manager`` command: argument parsing, output, exit codes.

The only module that prints.  Every command turns its inputs into calls of the
library, and every :class:`TlsaManagerError` into one line on stderr and its exit
code; a traceback appears only under ``--debug``.  Heavy imports (provider SDKs,
``requests``) happen inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tlsa_manager import __version__
from tlsa_manager.errors import ExitCode, TlsaManagerError, UsageError

DEFAULT_STATE_DIR = Path("/var/lib/tlsa-manager")
log = logging.getLogger("tlsa_manager")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")


def _emit_json(document: Any) -> None:
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
    for d in derived:
        if d.role == "ca" and d.certificate is not None:
            known = catalog.by_spki(spki_sha256(d.certificate.public_key()))
            if known is not None and known.is_root:
                warnings.append(
                    f"{d.record.kind} for {known.name} pins a root key that Let's Encrypt "
                    "chains carry only as a cross-sign and may drop; pin the intermediates"
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
        log.info("%s pins %s %r (%s)", d.record.kind, d.role, d.subject, d.key)
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
    from tlsa_manager.catalog_update import update

    directory = state_dir(args)
    try:
        result = update(directory, url=args.url, timeout=args.timeout)
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
            }
        )
    else:
        sys.stdout.write(
            f"catalog updated: {len(result.accepted)} certificates accepted, "
            f"{len(result.rejected)} rejected; now using {result.catalog.origin}\n"
        )
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
    p.add_argument("--passphrase-file", type=Path, help="file whose first line decrypts the key")
    p.add_argument("--passphrase-env", help="environment variable that holds the key passphrase")
    p.set_defaults(func=cmd_records)


def _add_catalog(sub: Any) -> None:
    p = sub.add_parser("catalog", help="the Let's Encrypt issuer catalog")
    csub = p.add_subparsers(dest="catalog_command", metavar="list|show|update", parser_class=_Parser)
    csub.required = True
    lp = csub.add_parser("list", help="every CA key: name, key type, status, validity, 2 1 1")
    lp.add_argument("--status", help="only these statuses, e.g. active,backup")
    lp.set_defaults(func=cmd_catalog_list)
    sp = csub.add_parser("show", help="name the issuer of a chain and the CAs that could issue next")
    sp.add_argument("file", help="certificate or chain file")
    sp.set_defaults(func=cmd_catalog_show)
    up = csub.add_parser("update", help="fetch and verify the current list from letsencrypt.org")
    from tlsa_manager.catalog_update import DEFAULT_URL

    up.add_argument("--url", default=DEFAULT_URL, help="the certificates page to read")
    up.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    up.set_defaults(func=cmd_catalog_update)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tlsa-manager",
        description="Keep the DANE TLSA records of mail servers correct through renewals.",
    )
    parser.add_argument("--version", action="version", version=f"tlsa-manager {__version__}")
    parser.add_argument("--config", help="configuration file (TOML)")
    parser.add_argument("--state-dir", help="state directory (default /var/lib/tlsa-manager)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_records(sub)
    _add_catalog(sub)
    sim = sub.add_parser("simulate", help="replay a renewal timeline through the planner")
    sim.add_argument("scenario", help="scenario file (TOML), e.g. examples/scenarios/new-key.toml")
    sim.set_defaults(func=cmd_simulate)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
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
        args = build_parser().parse_args(argv)
        args.port_given = getattr(args, "port", None) is not None
        if getattr(args, "port", 0) is None:
            args.port = 25
        _configure_logging(args)
        func: Callable[[argparse.Namespace], int] = args.func
        return int(func(args))
    except TlsaManagerError as exc:
        if debug:
            raise
        sys.stderr.write(f"tlsa-manager: error: {exc.one_line()}\n")
        return int(exc.exit_code)
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
