"""Check an RRSIG over a TLSA RRset straight from wire bytes (RFC 4034 §3.1.8.1, RFC 4035 §5.3).

A fleet run checks one signature per owner name: thousands.  Through dnspython's
``dns.dnssec.validate`` each check first builds rdata objects and parses the zone's
public key again, which costs more than the signature check itself.  Here the signed
data is assembled from the bytes (TLSA RDATA holds no domain names, so its wire form
is its canonical form), the keys are parsed once per zone and server, and the
signature is checked by dnspython's own algorithm classes (``dns.dnssecalgs``) under
its default policy, with the same rules: the key must be a zone key of protocol 3,
not revoked, of the signature's algorithm and key tag; the signature must be within
its validity period; the labels field decides wildcard expansion.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.dnssecalgs
import dns.exception
import dns.name
import dns.rrset
from cryptography.exceptions import InvalidSignature

from tlsa_manager.records import hashed_name

SIG_FIXED = struct.Struct("!HBBIIIH")  # type covered, algorithm, labels, TTL, expiration, inception, tag
ZONE_FLAG = 0x0100
REVOKE_FLAG = 0x0080


class SignatureError(ValueError):
    """Why a signature does not check out, in a few words."""


@dataclass(frozen=True)
class Signature:
    type_covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: dns.name.Name
    #: the RDATA before the signature, the signer's name in canonical (lower-case) form
    head: bytes
    value: bytes


def parse(rdata: bytes) -> Signature:
    """An RRSIG's RDATA (its signer name is never compressed, RFC 4034 §3.1.7)."""
    if len(rdata) < SIG_FIXED.size + 1:
        raise SignatureError("an RRSIG that does not parse")
    covered, algorithm, count, ttl, expiration, inception, tag = SIG_FIXED.unpack_from(rdata)
    offset = SIG_FIXED.size
    while True:
        if offset >= len(rdata):
            raise SignatureError("an RRSIG that does not parse")
        length = rdata[offset]
        if length & 0xC0:
            raise SignatureError("an RRSIG that does not parse")
        offset += 1 + length
        if length == 0:
            break
    if offset > len(rdata):
        raise SignatureError("an RRSIG that does not parse")
    signer, canonical = _signer(rdata[SIG_FIXED.size : offset])
    head = rdata[: SIG_FIXED.size] + canonical
    return Signature(covered, algorithm, count, ttl, expiration, inception, tag, signer, head, rdata[offset:])


@functools.lru_cache(maxsize=1024)
def _signer(wire: bytes) -> tuple[dns.name.Name, bytes]:
    """The signer's name and its canonical (lower-case) wire form: a zone's thousands of
    signatures name the same signer, so one name object (and one hash) serves them all."""
    labels = []
    offset = 0
    while wire[offset]:
        length = wire[offset]
        labels.append(wire[offset + 1 : offset + 1 + length].lower())
        offset += 1 + length
    return hashed_name((*labels, b"")), b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


Verify = Callable[[bytes, bytes], None]


class ZoneKeys:
    """A zone's DNSKEY RRset as one server serves it, parsed once into verifiers."""

    def __init__(self, zone: dns.name.Name, keys: dns.rrset.RRset) -> None:
        self.zone = zone
        self.by_tag: dict[tuple[int, int], list[Verify]] = {}
        policy = dns.dnssec.default_policy
        for key in keys:
            if not key.flags & ZONE_FLAG or key.protocol != 3 or key.flags & REVOKE_FLAG:
                continue
            if not policy.ok_to_validate(key):
                continue
            try:
                verifier = dns.dnssecalgs.get_algorithm_cls_from_dnskey(key).public_cls.from_dnskey(key)
            except (dns.exception.DNSException, ValueError, TypeError):
                continue  # an algorithm we cannot check never validates anything
            tag = dns.dnssec.key_id(key)
            self.by_tag.setdefault((int(key.algorithm), tag), []).append(verifier.verify)
        self.digest = b"".join(sorted(k.to_digestable() for k in keys))


def check(
    owner: dns.name.Name,
    rdtype: int,
    rdatas: Sequence[bytes],
    signatures: Sequence[Signature],
    keys: ZoneKeys,
    now: float,
) -> None:
    """Raise :class:`SignatureError` unless one of ``signatures`` validates the RRset."""
    why = "no RRSIG validated"
    for sig in signatures:
        try:
            _check_one(owner, rdtype, rdatas, sig, keys, now)
            return
        except SignatureError as exc:
            why = str(exc)
    raise SignatureError(why)


def _check_one(
    owner: dns.name.Name, rdtype: int, rdatas: Sequence[bytes], sig: Signature, keys: ZoneKeys, now: float
) -> None:
    if sig.type_covered != rdtype:
        raise SignatureError("the RRSIG does not cover this type")
    if sig.signer != keys.zone or not owner.is_subdomain(sig.signer):
        raise SignatureError(f"signed by {sig.signer}, not by the zone {keys.zone}")
    verifiers = keys.by_tag.get((sig.algorithm, sig.key_tag))
    if not verifiers:
        raise SignatureError("unknown key")
    if sig.expiration < now:
        raise SignatureError("expired")
    if sig.inception > now:
        raise SignatureError("not yet valid")
    name = [label.lower() for label in owner.labels if label]
    if sig.labels > len(name):
        raise SignatureError("owner name longer than RRSIG labels")
    if sig.labels < len(name):
        name = [b"*", *name[len(name) - sig.labels :]]
    prefix = b"".join(bytes([len(x)]) + x for x in name) + b"\0"
    prefix += struct.pack("!HHI", rdtype, 1, sig.original_ttl)
    data = sig.head + b"".join(prefix + struct.pack("!H", len(r)) + r for r in sorted(set(rdatas)))
    for verify in verifiers:
        try:
            verify(sig.value, data)
            return
        except (InvalidSignature, dns.exception.ValidationFailure, ValueError):
            continue  # not this key
    raise SignatureError("verify failure")
