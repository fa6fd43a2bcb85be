"""What each authoritative server serves, read directly (DO bit, signatures checked).

The deploy gate needs the answer of *every* authoritative server, not of a resolver
(dane-rules F1): each NS name x each address, or the host:port list configured.  A
server "serves" a record when its answer carries it with an RRSIG that validates
against the zone's DNSKEY as the same server returns it; a signed zone answering
without a valid signature counts as not serving.  No answer (timeout, refused,
SERVFAIL) is a view with ``records=None`` and the reason, which keeps gates closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tlsa_manager.endpoints import Endpoint, ask, parse_endpoint
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

#: re-exported: endpoints live in tlsa_manager.endpoints
__all__ = ["DnsView", "Endpoint", "ask", "negative_ttl", "parse_endpoint"]

log = logging.getLogger(__name__)


class DnsView:
    """Reads the TLSA RRset at owner names from a list of authoritative endpoints."""

    def __init__(self, endpoints: Sequence[Endpoint], timeout: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._dnskeys: dict[tuple[Endpoint, dns.name.Name], dns.rrset.RRset | None] = {}

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        return {owner: tuple(self.view(e, owner) for e in self.endpoints) for owner in owners}

    def view(self, endpoint: Endpoint, owner: dns.name.Name) -> ServerView:
        try:
            response = ask(endpoint, owner, dns.rdatatype.TLSA, self.timeout)
        except dns.exception.Timeout:
            return ServerView(endpoint.name, None, None, "timeout")
        except (OSError, dns.exception.DNSException) as exc:
            return ServerView(endpoint.name, None, None, f"no answer: {type(exc).__name__}")
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return ServerView(endpoint.name, None, None, dns.rcode.to_text(rcode))
        if not response.flags & dns.flags.AA:
            return ServerView(endpoint.name, None, None, "not authoritative for this name")
        rrset = response.get_rrset(response.answer, owner, dns.rdataclass.IN, dns.rdatatype.TLSA)
        if rrset is None:
            return ServerView(endpoint.name, frozenset(), None)
        sigs = response.get_rrset(
            response.answer, owner, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TLSA
        )
        problem = self._signature_problem(endpoint, rrset, sigs)
        if problem:
            return ServerView(endpoint.name, None, None, problem)
        return ServerView(endpoint.name, frozenset(Tlsa.from_rdata(r) for r in rrset), rrset.ttl)

    def _signature_problem(
        self, endpoint: Endpoint, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None
    ) -> str | None:
        if sigs is None:
            zone = self._signed_zone(endpoint, rrset.name)
            return f"answer has no RRSIG although {zone} is signed" if zone else None
        signer = next(iter(sigs)).signer
        keys = self._dnskey(endpoint, signer)
        if keys is None:
            return f"no DNSKEY for {signer} from this server"
        try:
            dns.dnssec.validate(rrset, sigs, {signer: keys}, now=time.time())
        except dns.exception.ValidationFailure as exc:
            return f"RRSIG does not validate ({exc})"
        return None

    def _dnskey(self, endpoint: Endpoint, zone: dns.name.Name) -> dns.rrset.RRset | None:
        key = (endpoint, zone)
        if key not in self._dnskeys:
            try:
                response = ask(endpoint, zone, dns.rdatatype.DNSKEY, self.timeout)
                self._dnskeys[key] = response.get_rrset(
                    response.answer, zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY
                )
            except (OSError, dns.exception.DNSException):
                self._dnskeys[key] = None
        return self._dnskeys[key]

    def _signed_zone(self, endpoint: Endpoint, name: dns.name.Name) -> dns.name.Name | None:
        """The enclosing zone if it publishes a DNSKEY (then unsigned answers are suspect)."""
        candidate = name
        while len(candidate.labels) > 1:
            if self._dnskey(endpoint, candidate) is not None:
                return candidate
            candidate = candidate.parent()
        return None


def negative_ttl(endpoint: Endpoint, zone: dns.name.Name, timeout: float = 5.0) -> int | None:
    """min(SOA MINIMUM, SOA TTL) of a zone as one server serves it (RFC 2308 §5)."""
    try:
        response = ask(endpoint, zone, dns.rdatatype.SOA, timeout, dnssec=False)
    except (OSError, dns.exception.DNSException):
        return None
    soa = response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.SOA)
    if soa is None:
        return None
    return int(min(soa.ttl, next(iter(soa)).minimum))
