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

import dns.name
import dns.rdatatype

from tlsa_manager import checkhazards
from tlsa_manager.agreement import server_hazards
from tlsa_manager.catalog import Catalog
from tlsa_manager.checkresult import CheckResult, Dane, Endpoint, HostCheck, nagios
from tlsa_manager.danecheck import verify
from tlsa_manager.dnsview import DnsView
from tlsa_manager.dnsview import Endpoint as Server
from tlsa_manager.hazards import Hazard
from tlsa_manager.records import Tlsa, host_name, owner_name, spki_sha256
from tlsa_manager.resolve import Lookup, ValidatingResolver
from tlsa_manager.tlsprobe import UPGRADE_NAMES, Presented, handshake, protocol_for

__all__ = ["CheckResult", "Checker", "Dane", "Endpoint", "HostCheck", "nagios"]

ALGORITHMS = ("ecdsa", "rsa")
NULL_MX = "null (RFC 7505: the domain accepts no mail, so senders never look up TLSA)"


@dataclass
class Checker:
    """One ``check`` run's settings, and the DNSKEYs and zone servers its hosts share."""

    resolver: ValidatingResolver
    catalog: Catalog
    port: int = 25
    timeout: float = 10.0
    workers: int = 8
    #: records to check instead of the published ones (``--records``)
    records: Sequence[Tlsa] | None = None
    #: address -> where to connect instead (tests)
    connect: dict[str, str] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: the authoritative servers to compare (none: every address of the zone's NS names)
    nameservers: Sequence[Server] | None = None
    rrsig_margin: dt.timedelta = dt.timedelta(days=3)
    #: the protocol asked for (None: the port's usual one)
    protocol: str | None = None
    service: str = field(init=False)
    follow_mx: bool = field(init=False)
    upgrade: str = field(init=False)
    view: DnsView = field(init=False)
    zone_servers: dict[dns.name.Name, list[Server]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.service = protocol_for(self.port, self.protocol)
        # MX records name relays: only SMTP on a relay port (not submission) follows them
        self.follow_mx = self.service == "smtp" and self.port != 587
        self.upgrade = UPGRADE_NAMES[self.service]
        # shared by all hosts of one run: each server's DNSKEY is fetched once
        self.view = DnsView([], timeout=min(self.timeout, 5.0), skip_unusable=True)

    def run(self, target: str) -> CheckResult:
        name = host_name(target)
        hazards: list[Hazard] = []
        if not self.follow_mx:
            check = self.check_host(name, None, name, False)
            return CheckResult(target, f"not used ({self.service} on port {self.port})", [check], hazards)
        mx = self.resolver.lookup(name, dns.rdatatype.MX)
        if mx.status == "bogus":
            failed = HostCheck(
                target,
                None,
                Dane.BOGUS,
                "MX lookup bogus: mail deferred",
                hazards=[checkhazards.bogus(target, "MX")],
            )
            return CheckResult(target, "bogus", [failed], hazards)
        if mx.found and mx.rrset is not None and {r.exchange for r in mx.rrset} == {dns.name.root}:
            # RFC 7505: "MX 0 ." says the domain accepts no mail; there is no host to check
            return CheckResult(target, NULL_MX, [], hazards)
        if mx.found and mx.rrset is not None:
            hosts = sorted(
                ((r.preference, r.exchange) for r in mx.rrset), key=lambda t: (t[0], t[1].to_text())
            )
            if not mx.secure:
                hazards.append(checkhazards.insecure_mx(target, mx.signed))
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
                hazards.append(checkhazards.stray_owner(target, str(owner_name(target, self.port))))
        hazards += checkhazards.shared_key(checks, target)
        return CheckResult(target, mx_text, checks, hazards)

    def check_host(
        self, host: dns.name.Name, preference: int | None, next_hop: dns.name.Name, mx_secure: bool
    ) -> HostCheck:
        """Lookups decide the host's DANE state; handshakes then give a verdict per endpoint."""
        text = host.to_text(omit_final_dot=True)
        lookups = [self.resolver.lookup(host, t) for t in (dns.rdatatype.A, dns.rdatatype.AAAA)]
        addresses = [str(r) for lk in lookups if lk.rrset is not None for r in lk.rrset]
        check = HostCheck(text, preference, Dane.ERROR, "")
        decided = checkhazards.address_state(text, lookups, addresses)
        if decided is not None:
            check.settle(decided)
            return check
        expanded = next((lk.final for lk in lookups if lk.cname and lk.final is not None), None)
        if expanded is not None:
            check.hazards.append(checkhazards.cname_mx(text, expanded))
        records, unknown, tlsa_lookup, owner = self._tlsa(host, expanded)
        check.tlsa_owner = owner
        if tlsa_lookup is not None and tlsa_lookup.cname:
            check.hazards.append(checkhazards.cname_owner(text, owner))
        secure_addresses = all(lk.secure for lk in lookups if lk.found)
        signed = any(lk.signed for lk in lookups if lk.found)
        check.settle(
            checkhazards.dane_state(text, owner, records, tlsa_lookup, secure_addresses, unknown, signed)
        )
        if not check.dane.probes:
            return check
        check.tlsa = records
        # RFC 7672 §3.2.2: an SMTP client also accepts the next-hop domain of a secure MX
        reference = [text] + ([next_hop.to_text(omit_final_dot=True)] if mx_secure and self.follow_mx else [])
        presented = self._probe(check, addresses, reference)
        check.hazards += checkhazards.endpoint_hazards(text, check, presented, self.catalog, self.upgrade)
        if check.dane is Dane.IN_FORCE and tlsa_lookup is not None:
            check.hazards += self._authoritative(text, check, tlsa_lookup, presented, reference)
        for lookup in [*lookups, *([tlsa_lookup] if tlsa_lookup is not None else [])]:
            check.hazards += checkhazards.expiry(text, lookup, self.now, self.rrsig_margin)
        return check

    def _probe(
        self, check: HostCheck, addresses: list[str], reference: list[str]
    ) -> dict[tuple[str, str], Presented]:
        """A handshake per address and algorithm, in parallel: the host's endpoints, and
        the chain each handshake was sent."""
        jobs = [(a, alg) for a in addresses for alg in ALGORITHMS]
        dane = check.dane is Dane.IN_FORCE
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(
                pool.map(
                    lambda job: self._endpoint(check.host, job[0], job[1], check.tlsa, reference, dane), jobs
                )
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
                        check.host,
                        address,
                        "any",
                        "no-tls" if dane else "not-applicable",
                        f"no TLS handshake succeeded ({errors})",
                    )
                ]
            check.endpoints += found
        return presented

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
        if self.nameservers:
            return list(self.nameservers)
        zone = self.resolver.zone_of(owner)
        if zone is None:
            return []
        if zone not in self.zone_servers:
            self.zone_servers[zone] = self.resolver.authoritative_servers(zone)
        return self.zone_servers[zone]

    def _tlsa(
        self, host: dns.name.Name, expanded: dns.name.Name | None
    ) -> tuple[list[Tlsa], int, Lookup | None, str]:
        """The TLSA records senders can use, how many more they cannot read (usage 255,
        ...: unusable, RFC 7671 §4.1), the lookup, and the owner name."""
        if self.records is not None:
            return list(self.records), 0, None, f"{owner_name(host.to_text(), self.port)} (from --records)"
        last = None
        for candidate in ([expanded] if expanded else []) + [host]:
            owner = owner_name(candidate.to_text(), self.port)
            lookup = self.resolver.lookup(owner, dns.rdatatype.TLSA)
            last = (lookup, owner)
            if lookup.status in ("secure", "bogus", "error") or (lookup.found and candidate == host):
                break
        assert last is not None
        lookup, owner = last
        records, unknown = [], 0
        for rdata in lookup.rrset or []:
            try:
                records.append(Tlsa.from_rdata(rdata))
            except ValueError:  # a usage, selector or matching type RFC 6698 does not define
                unknown += 1
        return records, unknown, lookup, owner.to_text()

    def _endpoint(
        self, host: str, address: str, algorithm: str, records: list[Tlsa], reference: list[str], dane: bool
    ) -> tuple[Endpoint | None, Presented]:
        """One handshake offering one algorithm; None when the server has no such chain."""
        presented = handshake(
            self.connect.get(address, address), self.port, host, algorithm, self.service, self.timeout
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
