"""What each authoritative server serves, read directly (DO bit, signatures checked).

The deploy gate needs the answer of *every* authoritative server, not of a resolver
(dane-rules F1): each NS name x each address, or the host:port list configured.  A
server "serves" a record when its answer carries it with an RRSIG that validates
against the zone's DNSKEY as the same server returns it; a signed zone answering
without a valid signature counts as not serving.  No answer (timeout, refused,
SERVFAIL) is a view with ``records=None`` and the reason, which keeps gates closed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tlsa_manager import rrsig, wire
from tlsa_manager.endpoints import Answer, Endpoint, ask, ask_many, ask_one, parse_endpoint
from tlsa_manager.errors import UsageError
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

#: re-exported: endpoints live in tlsa_manager.endpoints
__all__ = ["DnsView", "Endpoint", "ask", "ask_many", "negative_ttl", "parse_endpoint"]

log = logging.getLogger(__name__)


class DnsView:
    """Reads the TLSA RRset at owner names from a list of authoritative endpoints."""

    def __init__(
        self, endpoints: Sequence[Endpoint], timeout: float = 5.0, skip_unusable: bool = False
    ) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        #: ``check``: a record that is no usable TLSA record is left out, as senders do
        #: (RFC 7671 §4.1); ``sync`` keeps the gates closed on it instead
        self.skip_unusable = skip_unusable
        self._dnskeys: dict[tuple[Endpoint, dns.name.Name], dns.rrset.RRset | None] = {}
        #: signature checks already made, by what was signed, the signature and the keys:
        #: every server of a zone serves the same bytes, so each is checked once per run
        self._checked: dict[tuple[object, ...], str | None] = {}
        self._keys: dict[tuple[Endpoint, dns.name.Name], rrsig.ZoneKeys | None] = {}

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        """Every owner from every server: one pipelined TCP connection per server, the
        servers asked at once (each thread waits on its server's answers, so the servers'
        work overlaps), the answers then read here one server after the other (a
        signature the first server's answer proved is not checked again for the next).
        A server that takes no TCP at all but answers over UDP is asked over UDP, one
        query per owner (slower, still an answer)."""
        if not owners:
            return {}
        questions = [(o, dns.rdatatype.TLSA) for o in owners]
        if len(self.endpoints) > 1 and len(owners) > 1:
            with ThreadPoolExecutor(len(self.endpoints), thread_name_prefix="observe") as pool:
                answers = list(pool.map(lambda e: ask_many(e, questions, self.timeout), self.endpoints))
            per_server = [
                self._server_views(e, owners, a) for e, a in zip(self.endpoints, answers, strict=True)
            ]
        else:  # one owner (the propagation wait's poll): each server in turn, as it answers
            per_server = [
                self._server_views(e, owners, ask_many(e, questions, self.timeout)) for e in self.endpoints
            ]
        return {owner: tuple(views[i] for views in per_server) for i, owner in enumerate(owners)}

    def observe_server(self, endpoint: Endpoint, owners: Sequence[dns.name.Name]) -> list[ServerView]:
        """One server's answers for ``owners``, in their order (one pipelined connection)."""
        questions = [(o, dns.rdatatype.TLSA) for o in owners]
        return self._server_views(endpoint, owners, ask_many(endpoint, questions, self.timeout))

    def _server_views(
        self, endpoint: Endpoint, owners: Sequence[dns.name.Name], answers: Sequence[Answer]
    ) -> list[ServerView]:
        if isinstance(answers[0], OSError) and all(a is answers[0] for a in answers):
            first = self.view(endpoint, owners[0])  # no TCP connection at all: try UDP once
            if first.records is not None:
                return [first, *(self.view(endpoint, o) for o in owners[1:])]
        return [self._view(endpoint, o, a) for o, a in zip(owners, answers, strict=True)]

    def view(self, endpoint: Endpoint, owner: dns.name.Name) -> ServerView:
        """One server's answer for one owner (UDP, TCP on truncation)."""
        try:
            response: Answer = ask_one(endpoint, owner, dns.rdatatype.TLSA, self.timeout)
        except (OSError, ValueError) as exc:
            response = exc
        return self._view(endpoint, owner, response)

    def _view(self, endpoint: Endpoint, owner: dns.name.Name, response: Answer) -> ServerView:
        if isinstance(response, dns.exception.Timeout | TimeoutError):
            return ServerView(endpoint.name, None, None, "timeout")
        if isinstance(response, Exception):
            return ServerView(endpoint.name, None, None, f"no answer: {type(response).__name__}")
        if response.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return ServerView(endpoint.name, None, None, dns.rcode.to_text(dns.rcode.Rcode(response.rcode)))
        if not response.authoritative:
            return ServerView(endpoint.name, None, None, "not authoritative for this name")
        name = wire.labels(owner)
        found = response.records(name, wire.TYPE_TLSA)
        if not found:
            return ServerView(endpoint.name, frozenset(), None)
        try:
            records = frozenset(Tlsa.from_wire(r.rdata) for r in found)
        except (UsageError, ValueError):
            if not self.skip_unusable:
                return ServerView(endpoint.name, None, None, "a TLSA record that does not parse")
            records = frozenset(_usable(found))
        sigs = response.signatures(name, wire.TYPE_TLSA)
        parsed: list[rrsig.Signature | rrsig.SignatureError] = []
        for sig in sigs:  # each parsed once: for the check and for the signing clock
            try:
                parsed.append(rrsig.parse(sig.rdata))
            except rrsig.SignatureError as exc:
                parsed.append(exc)
        signed = max((float(p.inception) for p in parsed if isinstance(p, rrsig.Signature)), default=None)
        problem = self._signature_problem(endpoint, owner, found, sigs, parsed)
        if problem:
            return ServerView(endpoint.name, None, None, problem, signed_at=signed)
        return ServerView(endpoint.name, records, min(r.ttl for r in found), signed_at=signed)

    def _signature_problem(
        self,
        endpoint: Endpoint,
        owner: dns.name.Name,
        found: Sequence[wire.Record],
        sigs: Sequence[wire.Record],
        parsed: Sequence[rrsig.Signature | rrsig.SignatureError],
    ) -> str | None:
        """Why the RRset does not count as served (None: it validates, or the zone is unsigned).

        ``parsed`` holds each of ``sigs`` parsed (or why it does not parse)."""
        if not sigs:
            zone = self._signed_zone(endpoint, owner)
            return f"answer has no RRSIG although {zone} is signed" if zone else None
        broken = next((p for p in parsed if isinstance(p, rrsig.SignatureError)), None)
        if broken is not None:
            return str(broken)
        signatures = [p for p in parsed if isinstance(p, rrsig.Signature)]
        signer = signatures[0].signer
        keys = self._zone_keys(endpoint, signer)
        if keys is None:
            return f"no DNSKEY for {signer} from this server"
        rdatas = sorted(r.rdata for r in found)
        key = (found[0].name, *rdatas, b"|", *sorted(s.rdata for s in sigs), b"|", keys.digest)
        if key not in self._checked:
            try:
                rrsig.check(owner, wire.TYPE_TLSA, rdatas, signatures, keys, time.time())
                self._checked[key] = None
            except rrsig.SignatureError as exc:
                self._checked[key] = f"RRSIG does not validate ({exc})"
        return self._checked[key]

    def _zone_keys(self, endpoint: Endpoint, zone: dns.name.Name) -> rrsig.ZoneKeys | None:
        key = (endpoint, zone)
        if key not in self._keys:
            found = self._dnskey(endpoint, zone)
            self._keys[key] = rrsig.ZoneKeys(zone, found) if found is not None else None
        return self._keys[key]

    def _dnskey(self, endpoint: Endpoint, zone: dns.name.Name) -> dns.rrset.RRset | None:
        key = (endpoint, zone)
        if key not in self._dnskeys:
            # Remembered for the whole run, so asked over TCP first (a lost UDP datagram
            # would leave the server "not serving" until the wait's timeout), then over
            # UDP for a server that takes no TCP.
            self._dnskeys[key] = None
            for tcp in (True, False):
                try:
                    response = ask(endpoint, zone, dns.rdatatype.DNSKEY, self.timeout, tcp=tcp)
                except (OSError, dns.exception.DNSException):
                    continue
                self._dnskeys[key] = response.get_rrset(
                    response.answer, zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY
                )
                break
        return self._dnskeys[key]

    def _signed_zone(self, endpoint: Endpoint, name: dns.name.Name) -> dns.name.Name | None:
        """The enclosing zone if it publishes a DNSKEY (then unsigned answers are suspect)."""
        candidate = name
        while len(candidate.labels) > 1:
            if self._dnskey(endpoint, candidate) is not None:
                return candidate
            candidate = candidate.parent()
        return None


def _usable(found: Sequence[wire.Record]) -> list[Tlsa]:
    out = []
    for record in found:
        with contextlib.suppress(UsageError, ValueError):
            out.append(Tlsa.from_wire(record.rdata))
    return out


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
