"""``check TARGET``: live DANE verification of a domain's MX hosts or one host (docs/check.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import Subparsers, bounded_int, emit_json, quiet, seconds, state_dir
from tlsa_manager.cli.output import write_exit_reasons
from tlsa_manager.errors import ExitCode, InputError, UsageError

#: the longest --rrsig-margin: ten years (a longer one cannot be a date)
MAX_MARGIN_DAYS = 3650.0


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument("target", help="mail domain (its MX hosts are checked) or one MX host")
    p.add_argument(
        "--port",
        type=bounded_int(1, 65535),
        default=25,
        help="port connected to and TLSA port label (default 25)",
    )
    p.add_argument(
        "--protocol",
        choices=["smtp", "imap", "pop3", "tls"],
        help="how to reach TLS (default by port: 25/587 smtp, 143 imap, 110 pop3, 465/993/995/443 tls)",
    )
    p.add_argument("--resolver", help="validating resolver ADDR[:PORT] (default: the system's)")
    p.add_argument("--records", help="check against the TLSA records in this file instead of DNS")
    p.add_argument("--nagios", action="store_true", help="one status line, exit 0/1/2/3 (Nagios/Icinga)")
    p.add_argument(
        "--timeout", type=seconds(0.0, above=True), default=10.0, help="seconds per connection or query"
    )
    p.add_argument("--workers", type=bounded_int(1, 256), default=8, help="parallel connections (default 8)")
    p.add_argument(
        "--nameserver",
        action="append",
        metavar="HOST:PORT",
        help="authoritative server to compare (repeat; default: every address of the zone's NS names)",
    )
    p.add_argument(
        "--rrsig-margin",
        type=margin_days,
        default=3.0,
        metavar="DAYS",
        help="warn when signatures expire within this many days (default 3)",
    )


def margin_days(text: str) -> float:
    value = seconds(0.0)(text)
    if value > MAX_MARGIN_DAYS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_MARGIN_DAYS:g} days")
    return value


def _refuse_address(target: str) -> None:
    """DANE records hang off names (_25._tcp.MX-HOST): an IP address has none to check."""
    import ipaddress

    try:
        ipaddress.ip_address(target.strip().strip("[]"))
    except ValueError:
        return
    raise UsageError(
        f"check {target}: an IP address is not a mail domain or an MX host name",
        "TLSA records are found by name (_25._tcp.<MX host>): give the domain, e.g. "
        "check example.com, or the MX host name",
    )


def run(args: argparse.Namespace) -> int:
    import datetime as dt

    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.check import Checker, nagios
    from tlsa_manager.dnsview import parse_endpoint
    from tlsa_manager.hazards import Severity, worst
    from tlsa_manager.resolve import ValidatingResolver

    _refuse_address(args.target)
    records = None
    if args.records:
        from tlsa_manager.certs import CERT_LIMIT
        from tlsa_manager.fsutil import read_regular
        from tlsa_manager.records import parse_records

        text = read_regular(Path(args.records), limit=CERT_LIMIT, what="file of TLSA records")
        records = parse_records(text.decode("utf-8", "replace"))
        if not records:
            raise InputError(f"{args.records}: holds no TLSA record", "one a line, e.g. 3 1 1 <SHA-256 hex>")
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
        emit_json(result.as_dict())
    elif quiet():
        verdict = [] if result.verdict == "pass" else [f"{result.verdict} (MX {result.mx})"]
        write_exit_reasons(result.target, result.all_hazards, verdict)
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
