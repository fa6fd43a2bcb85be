"""Lookups through a validating resolver, reporting DNSSEC status as a DANE sender sees it.

"secure" is the resolver's AD bit (RFC 6840 §5.7: the query sets AD to ask for it).
A SERVFAIL that goes away with CD set is "bogus": the data exists but does not
validate, and a DANE sender defers mail (RFC 7672 §2.1.1).  CNAMEs are followed as the
answer shows them, and the name they led to is reported.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from tlsa_manager.endpoints import Endpoint, parse_endpoint
from tlsa_manager.errors import UsageError


@dataclass(frozen=True)
class Lookup:
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    status: str  # secure | insecure | bogus | nxdomain | nodata | error
    secure: bool
    rrset: dns.rrset.RRset | None = None
    final: dns.name.Name | None = None  # after CNAMEs
    cname: bool = False
    error: str | None = None
    #: the earliest RRSIG expiration (epoch seconds) over the signatures of ``rrset``
    expires: int | None = None
    #: RRSIGs came with ``rrset``: if it is not secure, the resolver did not validate it
    #: (not a validating resolver), or the zone's DS is missing at its parent
    signed: bool = False

    @property
    def found(self) -> bool:
        return self.rrset is not None


class ValidatingResolver:
    def __init__(self, address: str | None = None, timeout: float = 5.0) -> None:
        if address:
            self.endpoint = parse_endpoint(address)
        else:
            try:
                system = dns.resolver.Resolver()
            except dns.exception.DNSException:
                raise UsageError("no system resolver configured", "give --resolver ADDR[:PORT]") from None
            self.endpoint = Endpoint(str(system.nameservers[0]), str(system.nameservers[0]), 53)
        self.timeout = timeout

    def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, cd: bool) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD | dns.flags.RD
        if cd:
            query.flags |= dns.flags.CD
        return query

    def _ask(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, cd: bool = False
    ) -> dns.message.Message:
        query = self._query(name, rdtype, cd)
        try:
            response, _ = dns.query.udp_with_fallback(
                query, self.endpoint.address, timeout=self.timeout, port=self.endpoint.port
            )
        except dns.exception.FormError:
            return self._ask_leniently(query)
        return response

    def _ask_leniently(self, query: dns.message.Message) -> dns.message.Message:
        """The question again over TCP, its answer read record by record: a record that does
        not parse (a "3 1 1" whose digest is not 32 bytes) is left out, as a DANE sender
        leaves out an unusable record (Postfix: "unusable TLSA RR"), instead of the
        whole RRset being lost and the verdict turning "unknown"."""
        address = (self.endpoint.address, self.endpoint.port)
        with socket.create_connection(address, timeout=self.timeout) as sock:
            wire = query.to_wire()
            sock.sendall(len(wire).to_bytes(2, "big") + wire)
            with sock.makefile("rb") as reader:  # reads exactly what is asked, as endpoints' pipeline
                head = reader.read(2)
                length = int.from_bytes(head, "big") if len(head) == 2 else 0
                body = reader.read(length)
        if not body or len(body) != length:
            raise ConnectionError("the resolver closed the connection mid-answer")
        response = dns.message.from_wire(body, continue_on_error=True)
        if response.id != query.id:
            raise ConnectionError("the answer is not for this question")
        return response

    def lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Lookup:
        try:
            response = self._ask(name, rdtype)
        except (dns.exception.Timeout, TimeoutError):
            return Lookup(name, rdtype, "error", False, error=f"no answer from the resolver {self.endpoint}")
        except dns.exception.FormError:
            unreadable = f"resolver {self.endpoint}: an answer that does not parse"
            return Lookup(name, rdtype, "error", False, error=unreadable)
        except (OSError, dns.exception.DNSException) as exc:
            return Lookup(
                name, rdtype, "error", False, error=f"resolver {self.endpoint}: {type(exc).__name__}"
            )
        secure = bool(response.flags & dns.flags.AD)
        rcode = response.rcode()
        if rcode == dns.rcode.SERVFAIL:
            try:
                again = self._ask(name, rdtype, cd=True)
                if again.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    return Lookup(name, rdtype, "bogus", False, error="DNSSEC validation fails (bogus)")
            except (OSError, dns.exception.DNSException):
                pass
            return Lookup(name, rdtype, "error", False, error="SERVFAIL")
        if rcode == dns.rcode.NXDOMAIN:
            return Lookup(name, rdtype, "nxdomain", secure)
        if rcode != dns.rcode.NOERROR:
            return Lookup(name, rdtype, "error", False, error=dns.rcode.to_text(rcode))
        current, followed = name, False
        for _ in range(8):
            cname = response.get_rrset(response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                break
            current, followed = next(iter(cname)).target, True
        rrset = response.get_rrset(response.answer, current, dns.rdataclass.IN, rdtype)
        status = ("secure" if secure else "insecure") if rrset is not None else "nodata"
        sigs = response.get_rrset(response.answer, current, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        expires = min((int(sig.expiration) for sig in sigs), default=None) if sigs is not None else None
        signed = sigs is not None
        return Lookup(name, rdtype, status, secure, rrset, current, followed, expires=expires, signed=signed)

    def zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        """The apex of the zone holding ``name``: the SOA owner in the answer or the authority section."""
        try:
            response = self._ask(name, dns.rdatatype.SOA)
        except (OSError, dns.exception.DNSException):
            return None
        for section in (response.answer, response.authority):
            for rrset in section:
                if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
                    return rrset.name
        return None

    def authoritative_servers(self, zone: dns.name.Name) -> list[Endpoint]:
        """Every address of every NS name of ``zone`` (port 53), named "ns1.example.com (192.0.2.1)"."""
        ns = self.lookup(zone, dns.rdatatype.NS)
        out = []
        for target in sorted(r.target for r in ns.rrset or []):
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                for address in self.lookup(target, rdtype).rrset or []:
                    text = target.to_text(omit_final_dot=True)
                    out.append(Endpoint(f"{text} ({address.address})", address.address, 53))
        return out
