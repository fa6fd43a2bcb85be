"""Authoritative endpoints and zone discovery: one place for both, below every provider.

A provider talks to its backend (an UPDATE port, an HTTP API, a file); which servers
then *serve* the zone is a DNS question with one answer for all of them: the zone's NS
names and their addresses, asked of a server that knows the zone (or the ``nameservers``
list the operator configured).  Providers depend on this module and ``provider.py``
only, not on the reading side (``dnsview``), so adding a provider never touches it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype

from tlsa_manager import wire
from tlsa_manager.errors import ConfigError, ProviderError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Endpoint:
    """An authoritative server address: ``name`` for reports, ``address``/``port`` to query."""

    name: str
    address: str
    port: int = 53

    def __str__(self) -> str:
        return self.name


#: endpoints parsed from an address (no name to resolve), by their text: a fleet's hosts
#: list the same servers, and each host's were parsed again (two per host)
_LITERAL: dict[str, Endpoint] = {}


def parse_endpoint(text: str) -> Endpoint:
    """``127.0.0.1:5300``, ``[::1]:5300``, ``192.0.2.1`` or ``ns1.example.com[:53]``.

    One with an address is kept and shared (the same text always gives the same
    value); one with a name is resolved on every call, as its address may change."""
    known = _LITERAL.get(text)
    if known is not None:
        return known
    value, host, port = split_endpoint(text)
    if _is_ip(host):
        if len(_LITERAL) >= 4096:
            _LITERAL.clear()
        endpoint = _LITERAL[text] = Endpoint(value, host, port)
        return endpoint
    try:
        address = str(socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0])
    except OSError:
        raise ConfigError(f"nameserver {host!r} does not resolve", "give its address instead") from None
    except UnicodeError:  # the resolver's IDNA encoding refuses it before any lookup
        raise ConfigError(
            f"nameserver {host!r} is not a valid host name", "give its address or its DNS name"
        ) from None
    return Endpoint(value, address, port)


def split_endpoint(text: str) -> tuple[str, str, int]:
    """The text stripped, its host and its port (53 when none is written), without any
    lookup: what the configuration can check when it is loaded."""
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
    return value, host, port


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


def ask_one(endpoint: Endpoint, qname: dns.name.Name, rdtype: int, timeout: float = 5.0) -> wire.Reply:
    """One query over UDP (TCP when the answer is truncated), read with :mod:`wire`, not
    dnspython: a record dnspython refuses to parse (a TLSA digest of the wrong length)
    must not cost the whole answer.  Raises OSError or ValueError."""
    qid = int.from_bytes(os.urandom(2), "big")
    family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((endpoint.address, endpoint.port))  # answers from elsewhere never arrive
        sock.send(wire.query(qid, qname, rdtype, dnssec=True))
        while True:  # a late answer to an earlier query is not ours; junk never extends the wait
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            with contextlib.suppress(wire.WireError):
                reply = wire.parse(sock.recv(65535))
                if reply.id == qid and reply.question == wire.labels(qname):
                    break
    if not reply.flags & wire.FLAG_TC:
        return reply
    answer = ask_many(endpoint, [(qname, rdtype)], timeout)[0]
    if isinstance(answer, Exception):
        raise answer
    return answer


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
                # refill once half the window is answered: one send per 32 queries, not per answer
                refill = len(inflight) <= window // 2
                while refill and position < len(todo) and len(inflight) < window:
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


def unreachable(endpoint: Endpoint, exc: BaseException, timeout: float) -> ProviderError:
    """One line for a server that did not answer, naming the cause and not the traffic."""
    if isinstance(exc, dns.exception.Timeout | TimeoutError):
        return ProviderError(
            f"no answer from {endpoint} within {timeout:g}s",
            "check that the server runs and the port is open",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ProviderError(
            f"{endpoint} refused the connection (server down?)", "start the name server or fix its address"
        )
    return ProviderError(f"cannot talk to {endpoint} ({type(exc).__name__})", "check the server's address")


def configured(values: object) -> list[Endpoint]:
    """The ``nameservers = [...]`` list of a provider or host, parsed."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise ConfigError("nameservers must be a list of host:port strings", 'e.g. ["127.0.0.1:5300"]')
    return [parse_endpoint(str(v)) for v in values]


@functools.lru_cache(maxsize=65536)
def host_of(owner: dns.name.Name) -> dns.name.Name:
    """``_25._tcp.mx.example.com`` -> ``mx.example.com``: the name whose zone is looked for
    (a name without the ``_port._proto`` prefix is its own host).  Sliced from the labels
    and remembered: one object per owner, so the run's lookups by it find it by identity
    (two ``parent()`` calls compared the name with the root four times per call)."""
    labels = owner.labels
    return dns.name.Name(labels[2:]) if len(labels) > 2 and labels[0].startswith(b"_") else owner


def parent_domain(owner: dns.name.Name) -> dns.name.Name:
    """The parent of the owner's host: where its zone is assumed to be when nothing better
    is known (the unit of a change set, the SOA asked for a negative TTL).  Sliced from the
    labels, not three ``parent()`` calls: a fleet asks this for every owner (issue 14)."""
    return dns.name.Name(parent_labels(owner))


def parent_labels(owner: dns.name.Name) -> tuple[bytes, ...]:
    """The labels of :func:`parent_domain`, without making a Name of them (a key)."""
    labels = owner.labels
    return labels[3:] if labels and labels[0].startswith(b"_") else labels[1:]


def enclosing(owner: dns.name.Name, lookup: Callable[[str], _T | None], *, tld: bool = False) -> _T | None:
    """The first non-None ``lookup(name)`` from the owner's host name upwards: with the
    names of the zones a provider holds, the longest zone that holds the owner.  The TLD
    itself is asked only with ``tld``."""
    candidate = host_of(owner)
    while len(candidate.labels) > (1 if tld else 2):
        found = lookup(candidate.to_text(omit_final_dot=True).lower())
        if found is not None:
            return found
        candidate = candidate.parent()
    return None


def zone_apex(server: Endpoint, owner: dns.name.Name, timeout: float = 10.0) -> dns.name.Name:
    """The apex of the zone holding ``owner``, from the SOA in ``server``'s answer."""
    try:
        response = ask(server, owner, dns.rdatatype.SOA, timeout, dnssec=False, tcp=True)
    except (OSError, dns.exception.DNSException) as exc:
        raise unreachable(server, exc, timeout) from None
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA and owner.is_subdomain(rrset.name):
                return rrset.name
    raise ProviderError(
        f"{server} is not authoritative for {owner} (no SOA in its answer)",
        "point the provider at a server of that zone, or set zone = ...",
    )


def zone_of_reply(name: dns.name.Name, reply: object) -> dns.name.Name | None:
    """The zone apex an authoritative answer names for ``name`` (its SOA), if any."""
    if not isinstance(reply, wire.Reply) or not reply.authoritative:
        return None
    for record in reply.answer + reply.authority:
        if record.rdtype != wire.TYPE_SOA:
            continue  # no name object for the records an SOA is looked for among
        apex = dns.name.Name((*record.name, b""))
        if name.is_subdomain(apex):
            return apex
    return None


def zone_nameservers(server: Endpoint, zone: dns.name.Name, timeout: float = 10.0) -> list[Endpoint]:
    """Every address of every NS name of ``zone`` as ``server`` knows them (port 53),
    named "ns1.example.com (192.0.2.1)"; NS names it has no address for are left out."""
    try:
        response = ask(server, zone, dns.rdatatype.NS, timeout, dnssec=False, tcp=True)
    except (OSError, dns.exception.DNSException) as exc:
        raise unreachable(server, exc, timeout) from None
    ns = response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.NS)
    if ns is None:
        raise ProviderError(f"{server} returned no NS for {zone}", "set nameservers = [...]")
    out = []
    for target in sorted(rdata.target for rdata in ns):
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = ask(server, target, rdtype, timeout, dnssec=False, tcp=True)
            except (OSError, dns.exception.DNSException):
                continue
            addrs = answer.get_rrset(answer.answer, target, dns.rdataclass.IN, rdtype)
            for addr in addrs or []:
                text = target.to_text(omit_final_dot=True)
                out.append(Endpoint(f"{text} ({addr.address})", addr.address, 53))
    return out
