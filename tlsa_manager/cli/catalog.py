"""``catalog list|show|update``: the Let's Encrypt issuer catalog (docs/catalog.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import Subparsers, emit_json, quiet, seconds, state_dir, warn
from tlsa_manager.cli.main import CommandParser
from tlsa_manager.errors import ExitCode, TlsaManagerError


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    csub = p.add_subparsers(dest="catalog_command", metavar="list|show|update", parser_class=CommandParser)
    csub.required = True
    lp = csub.add_parser("list", help="every CA key: name, key type, status, validity, 2 1 1")
    lp.add_argument("--status", help="only these statuses, e.g. active,backup")
    sp = csub.add_parser("show", help="name the issuer of a chain and the CAs that could issue next")
    sp.add_argument("file", help="certificate or chain file")
    up = csub.add_parser("update", help="fetch and verify the current list from letsencrypt.org")
    # No default here: importing catalog_update (cryptography.x509) would slow every --help.
    up.add_argument("--url", help="the certificates page to read (default: letsencrypt.org's)")
    up.add_argument("--timeout", type=seconds(0.0, above=True), default=20.0, help="seconds per request")


def run(args: argparse.Namespace) -> int:
    commands = {"list": list_issuers, "show": show, "update": update}
    return commands[args.catalog_command](args)


def list_issuers(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog

    catalog = load_catalog(state_dir(args))
    wanted = set(args.status.split(",")) if args.status else None
    issuers = [i for i in catalog.issuers if wanted is None or i.status in wanted]
    if args.json:
        emit_json(
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


def show(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.certs import load_chain
    from tlsa_manager.freshness import named_issuer

    catalog = load_catalog(state_dir(args))
    chain = load_chain(Path(args.file))
    issuer = catalog.issuer_of(chain)
    if issuer is None and (named := named_issuer(chain, catalog)):
        raise TlsaManagerError(
            f"{args.file}: the leaf names {named} as its issuer, but {named}'s key in the catalog "
            f"({catalog.origin}) did not sign it",
            "check that it is the certificate Let's Encrypt issued (a test or staging certificate only "
            'borrows the name), or pin the leaf with "3 1 1" only',
        )
    if issuer is None:
        raise TlsaManagerError(
            f"{args.file}: its issuer is not a Let's Encrypt CA in the catalog ({catalog.origin})",
            "run 'tlsa-manager catalog update', or pin the leaf with \"3 1 1\" only",
        )
    siblings = catalog.siblings(issuer)
    if args.json:
        emit_json(
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


def update(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.catalog_update import DEFAULT_URL
    from tlsa_manager.catalog_update import update as update_catalog
    from tlsa_manager.freshness import catalog_changes

    directory = state_dir(args)
    before = load_catalog(directory)
    try:
        result = update_catalog(directory, url=args.url or DEFAULT_URL, timeout=args.timeout)
    except TlsaManagerError as exc:
        current = load_catalog(directory)
        raise type(exc)(
            f"catalog update failed: {exc.message}",
            f"still using the {current.origin} catalog; try again when online",
        ) from None
    for line in result.rejected:
        warn(f"rejected {line}")
    if args.json:
        emit_json(
            {
                "origin": result.catalog.origin,
                "accepted": result.accepted,
                "rejected": result.rejected,
                "changes": catalog_changes(before, result.catalog),
            }
        )
    elif not quiet():  # -q (the cron job): nothing to say when it worked
        sys.stdout.write(
            f"catalog updated: {len(result.accepted)} certificates accepted, "
            f"{len(result.rejected)} rejected; now using {result.catalog.origin}\n"
        )
        changes = catalog_changes(before, result.catalog) or [f"no change from the {before.origin} catalog"]
        for line in changes:
            sys.stdout.write(f"  {line}\n")
    return ExitCode.OK
