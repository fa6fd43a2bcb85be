"""DNS wire format for the bulk path: one question out, the answer's records back.

A fleet run asks every authoritative server about every owner name: thousands of
small queries.  Building and parsing each one as a dnspython message costs about a
millisecond of CPU (most of it in the authority section's NSEC records and in
immutable objects we never look at); the few fields the observation needs are read
here straight from the bytes.  Signatures are still checked by dnspython
(``dns.dnssec``): only the parsing is ours.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import NamedTuple

import dns.name

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")
CLASS_IN = 1
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_OPT = 41
TYPE_RRSIG = 46
TYPE_TLSA = 52
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
EDNS_DO = 0x8000
EDNS_PAYLOAD = 1232

Labels = tuple[bytes, ...]


class WireError(ValueError):
    """The bytes are not a DNS message we can read."""


class Record(NamedTuple):
    """One resource record (a tuple: thousands are made per run, a dataclass costs more)."""

    name: Labels  # lower-case labels, without the root
    rdtype: int
    rdclass: int
    ttl: int
    rdata: bytes
    #: where the RDATA starts in the whole message (dnspython can parse it from there)
    offset: int


@dataclass(frozen=True)
class Reply:
    id: int
    flags: int
    rcode: int
    question: Labels
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    wire: bytes

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & FLAG_AA)

    def records(self, owner: Labels, rdtype: int) -> list[Record]:
        return [r for r in self.answer if r.rdtype == rdtype and r.rdclass == CLASS_IN and r.name == owner]

    def signatures(self, owner: Labels, covered: int) -> list[Record]:
        return [r for r in self.records(owner, TYPE_RRSIG) if struct.unpack_from("!H", r.rdata)[0] == covered]


@functools.lru_cache(maxsize=65536)
def labels(name: dns.name.Name) -> Labels:
    """The lower-case labels of an absolute name, as :func:`parse` returns them (asked for
    every answer of a run, for the same owner names: remembered)."""
    return tuple(label.lower() for label in name.labels if label)


def query(qid: int, name: dns.name.Name, rdtype: int, dnssec: bool) -> bytes:
    """A query with RD off and EDNS0 (the DO bit when ``dnssec``), as bytes."""
    qname = b"".join(bytes([len(label)]) + label for label in name.labels)
    if not name.is_absolute():
        qname += b"\0"
    opt = b"\0" + struct.pack("!HHBBHH", TYPE_OPT, EDNS_PAYLOAD, 0, 0, EDNS_DO if dnssec else 0, 0)
    return HEADER.pack(qid, 0, 1, 0, 0, 1) + qname + struct.pack("!HH", rdtype, CLASS_IN) + opt


def _name(wire: bytes, offset: int, seen: dict[int, Labels] | None = None) -> tuple[Labels, int]:
    """Read a (possibly compressed) name: its labels and the offset after it.

    ``seen`` holds the names already read in this message by where they start: a
    compression pointer to one of them (every record's owner points at the question)
    is answered from it."""
    if seen is not None and offset + 1 < len(wire) and wire[offset] & 0xC0 == 0xC0:
        known = seen.get(((wire[offset] & 0x3F) << 8) | wire[offset + 1])
        if known is not None:
            return known, offset + 2
    start = offset
    out: list[bytes] = []
    end = -1
    jumps = 0
    while True:
        if offset >= len(wire):
            raise WireError("name runs past the end")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise WireError("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            jumps += 1
            if jumps > 64:
                raise WireError("compression loop")
            continue
        if length & 0xC0:
            raise WireError("unknown label type")
        offset += 1
        if length == 0:
            labels = tuple(out)
            if seen is not None:
                seen[start] = labels
            return labels, (end if end >= 0 else offset)
        out.append(wire[offset : offset + length].lower())
        offset += length


def _records(wire: bytes, offset: int, count: int, seen: dict[int, Labels]) -> tuple[list[Record], int]:
    out = []
    size = len(wire)
    for _ in range(count):
        name, offset = _name(wire, offset, seen)
        if offset + 10 > size:
            raise WireError("record header runs past the end")
        rdtype, rdclass, ttl, rdlen = RR_FIXED.unpack_from(wire, offset)
        offset += 10
        if offset + rdlen > size:
            raise WireError("record data runs past the end")
        out.append(Record(name, rdtype, rdclass, ttl, wire[offset : offset + rdlen], offset))
        offset += rdlen
    return out, offset


def parse(wire: bytes) -> Reply:
    """Header, question, answer and authority of a response (additional is skipped)."""
    if len(wire) < HEADER.size:
        raise WireError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, _arcount = HEADER.unpack_from(wire)
    if not flags & FLAG_QR:
        raise WireError("not a response")
    if qdcount != 1:
        raise WireError("not exactly one question")
    seen: dict[int, Labels] = {}
    question, offset = _name(wire, HEADER.size, seen)
    offset += 4
    answer, offset = _records(wire, offset, ancount, seen)
    authority, offset = _records(wire, offset, nscount, seen)
    return Reply(qid, flags, flags & 0xF, question, tuple(answer), tuple(authority), wire)
