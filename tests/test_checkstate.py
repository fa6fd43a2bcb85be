"""`check`'s DANE status of a host is decided once, from its lookups (pure)."""

from __future__ import annotations

import dns.name
import dns.rdatatype

from tlsa_manager.checkhazards import address_state, dane_state
from tlsa_manager.checkresult import Dane
from tlsa_manager.records import Tlsa
from tlsa_manager.resolve import Lookup

OWNER = "_25._tcp.mx.example."
RECORDS = [Tlsa.from_text("3 1 1 " + "ab" * 32)]


def tlsa(status: str, secure: bool = True) -> Lookup:
    return Lookup(dns.name.from_text(OWNER), dns.rdatatype.TLSA, status, secure, error="timeout")


def test_addresses_decide_first() -> None:
    a = Lookup(dns.name.from_text("mx.example."), dns.rdatatype.A, "bogus", False)
    state = address_state("mx.example", [a], [])
    assert state is not None and state.status is Dane.BOGUS and [h.code for h in state.hazards] == ["H7"]
    a = Lookup(dns.name.from_text("mx.example."), dns.rdatatype.A, "nxdomain", False)
    state = address_state("mx.example", [a], [])
    assert state is not None and state.status is Dane.ERROR and state.detail == "no address: nxdomain"
    assert not state.status.probes
    assert address_state("mx.example", [a], ["192.0.2.1"]) is None


def test_each_state_and_its_hazard() -> None:
    cases = [
        (tlsa("bogus"), RECORDS, True, Dane.BOGUS, ["H7"]),
        (tlsa("error"), [], True, Dane.ERROR, []),
        (tlsa("secure"), RECORDS, False, Dane.NOT_IN_FORCE, ["H8"]),
        (tlsa("insecure", secure=False), RECORDS, True, Dane.NOT_IN_FORCE, ["H6"]),
        (tlsa("nodata"), [], True, Dane.NOT_IN_FORCE, []),
        (tlsa("secure"), RECORDS, True, Dane.IN_FORCE, []),
        (None, RECORDS, True, Dane.IN_FORCE, []),  # --records: no lookup
    ]
    for lookup, records, secure_addresses, status, codes in cases:
        state = dane_state("mx.example", OWNER, records, lookup, secure_addresses)
        assert (state.status, [h.code for h in state.hazards]) == (status, codes), (lookup, state)
    assert dane_state("mx.example", OWNER, [], tlsa("error"), True).detail == "TLSA lookup failed: timeout"
    assert Dane.IN_FORCE.probes and Dane.NOT_IN_FORCE.probes and not Dane.BOGUS.probes
