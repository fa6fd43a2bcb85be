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
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
from tlsa_manager.errors import ConfigError, UsageError
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """An authoritative server address: ``name`` for reports, ``address``/``port`` to query."""

    name: str
    address: str
    port: int = 53

    def __str__(self) -> str:
        return self.name


def parse_endpoint(text: str) -> Endpoint:
    """``127.0.0.1:5300``, ``[::1]:5300``, ``192.0.2.1`` or ``ns1.example.com[:53]``."""
    value = text.strip()
    port = 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        port = _port(p, text)
    else:
        host = value
    if not host:
        raise ConfigError(f"nameserver {text!r} has no address", 'write e.g. "127.0.0.1:5300"')
    address = host
    if not _is_ip(host):
        try:
            address = str(socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0])
        except OSError:
            raise ConfigError(f"nameserver {host!r} does not resolve", "give its address instead") from None
    return Endpoint(value, str(address), port)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"nameserver {whole!r} has a bad port", 'write e.g. "127.0.0.1:5300"')
    return int(text)


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            continue
    return False


def ask(
    endpoint: Endpoint,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    timeout: float = 5.0,
    dnssec: bool = True,
    tcp: bool = False,
) -> dns.message.Message:
    """One query (UDP falling back to TCP on truncation, or TCP); raises dns.exception/OSError."""
    query = dns.message.make_query(qname, rdtype, want_dnssec=dnssec)
    query.flags &= ~dns.flags.RD
    if tcp:
        return dns.query.tcp(query, endpoint.address, timeout=timeout, port=endpoint.port)
    response, _ = dns.query.udp_with_fallback(query, endpoint.address, timeout=timeout, port=endpoint.port)
    return response


Answer = wire.Reply | Exception


def ask_many(
    endpoint: Endpoint,
    questions: Sequence[tuple[dns.name.Name, int]],
    timeout: float = 5.0,
    dnssec: bool = True,
    window: int = 64,
) -> list[Answer]:
    """Many queries pipelined over one TCP connection (RFC 7766 §6.2.1).

    Up to ``window`` queries are in flight; answers are matched by message id and
    question, in any order.  A fleet of a thousand owner names is then a thousand
    queries on one connection instead of a thousand connections (or round trips).
    When the server closes the connection part way, the rest go on a new one; when a
    connection makes no progress at all, every question left gets that error (no
    per-query timeouts).
    """
    results: list[Answer | None] = [None] * len(questions)
    while True:
        remaining = [i for i, r in enumerate(results) if r is None]
        if not remaining:
            break
        progress, error = _pipeline(endpoint, questions, remaining, results, timeout, window, dnssec)
        if error is not None and not progress:
            for index in remaining:
                if results[index] is None:
                    results[index] = error
    return [r for r in results if r is not None]


def _pipeline(
    endpoint: Endpoint,
    questions: Sequence[tuple[dns.name.Name, int]],
    todo: Sequence[int],
    results: list[Answer | None],
    timeout: float,
    window: int,
    dnssec: bool,
) -> tuple[int, Exception | None]:
    """Send ``todo`` on one connection; fill ``results``; (answers received, error that ended it)."""
    progress = 0
    family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect((endpoint.address, endpoint.port))
            reader = sock.makefile("rb")
            inflight: dict[int, int] = {}
            position = 0
            while position < len(todo) or inflight:
                batch = []
                while position < len(todo) and len(inflight) < window:
                    index = todo[position]
                    qid = index % 65536
                    while qid in inflight:
                        qid = (qid + 1) % 65536
                    name, rdtype = questions[index]
                    message = wire.query(qid, name, rdtype, dnssec)
                    batch.append(len(message).to_bytes(2, "big") + message)
                    inflight[qid] = index
                    position += 1
                if batch:
                    sock.sendall(b"".join(batch))
                head = reader.read(2)
                body = reader.read(int.from_bytes(head, "big")) if len(head) == 2 else b""
                if not body:
                    raise ConnectionResetError("the server closed the connection")
                reply = wire.parse(body)
                index = inflight.pop(reply.id, -1)
                if index < 0 or reply.question != wire.labels(questions[index][0]):
                    raise ConnectionError("an answer to no question asked")
                results[index] = reply
                progress += 1
    except (OSError, ValueError) as exc:
        return progress, exc
    return progress, None


class DnsView:
    """Reads the TLSA RRset at owner names from a list of authoritative endpoints."""

    def __init__(self, endpoints: Sequence[Endpoint], timeout: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._dnskeys: dict[tuple[Endpoint, dns.name.Name], dns.rrset.RRset | None] = {}
        #: signature checks already made, by what was signed, the signature and the keys:
        #: every server of a zone serves the same bytes, so each is checked once per run
        self._checked: dict[tuple[bytes, ...], str | None] = {}
        self._keys: dict[tuple[Endpoint, dns.name.Name], rrsig.ZoneKeys | None] = {}

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        """Every owner from every server: one pipelined TCP connection per server."""
        if not owners:
            return {}
        per_server = [
            ask_many(e, [(o, dns.rdatatype.TLSA) for o in owners], self.timeout) for e in self.endpoints
        ]
        return {
            owner: tuple(
                self._view(e, owner, answers[i])
                for e, answers in zip(self.endpoints, per_server, strict=True)
            )
            for i, owner in enumerate(owners)
        }

    def view(self, endpoint: Endpoint, owner: dns.name.Name) -> ServerView:
        """One server's answer for one owner (UDP, TCP on truncation)."""
        try:
            response: Answer = wire.parse(ask(endpoint, owner, dns.rdatatype.TLSA, self.timeout).to_wire())
        except (OSError, ValueError, dns.exception.DNSException) as exc:
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
            return ServerView(endpoint.name, None, None, "a TLSA record that does not parse")
        problem = self._signature_problem(endpoint, owner, response, found)
        if problem:
            return ServerView(endpoint.name, None, None, problem)
        return ServerView(endpoint.name, records, min(r.ttl for r in found))

    def _signature_problem(
        self, endpoint: Endpoint, owner: dns.name.Name, reply: wire.Reply, found: Sequence[wire.Record]
    ) -> str | None:
        sigs = reply.signatures(wire.labels(owner), wire.TYPE_TLSA)
        if not sigs:
            zone = self._signed_zone(endpoint, owner)
            return f"answer has no RRSIG although {zone} is signed" if zone else None
        try:
            parsed = [rrsig.parse(s.rdata) for s in sigs]
        except rrsig.SignatureError as exc:
            return str(exc)
        signer = parsed[0].signer
        keys = self._zone_keys(endpoint, signer)
        if keys is None:
            return f"no DNSKEY for {signer} from this server"
        rdatas = sorted(r.rdata for r in found)
        key = (owner.to_wire() or b"", *rdatas, b"|", *sorted(s.rdata for s in sigs), b"|", keys.digest)
        if key not in self._checked:
            try:
                rrsig.check(owner, wire.TYPE_TLSA, rdatas, parsed, keys, time.time())
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
