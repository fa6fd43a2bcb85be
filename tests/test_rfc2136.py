"""RFC 2136 against the real BIND: propagation with valid RRSIGs, and every fault as one clear line."""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.name
import pytest

from tlsa_manager.dnsview import DnsView
from tlsa_manager.endpoints import parse_endpoint
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.rfc2136 import Rfc2136Provider, read_bind_key_file

from servers import ZONE, Bind, free_port

REC = Tlsa.from_text("3 1 1 " + "ab" * 32)


def owner() -> dns.name.Name:
    return dns.name.from_text(f"_25._tcp.mx-{secrets.token_hex(4)}.{ZONE}.")


def add(owner_name: dns.name.Name, record: Tlsa = REC) -> ChangeSet:
    return ChangeSet((OwnerChange(owner_name, frozenset(), frozenset({record}), ttl=60),))


def provider(bind: Bind, **over: Any) -> Rfc2136Provider:
    config = {"server": bind.primary.endpoint, "tsig_key_file": str(bind.key_file), "timeout": 2}
    config.update(over)
    return Rfc2136Provider(config)


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_update_reaches_the_secondary_signed(bind: Bind) -> None:
    o = owner()
    p = provider(bind)
    p.apply(add(o))
    view = DnsView([parse_endpoint(e) for e in bind.nameservers])
    assert wait_for(lambda: all(v.records == frozenset({REC}) for v in view.observe([o])[o]))
    views = view.observe([o])[o]
    assert all(v.error is None and v.ttl == 60 for v in views)
    assert p.writes == 1
    assert [ns.port for ns in provider(bind, nameservers=bind.nameservers).nameservers(dns.name.from_text(ZONE))] == [
        bind.primary.port, bind.secondary.port]


def test_nameservers_default_to_the_zone_ns_found_by_the_core(bind: Bind, tmp_path: Path) -> None:
    """No nameservers configured: the core asks the primary for the zone's NS and their addresses."""
    from tlsa_manager_providers.zonefile import ZoneFileProvider

    for name in (ZONE, f"mx.{ZONE}"):  # the engine passes the host's name; the core finds the apex
        found = provider(bind).nameservers(dns.name.from_text(name))
        assert [(s.name, s.address, s.port) for s in found] == [
            ("ns1.example.test (127.0.0.1)", "127.0.0.1", 53), ("ns2.example.test (127.0.0.1)", "127.0.0.1", 53)]
    assert ZoneFileProvider({"zone_file": str(tmp_path / "db")}).nameservers(dns.name.from_text(ZONE)) == []
    with pytest.raises(ProviderError, match="refused the connection"):
        provider(bind, server=f"127.0.0.1:{free_port()}").nameservers(dns.name.from_text(ZONE))


def test_lagging_secondary_is_seen_as_lagging(bind: Bind) -> None:
    o = owner()
    view = DnsView([parse_endpoint(e) for e in bind.nameservers])
    bind.set_notify(False)
    try:
        provider(bind).apply(add(o))
        time.sleep(0.5)
        views = {v.server: v for v in view.observe([o])[o]}
        assert views[bind.primary.endpoint].records == frozenset({REC})
        assert views[bind.secondary.endpoint].records == frozenset()
    finally:
        bind.set_notify(True)
        bind.secondary.rndc(bind.keys, "refresh", ZONE)
    assert wait_for(lambda: all(v.records == frozenset({REC}) for v in view.observe([o])[o]))


def test_server_down(bind: Bind) -> None:
    p = provider(bind, server=f"127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError, match="refused the connection"):
        p.apply(add(owner()))


def test_timeout_says_it_may_have_applied(bind: Bind) -> None:
    p = provider(bind, zone=ZONE, timeout=1)
    bind.primary.pause()
    try:
        with pytest.raises(ProviderError, match=r"no answer .* within 1s; the update may or may not have been applied"):
            p.apply(add(owner()))
    finally:
        bind.primary.resume()


def _key_with(tmp_path: Path, name: str, secret: str) -> Path:
    path = tmp_path / "k.key"
    path.write_text(f'key "{name}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')
    return path


def test_wrong_secret_is_badsig_and_secret_never_shown(bind: Bind, tmp_path: Path) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    p = provider(bind, tsig_key_file=str(_key_with(tmp_path, "dane-update", secret)))
    o = owner()
    with pytest.raises(ProviderError) as info:
        p.apply(add(o))
    assert "BADSIG" in str(info.value) and secret not in str(info.value) and secret not in repr(p)
    assert provider(bind).read([o])[o].records == frozenset()


def test_unknown_key_is_badkey(bind: Bind, tmp_path: Path) -> None:
    p = provider(bind, tsig_key_file=str(_key_with(tmp_path, "stranger", base64.b64encode(os.urandom(32)).decode())))
    with pytest.raises(ProviderError, match="BADKEY"):
        p.apply(add(owner()))


def test_policy_refuses(bind: Bind) -> None:
    p = provider(bind, tsig_key_file=str(bind.keys / "no-update.key"))
    o = owner()
    with pytest.raises(ProviderError, match="REFUSED"):
        p.apply(add(o))
    assert provider(bind).read([o])[o].records == frozenset()


def test_conflict_is_nxrrset(bind: Bind) -> None:
    o = owner()
    provider(bind).apply(add(o))
    other = Tlsa.from_text("3 1 1 " + "cd" * 32)
    stale = ChangeSet((OwnerChange(o, frozenset({other}), frozenset({REC}), ttl=60),))
    with pytest.raises(ProviderConflict, match="NXRRSET"):
        provider(bind).apply(stale)


def test_key_and_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unsigned updates are refused"):
        Rfc2136Provider({"server": "127.0.0.1"})
    with pytest.raises(ConfigError, match="no key block"):
        read_bind_key_file(pki_write(tmp_path / "x.key", "nothing here"))
    monkeypatch.setenv("SECRETVAR", "not base64 !!")
    with pytest.raises(ConfigError, match="not valid base64"):
        Rfc2136Provider({"server": "127.0.0.1", "tsig_name": "k", "tsig_secret_env": "SECRETVAR"})
    # an unknown algorithm was accepted, then failed as an internal error at the first update
    monkeypatch.setenv("SECRETVAR", base64.b64encode(b"s" * 32).decode())
    with pytest.raises(ConfigError, match="TSIG algorithm 'hmac-md99' is not supported; use hmac-sha256"):
        Rfc2136Provider({"server": "127.0.0.1", "tsig_name": "k", "tsig_secret_env": "SECRETVAR",
                         "tsig_algorithm": "hmac-md99"})
    with pytest.raises(ConfigError, match=r"SECRETVAR2 .* is not set"):
        Rfc2136Provider({"server": "127.0.0.1", "tsig_name": "k", "tsig_secret_env": "SECRETVAR2"})
    with pytest.raises(ConfigError, match="unknown setting"):
        Rfc2136Provider({"server": "127.0.0.1", "tsig_name": "k", "password": "x"})


def pki_write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _dnspython_update(zone: dns.name.Name, changes: list[OwnerChange]) -> bytes:
    """The oracle: the same UPDATE built and rendered by dnspython's own API."""
    import dns.rdataclass
    import dns.rdataset
    import dns.rdatatype
    import dns.update

    def rdataset(records: frozenset[Tlsa], ttl: int) -> dns.rdataset.Rdataset:
        out = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA)
        for record in sorted(records):
            out.add(record.to_rdata(), ttl)
        out.ttl = ttl
        return out

    update = dns.update.UpdateMessage(zone, id=7)
    for change in changes:
        if change.expected:
            update.present(change.owner, rdataset(change.expected, 0))
        else:
            update.absent(change.owner, dns.rdatatype.TLSA)
    for change in changes:
        deletes, adds = change.delete & change.expected, change.add - change.expected
        if change.ttl_change:
            deletes, adds = change.expected - change.delete, change.result
        if deletes:
            update.delete(change.owner, rdataset(deletes, 0))
        if adds:
            update.add(change.owner, rdataset(adds, change.ttl))
    return update.to_wire()


def test_update_wire_is_what_dnspython_renders(tmp_path: Path) -> None:
    """The UPDATE is written as bytes (a fleet's thousands of records, issue 14): it must
    say exactly what dnspython's own rendering says - every prerequisite (value-dependent
    or "no RRset"), every deletion and addition with its class and TTL, in the same
    order - for every shape of change, in a message big enough that later names can no
    longer be compressed (offsets past 16 KiB), and owners outside the zone written whole."""
    import dns.message

    key = _key_with(tmp_path, "k", base64.b64encode(b"0" * 32).decode())
    rfc = Rfc2136Provider({"server": "127.0.0.1:53", "tsig_key_file": str(key)})
    zone = dns.name.from_text(ZONE)
    a, b, c = (Tlsa.from_text(f"{u} 1 1 {secrets.token_hex(32)}") for u in (3, 2, 2))
    shapes = [
        OwnerChange(owner(), frozenset(), frozenset({a, b}), ttl=60),  # new owner
        OwnerChange(owner(), frozenset({a}), frozenset({b}), frozenset({a}), ttl=60),  # replace
        OwnerChange(owner(), frozenset({a, b}), delete=frozenset({b, c}), ttl=60),  # remove one
        OwnerChange(owner(), frozenset({a, b}), frozenset({c}), ttl=300, expected_ttl=60),  # new TTL
        OwnerChange(dns.name.from_text("_25._tcp.mx.elsewhere.test."), frozenset(), frozenset({a}), ttl=60),
    ]
    many = shapes + [
        OwnerChange(owner(), frozenset({a}), frozenset({b}), frozenset({a}), ttl=60) for _ in range(330)
    ]
    for changes in (shapes[:1], shapes, many):
        ours = rfc.build_update(zone, changes)
        ours.id = 7
        signed = ours.to_wire()
        # dnspython checks the TSIG with the provider's key while it parses
        mine = dns.message.from_wire(signed, keyring=rfc._keyring)
        theirs = dns.message.from_wire(_dnspython_update(zone, changes))
        assert mine.flags == theirs.flags and mine.had_tsig
        # as text: names, classes, TTLs and records (rdataset equality ignores the TTL)
        assert [[r.to_text() for r in section] for section in mine.sections] == [
            [r.to_text() for r in section] for section in theirs.sections
        ]
    assert 16384 * 2 < len(signed) < 65535  # owners first named past the reach of a pointer
