"""``records FILE``: the TLSA records of a certificate, chain or key file (docs/records.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import Subparsers, emit_json, state_dir, warn
from tlsa_manager.errors import ExitCode, UsageError


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
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


def run(args: argparse.Namespace) -> int:
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
        warn(warning)
    ttl = args.ttl if args.ttl is not None else 3600
    if args.json:
        rows = []
        for d in derived:
            row: dict[str, object] = {
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
        emit_json({"file": str(args.file), "records": rows, "warnings": warnings})
        return ExitCode.OK
    for d in derived:
        if owner is not None:
            sys.stdout.write(f"{owner.to_text()} {ttl} IN TLSA {d.record.to_text()}\n")
        else:
            sys.stdout.write(d.record.to_text() + "\n")
        logging.getLogger("tlsa_manager").info("%s pins %s %r (%s)", d.record.kind, d.role, d.subject, d.key)
    return ExitCode.OK
