"""The wire-level RRSIG check agrees with dnspython's validator on real BIND answers,
and refuses every tampering dnspython refuses."""

from __future__ import annotations

import os

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tlsa_manager import rrsig, wire
from tlsa_manager.records import owner_name

from conftest import nsupdate_add
from servers import ZONE, Bind

#: a signed TLSA answer from BIND: owner, zone, the zone's DNSKEY RRset, the reply
Signed = tuple[dns.name.Name, dns.name.Name, dns.rrset.RRset, dns.message.Message]


@pytest.fixture
def signed(bind: Bind) -> Signed:
    owner = owner_name(f"sig-{os.getpid()}-{os.urandom(2).hex()}.{ZONE}")
    for i in range(3):
        nsupdate_add(bind, owner, f"3 1 1 {i + 1:064x}")
    zone = dns.name.from_text(ZONE)
    keys = dns.query.tcp(dns.message.make_query(zone, "DNSKEY", want_dnssec=True), "127.0.0.1",
                         port=bind.primary.port, timeout=5)
    answer = dns.query.tcp(dns.message.make_query(owner, "TLSA", want_dnssec=True), "127.0.0.1",
                           port=bind.primary.port, timeout=5)
    return owner, zone, keys.find_rrset(keys.answer, zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY), answer


def ours(owner: dns.name.Name, zone: dns.name.Name, keyset: dns.rrset.RRset, message: dns.message.Message, now: int | None = None, flip: str | None = None) -> None:
    reply = wire.parse(message.to_wire())
    found = [r.rdata for r in reply.records(wire.labels(owner), wire.TYPE_TLSA)]
    sigs = [rrsig.parse(r.rdata) for r in reply.signatures(wire.labels(owner), wire.TYPE_TLSA)]
    if flip == "record":
        found[0] = found[0][:-1] + bytes([found[0][-1] ^ 1])
    if flip == "signature":
        sigs = [rrsig.Signature(**{**s.__dict__, "value": s.value[:-1] + bytes([s.value[-1] ^ 1])}) for s in sigs]
    if flip == "ttl":
        sigs = [rrsig.Signature(**{**s.__dict__, "original_ttl": s.original_ttl + 1}) for s in sigs]
    moment = now if now is not None else sigs[0].inception + 10
    rrsig.check(owner, wire.TYPE_TLSA, found, sigs, rrsig.ZoneKeys(zone, keyset), moment)


def theirs(owner: dns.name.Name, zone: dns.name.Name, keyset: dns.rrset.RRset, message: dns.message.Message, now: int | None = None) -> None:
    rrset = message.find_rrset(message.answer, owner, dns.rdataclass.IN, dns.rdatatype.TLSA)
    sigs = message.find_rrset(message.answer, owner, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TLSA)
    moment = now if now is not None else next(iter(sigs)).inception + 10
    dns.dnssec.validate(rrset, sigs, {zone: keyset}, now=moment)


def test_agrees_with_dnspython_on_a_real_signed_answer(signed: Signed) -> None:
    owner, zone, keyset, message = signed
    theirs(owner, zone, keyset, message)
    ours(owner, zone, keyset, message)


@pytest.mark.parametrize("flip", ["record", "signature", "ttl"])
def test_tampering_is_refused(signed: Signed, flip: str) -> None:
    owner, zone, keyset, message = signed
    with pytest.raises(rrsig.SignatureError, match="verify failure"):
        ours(owner, zone, keyset, message, flip=flip)


def test_validity_period_and_signer(signed: Signed) -> None:
    owner, zone, keyset, message = signed
    sig = rrsig.parse(wire.parse(message.to_wire()).signatures(wire.labels(owner), wire.TYPE_TLSA)[0].rdata)
    for now, why in ((sig.expiration + 1, "expired"), (sig.inception - 1, "not yet valid")):
        with pytest.raises(dns.exception.ValidationFailure):
            theirs(owner, zone, keyset, message, now=now)
        with pytest.raises(rrsig.SignatureError, match=why):
            ours(owner, zone, keyset, message, now=now)
    with pytest.raises(rrsig.SignatureError, match="not by the zone"):
        rrsig.check(owner, wire.TYPE_TLSA, [], [sig], rrsig.ZoneKeys(dns.name.from_text("other.test"), keyset),
                    sig.inception + 10)
