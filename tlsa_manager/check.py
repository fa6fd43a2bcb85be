"""Live DANE verification of a domain's MX hosts, as a DANE sender would do it.

For a domain: the MX RRset in preference order (or the name itself when it has no MX);
for each host: its addresses and their DNSSEC status, the TLSA RRset at
``_PORT._tcp.<host>`` (trying the CNAME-expanded name first, RFC 7672 §2.2.3), then per
address a handshake offering ECDSA and RSA separately, and :func:`danecheck.verify` on the
chain each sent.  The handshake follows the port's protocol (SMTP, IMAP or POP3 with
their TLS upgrade, or implicit TLS, :mod:`tlsprobe`); only SMTP on a relay port follows
MX records, every other service is checked at the name given.  Hazards come from the
same lint the planner uses, plus what only a live check can see (bogus or insecure
lookups, STARTTLS missing, the same key on every MX).  No printing here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdatatype

from tlsa_manager.agreement import server_hazards
from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import Chain, key_type
from tlsa_manager.danecheck import verify
from tlsa_manager.dnsview import DnsView
from tlsa_manager.dnsview import Endpoint as Server
from tlsa_manager.facts import facts_from_chain
from tlsa_manager.freshness import stale_catalog
from tlsa_manager.hazards import Hazard, Severity, worst
from tlsa_manager.policy import issuers_from_catalog, lint
from tlsa_manager.records import Tlsa, host_name, owner_name, spki_sha256
from tlsa_manager.resolve import Lookup, ValidatingResolver
from tlsa_manager.tlsprobe import UPGRADE_NAMES, Presented, handshake, protocol_for

ALGORITHMS = ("ecdsa", "rsa")


@dataclass
class Endpoint:
    host: str
    address: str
    algorithm: str
    verdict: str  # pass | fail | no-starttls | no-tls | not-applicable | unreachable
    detail: str
    spki: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address": self.address,
            "algorithm": self.algorithm,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass
class HostCheck:
    host: str
    preference: int | None
    dane: str  # in force | not in force | bogus | error
    detail: str
    tlsa: list[Tlsa] = field(default_factory=list)
    tlsa_owner: str = ""
    endpoints: list[Endpoint] = field(default_factory=list)
    hazards: list[Hazard] = field(default_factory=list)
    #: what each authoritative server serves at the TLSA owner, one line per server
    authoritative: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "preference": self.preference,
            "dane": self.dane,
            "detail": self.detail,
            "tlsa_owner": self.tlsa_owner,
            "tlsa": [r.to_text() for r in self.tlsa],
            "authoritative": self.authoritative,
            "endpoints": [e.as_dict() for e in self.endpoints],
            "hazards": [h.as_dict() for h in self.hazards],
        }


@dataclass
class CheckResult:
    target: str
    mx: str
    hosts: list[HostCheck]
    hazards: list[Hazard]

    @property
    def all_hazards(self) -> list[Hazard]:
        return self.hazards + [h for host in self.hosts for h in host.hazards]

    @property
    def verdict(self) -> str:
        endpoints = [e for h in self.hosts for e in h.endpoints]
        if any(h.dane == "bogus" for h in self.hosts) or any(
            e.verdict in ("fail", "no-starttls", "no-tls") for e in endpoints
        ):
            return "fail"
        if any(h.dane == "error" for h in self.hosts) or any(e.verdict == "unreachable" for e in endpoints):
            return "unknown"
        if all(h.dane == "in force" for h in self.hosts) and endpoints:
            return "pass"
        return "dane not in force"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mx": self.mx,
            "verdict": self.verdict,
            "hosts": [h.as_dict() for h in self.hosts],
            "hazards": [h.as_dict() for h in self.hazards],
        }


class Checker:
    def __init__(
        self,
        resolver: ValidatingResolver,
        catalog: Catalog,
        port: int = 25,
        timeout: float = 10.0,
        workers: int = 8,
        records: Sequence[Tlsa] | None = None,
        connect: dict[str, str] | None = None,
        now: dt.datetime | None = None,
        nameservers: Sequence[Server] | None = None,
        rrsig_margin: dt.timedelta = dt.timedelta(days=3),
        protocol: str | None = None,
    ) -> None:
        self.resolver = resolver
        self.catalog = catalog
        self.port = port
        self.timeout = timeout
        self.workers = workers
        self.records = list(records) if records is not None else None
        self.connect = connect or {}
        self.now = now or dt.datetime.now(dt.UTC)
        self.nameservers = list(nameservers) if nameservers else None
        self.rrsig_margin = rrsig_margin
        self.protocol = protocol_for(port, protocol)
        # MX records name relays: only SMTP on a relay port (not submission) follows them
        self.follow_mx = self.protocol == "smtp" and port != 587
        self.upgrade = UPGRADE_NAMES[self.protocol]
        # shared by all hosts of one run: each server's DNSKEY is fetched once
        self.view = DnsView([], timeout=min(timeout, 5.0))
        self.zone_servers: dict[dns.name.Name, list[Server]] = {}

    def run(self, target: str) -> CheckResult:
        name = host_name(target)
        hazards: list[Hazard] = []
        if not self.follow_mx:
            check = self.check_host(name, None, name, False)
            return CheckResult(target, f"not used ({self.protocol} on port {self.port})", [check], hazards)
        mx = self.resolver.lookup(name, dns.rdatatype.MX)
        if mx.status == "bogus":
            return CheckResult(
                target,
                "bogus",
                [
                    HostCheck(
                        target,
                        None,
                        "bogus",
                        "MX lookup bogus: mail deferred",
                        hazards=[_bogus(target, "MX")],
                    )
                ],
                hazards,
            )
        if mx.found and mx.rrset is not None:
            hosts = sorted(
                ((r.preference, r.exchange) for r in mx.rrset), key=lambda t: (t[0], t[1].to_text())
            )
            if not mx.secure:
                hazards.append(
                    Hazard(
                        "H8",
                        Severity.INFO,
                        f"the MX RRset of {target} is not DNSSEC-signed: senders do not apply DANE",
                        "sign the zone",
                        target,
                    )
                )
            mx_text = "secure" if mx.secure else "insecure"
        else:
            hosts = [(None, name)]
            mx_text = "none (checking the name as an MX host)"
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            checks = list(
                pool.map(lambda h: self.check_host(h[1], h[0], name, mx.secure and mx.found), hosts)
            )
        if mx.found and self.records is None and all(h != name for _p, h in hosts):
            stray = self.resolver.lookup(owner_name(target, self.port), dns.rdatatype.TLSA)
            if stray.found:
                hazards.append(
                    Hazard(
                        "H15",
                        Severity.INFO,
                        f"TLSA records at {owner_name(target, self.port)} are never used: senders look "
                        "them up at each MX host's name",
                        "publish them at _25._tcp.<mx-host> and remove these",
                        target,
                    )
                )
        keys = {e.spki for c in checks for e in c.endpoints if e.spki}
        if len(checks) > 1 and len(keys) == 1:
            hazards.append(
                Hazard(
                    "H21",
                    Severity.RISK,
                    "every MX host uses the same key",
                    "give each MX host its own key so one mistake cannot stop all",
                    target,
                )
            )
        return CheckResult(target, mx_text, checks, hazards)

    def check_host(
        self, host: dns.name.Name, preference: int | None, next_hop: dns.name.Name, mx_secure: bool
    ) -> HostCheck:
        text = host.to_text(omit_final_dot=True)
        lookups = [self.resolver.lookup(host, t) for t in (dns.rdatatype.A, dns.rdatatype.AAAA)]
        addresses = [str(r) for lk in lookups if lk.rrset is not None for r in lk.rrset]
        check = HostCheck(text, preference, "error", "")
        if any(lk.status == "bogus" for lk in lookups):
            check.dane, check.detail = "bogus", "address lookup bogus: mail deferred"
            check.hazards.append(_bogus(text, "A/AAAA"))
            return check
        if not addresses:
            check.detail = "no address: " + ", ".join(lk.error or lk.status for lk in lookups)
            return check
        secure_addresses = all(lk.secure for lk in lookups if lk.found)
        expanded = next((lk.final for lk in lookups if lk.cname and lk.final is not None), None)
        if expanded is not None:
            check.hazards.append(
                Hazard(
                    "H16",
                    Severity.RISK,
                    f"{text} is a CNAME to {expanded}",
                    "point the MX at the real host name",
                    text,
                )
            )
        records, tlsa_lookup, owner = self._tlsa(host, expanded)
        check.tlsa_owner = owner
        if tlsa_lookup is not None and tlsa_lookup.cname:
            check.hazards.append(
                Hazard(
                    "H17",
                    Severity.RISK,
                    f"the TLSA owner {owner} is a CNAME",
                    "publish the TLSA RRset at the owner itself",
                    text,
                )
            )
        if tlsa_lookup is not None and tlsa_lookup.status == "bogus":
            check.dane, check.detail = "bogus", "TLSA lookup bogus: mail deferred"
            check.hazards.append(_bogus(text, "TLSA"))
            return check
        if tlsa_lookup is not None and tlsa_lookup.status == "error":
            check.detail = f"TLSA lookup failed: {tlsa_lookup.error}"
            return check
        if not secure_addresses:
            check.dane, check.detail = "not in force", "the host's addresses are not DNSSEC-signed"
            check.hazards.append(
                Hazard(
                    "H8",
                    Severity.INFO,
                    f"A/AAAA of {text} insecure: senders skip TLSA",
                    "sign the zone that holds the MX host",
                    text,
                )
            )
        elif records and tlsa_lookup is not None and not tlsa_lookup.secure:
            check.dane, check.detail = "not in force", "the TLSA RRset is not DNSSEC-signed"
            check.hazards.append(
                Hazard(
                    "H6",
                    Severity.INFO,
                    f"TLSA at {owner} is insecure: DANE is inert",
                    "sign the zone (and the delegation)",
                    text,
                )
            )
        elif not records:
            check.dane, check.detail = "not in force", f"no TLSA record at {owner}"
        else:
            check.dane, check.detail = "in force", f"{len(records)} TLSA record(s) at {owner}"
        check.tlsa = records
        # RFC 7672 §3.2.2: an SMTP client also accepts the next-hop domain of a secure MX
        reference = [text] + ([next_hop.to_text(omit_final_dot=True)] if mx_secure and self.follow_mx else [])
        jobs = [(a, alg) for a in addresses for alg in ALGORITHMS]
        dane = check.dane == "in force"
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(
                pool.map(lambda job: self._endpoint(text, job[0], job[1], records, reference, dane), jobs)
            )
        presented = {(a, alg): p for (a, alg), (_e, p) in zip(jobs, results, strict=True)}
        for address in addresses:
            found = [
                e for (a, _alg), (e, _p) in zip(jobs, results, strict=True) if a == address and e is not None
            ]
            if not found:  # neither algorithm completed a handshake
                errors = "; ".join(sorted({p.error or "" for (a, _), p in presented.items() if a == address}))
                found = [
                    Endpoint(
                        text,
                        address,
                        "any",
                        "no-tls" if dane else "not-applicable",
                        f"no TLS handshake succeeded ({errors})",
                    )
                ]
            check.endpoints += found
        check.hazards += self._hazards(text, check, presented)
        if check.dane == "in force" and tlsa_lookup is not None:
            check.hazards += self._authoritative(text, check, tlsa_lookup, presented, reference)
        for lookup in [*lookups, *([tlsa_lookup] if tlsa_lookup is not None else [])]:
            check.hazards += self._expiry(text, lookup)
        return check

    def _authoritative(
        self,
        host: str,
        check: HostCheck,
        tlsa: Lookup,
        presented: dict[tuple[str, str], Presented],
        reference: list[str],
    ) -> list[Hazard]:
        """Read the TLSA owner from every authoritative server (H18, lame servers)."""
        owner = tlsa.final or tlsa.name
        servers = self._servers(owner)
        if not servers:
            check.authoritative = ["could not find the zone's authoritative servers; not compared"]
            return []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            views = list(pool.map(lambda server: self.view.view(server, owner), servers))
        check.authoritative = [
            f"{v.server}: "
            + (f"{len(v.records)} record(s), TTL {v.ttl}" if v.records is not None else str(v.error))
            for v in views
        ]
        chains = {(p.algorithm, p.chain[0]): p.chain for p in presented.values() if p.chain}
        labelled = [(algorithm.upper(), chain) for (algorithm, _), chain in chains.items()]
        return server_hazards(host, owner.to_text(omit_final_dot=True), views, labelled, reference, self.now)

    def _servers(self, owner: dns.name.Name) -> list[Server]:
        """The configured servers, or every address of the zone's NS names (once per zone:
        the MX hosts of a domain usually share one)."""
        if self.nameservers is not None:
            return self.nameservers
        zone = self.resolver.zone_of(owner)
        if zone is None:
            return []
        if zone not in self.zone_servers:
            self.zone_servers[zone] = self.resolver.authoritative_servers(zone)
        return self.zone_servers[zone]

    def _expiry(self, host: str, lookup: Lookup) -> list[Hazard]:
        """H7 ahead of time: signatures that lapse within the margin mean the signer has stalled."""
        if not lookup.secure or lookup.expires is None:
            return []
        expires = dt.datetime.fromtimestamp(lookup.expires, dt.UTC)
        left = expires - self.now
        if left > self.rrsig_margin:
            return []
        what = dns.rdatatype.to_text(lookup.rdtype)
        return [
            Hazard(
                "H7",
                Severity.RISK,
                f"the signatures over {what} at {(lookup.final or lookup.name).to_text(omit_final_dot=True)} "
                f"expire {expires:%Y-%m-%d %H:%MZ} (in {_hours(left)}): when they lapse the lookup is bogus "
                "and mail is deferred",
                "check that the zone is being re-signed (signer running, keys readable)",
                host,
            )
        ]

    def _tlsa(
        self, host: dns.name.Name, expanded: dns.name.Name | None
    ) -> tuple[list[Tlsa], Lookup | None, str]:
        if self.records is not None:
            return list(self.records), None, f"{owner_name(host.to_text(), self.port)} (from --records)"
        last = None
        for candidate in ([expanded] if expanded else []) + [host]:
            owner = owner_name(candidate.to_text(), self.port)
            lookup = self.resolver.lookup(owner, dns.rdatatype.TLSA)
            last = (lookup, owner)
            if lookup.status in ("secure", "bogus", "error") or (lookup.found and candidate == host):
                break
        assert last is not None
        lookup, owner = last
        records = [Tlsa.from_rdata(r) for r in lookup.rrset] if lookup.rrset is not None else []
        return records, lookup, owner.to_text()

    def _endpoint(
        self, host: str, address: str, algorithm: str, records: list[Tlsa], reference: list[str], dane: bool
    ) -> tuple[Endpoint | None, Presented]:
        """One handshake offering one algorithm; None when the server has no such chain."""
        presented = handshake(
            self.connect.get(address, address), self.port, host, algorithm, self.protocol, self.timeout
        )
        if presented.error:
            if not presented.starttls:
                verdict = "no-starttls" if dane else "not-applicable"
                detail = f"{self.upgrade} is not offered" + (" but TLSA is published" if dane else "")
                return Endpoint(host, address, algorithm, verdict, detail), presented
            if "handshake failed" in presented.error:
                return None, presented
            return Endpoint(host, address, algorithm, "unreachable", presented.error), presented
        spki = spki_sha256(presented.chain[0].public_key()) if presented.chain else None
        if not dane:
            return Endpoint(
                host, address, algorithm, "not-applicable", "DANE not in force; TLS works", spki
            ), presented
        match = verify(presented.chain, records, reference, self.now)
        return Endpoint(
            host, address, algorithm, "pass" if match.ok else "fail", match.detail, spki
        ), presented

    def _hazards(
        self, host: str, check: HostCheck, presented: dict[tuple[str, str], Presented]
    ) -> list[Hazard]:
        out: list[Hazard] = []
        for e in check.endpoints:
            if e.verdict == "no-starttls":
                out.append(
                    Hazard(
                        "H20",
                        Severity.FATAL,
                        f"{e.address} does not offer {self.upgrade} while TLSA is "
                        "published: DANE clients refuse to connect (senders defer mail)",
                        f"enable {self.upgrade} for every client",
                        host,
                    )
                )
        if check.dane != "in force" or not check.tlsa:
            return out
        chains = []
        for (_address, _algorithm), shown in presented.items():
            if shown.chain:
                leaf = shown.chain[0]
                chain = Chain(leaf, leaf.public_key(), tuple(shown.chain[1:]))
                issuer = self.catalog.issuer_of(chain)
                label = f"{key_type(leaf.public_key())} chain of {host}"
                chains.append(facts_from_chain(chain, label, issuer.name if issuer else None))
        unique = {c.leaf.spki_der: c for c in chains}
        out += stale_catalog(list(unique.values()), host)
        roots = issuers_from_catalog(self.catalog, roots=True)
        out += lint(
            frozenset(check.tlsa),
            list(unique.values()),
            issuers=issuers_from_catalog(self.catalog),
            catalog_roots=roots,
            owner=check.tlsa_owner,
        )
        for e in check.endpoints:
            if e.verdict == "fail" and "DANE-TA" not in e.detail and "matches, but" in e.detail:
                out.append(
                    Hazard(
                        "H10",
                        Severity.FATAL,
                        f"{e.address} {e.algorithm}: {e.detail}",
                        "the certificate must name the MX host and be within its dates",
                        host,
                    )
                )
        return list(dict.fromkeys(out))


def _hours(left: dt.timedelta) -> str:
    hours = max(0, int(left.total_seconds() // 3600))
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def _bogus(where: str, what: str) -> Hazard:
    return Hazard(
        "H7",
        Severity.FATAL,
        f"{what} lookup for {where} is bogus (DNSSEC fails): mail is deferred",
        "fix the signatures / DS of the zone",
        where,
    )


def nagios(result: CheckResult) -> tuple[int, str]:
    """Exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and the one status line with perfdata."""
    endpoints = [e for h in result.hosts for e in h.endpoints]
    passed = sum(1 for e in endpoints if e.verdict == "pass")
    failed = sum(1 for e in endpoints if e.verdict in ("fail", "no-starttls"))
    level = worst(result.all_hazards)
    verdict = result.verdict
    if verdict == "fail" or level is Severity.FATAL:
        code, word = 2, "CRITICAL"
    elif verdict == "unknown":
        code, word = 3, "UNKNOWN"
    elif verdict != "pass" or level is Severity.RISK:
        code, word = 1, "WARNING"
    else:
        code, word = 0, "OK"
    first = next((h for h in result.all_hazards if h.severity is Severity.FATAL), None) or next(
        iter(result.all_hazards), None
    )
    why = f"; {first.code} {first.message}" if first else ""
    line = (
        f"DANE {word} - {result.target}: {verdict}, {passed}/{len(endpoints)} endpoints verified{why} | "
        f"hosts={len(result.hosts)} endpoints={len(endpoints)} verified={passed} failed={failed} "
        f"hazards={len(result.all_hazards)}"
    )
    return code, line
