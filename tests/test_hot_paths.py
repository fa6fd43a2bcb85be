"""The fleet run's fast paths (issue 14) give what the plain paths gave.

Certificates parsed once per PEM block, names that hash once, DNS names read once per
message, a ledger written only when it changed: each must be invisible except in time.
openssl is the oracle for what a certificate file holds.
"""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import dns.message
import dns.name
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization

from tlsa_manager import wire
from tlsa_manager.certs import load_chain
from tlsa_manager.errors import InputError, UsageError
from tlsa_manager.facts import facts_from_chain
from tlsa_manager.ledger import Ledger, LedgerData
from tlsa_manager.records import Tlsa, host_name, owner_name

import pki


def openssl_der(pem: Path, index: int) -> bytes:
    """The DER of the index-th certificate of a PEM file, as openssl writes it."""
    blocks = pem.read_text().split("-----END CERTIFICATE-----")
    text = blocks[index][blocks[index].index("-----BEGIN CERTIFICATE-----"):] + "-----END CERTIFICATE-----\n"
    return subprocess.run(
        ["openssl", "x509", "-outform", "DER"], input=text.encode(), capture_output=True, check=True
    ).stdout


def test_chain_files_sharing_a_ca_give_the_bytes_openssl_gives(tmp_path: Path) -> None:
    """The CA block of a fleet's files is parsed once; every file still gets its own leaf,
    and the DER of leaf and CA is what openssl reads from the file."""
    ca = pki.make_ca("Fleet CA", issuer=pki.make_ca("Fleet Root"))
    files = []
    for name in ("a.example.com", "b.example.com"):
        leaf = pki.make_leaf([name], ca)
        files.append(pki.write(tmp_path / f"{name}.pem", leaf.key_pem, leaf.pem, ca.pem))
    facts = [facts_from_chain(load_chain(f), "live") for f in files]
    for path, chain in zip(files, facts, strict=True):
        assert chain.leaf.cert_der == openssl_der(path, 0)
        assert chain.cas[0].cert_der == openssl_der(path, 1)
        assert chain.leaf.name == path.name.removesuffix(".pem")
    assert facts[0].leaf.spki_der != facts[1].leaf.spki_der
    assert facts[0].cas == facts[1].cas


def test_an_encrypted_key_block_with_headers_still_loads(tmp_path: Path) -> None:
    """A PEM block with RFC 1421 headers (traditional encrypted key) takes the full scan."""
    ca = pki.make_ca("Header CA")
    leaf = pki.make_leaf(["mx.example.com"], ca)
    key = serialization.load_pem_private_key(leaf.key_pem, None)
    path = pki.write(tmp_path / "k.pem", leaf.pem, ca.pem)
    encrypted = pki.write(
        tmp_path / "enc.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    )
    assert b"Proc-Type" in encrypted.read_bytes()
    chain = load_chain(path, encrypted, b"pw")
    assert chain.leaf is not None


def test_a_truncated_block_after_a_whole_one_is_still_refused(tmp_path: Path) -> None:
    ca = pki.make_ca("Cut CA")
    leaf = pki.make_leaf(["mx.example.com"], ca)
    path = pki.write(tmp_path / "cut.pem", leaf.pem, ca.pem[: len(ca.pem) // 2])
    with pytest.raises(InputError, match="no matching END"):
        load_chain(path)


@pytest.mark.parametrize("host", ["mail.example.com", "MX1.Example.COM.", "a", "xn--bcher-kva.ch"])
def test_owner_names_are_the_names_from_text_gives(host: str) -> None:
    """Same labels (case kept), equal, the same hash, one dict key; pickles as a plain name."""
    plain = dns.name.from_text(f"_25._tcp.{host.rstrip('.')}.")
    fast = owner_name(host)
    assert fast.labels == plain.labels
    assert fast == plain and hash(fast) == hash(plain)
    assert {plain: 1}[fast] == 1 and {fast: 2}[plain] == 2
    back = pickle.loads(pickle.dumps(fast))
    assert type(back) is dns.name.Name and back == plain
    assert host_name(host) == dns.name.from_text(host.rstrip(".") + ".")


def test_owner_names_that_hash_alike_are_still_told_apart() -> None:
    """dnspython's name hash is a sum over the bytes: tm-19 and tm-20 collide.  The
    owners compare as dnspython's names do: by labels, case-insensitively."""
    first, second = owner_name("tm-19.example.com"), owner_name("tm-20.example.com")
    shouted = owner_name("TM-19.example.com")
    assert hash(first) == hash(second)
    assert first != second and (first == second) is False
    assert first == shouted and (first != shouted) is False
    assert first == dns.name.from_text("_25._TCP.tm-19.example.com.")
    assert first != dns.name.from_text("_25._tcp.tm-20.example.com.")
    assert first != dns.name.from_text("_25._tcp.tm-19.example.com", origin=None)  # relative
    assert first != "_25._tcp.tm-19.example.com."
    table = {first: 1, second: 2}
    assert table[shouted] == 1 and table[dns.name.from_text("_25._tcp.tm-20.example.com.")] == 2


@pytest.mark.parametrize(
    "host", ["", ".", "-a.com", "a-.com", "a..b", "x" * 64 + ".com", "ä.com", "a_b.com", "a b.com"]
)
def test_bad_host_names_are_still_refused(host: str) -> None:
    with pytest.raises(UsageError):
        host_name(host)


def test_too_long_a_name_is_refused() -> None:
    with pytest.raises(UsageError, match="not a valid DNS host name"):
        host_name(".".join(["a" * 60] * 5))


def test_compressed_owner_names_read_from_the_first_occurrence() -> None:
    """Every record's owner points at the question: read once, the same labels as dnspython's."""
    query = dns.message.make_query("_25._tcp.MX.example.com.", "TLSA", want_dnssec=True)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("_25._tcp.mx.example.com.", 60, "IN", "TLSA", "3 1 1 " + "ab" * 32, "2 1 1 " + "cd" * 32)
    )
    response.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "NS", "ns1.example.com."))
    reply = wire.parse(response.to_wire())
    assert reply.question == (b"_25", b"_tcp", b"mx", b"example", b"com")
    assert [r.name for r in reply.answer] == [reply.question] * 2
    assert {Tlsa.from_wire(r.rdata).to_text() for r in reply.answer} == {
        "3 1 1 " + "ab" * 32,
        "2 1 1 " + "cd" * 32,
    }
    assert reply.authority[0].name == (b"example", b"com")


def test_the_same_ledger_is_written_once_but_a_changed_file_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    data = LedgerData()
    data.host("mx.example.com").negative_ttl = 60
    with ledger.locked():
        ledger.save(data)
        first = ledger.path.stat().st_ino
        ledger.save(data)
        assert ledger.path.stat().st_ino == first  # nothing to write: not rewritten
        ledger.path.write_text(ledger.path.read_text().replace('"negative_ttl": 60', '"negative_ttl": 61'))
        ledger.save(data)  # someone changed the file: our text goes back
        assert ledger.load().hosts["mx.example.com"].negative_ttl == 60
        data.host("mx.example.com").negative_ttl = 62
        ledger.save(data)
        assert ledger.load().hosts["mx.example.com"].negative_ttl == 62


def test_zone_owners_found_by_text_are_those_dnspython_finds(tmp_path: Path) -> None:
    """The zone-file scan finds a fleet's owners by their text; every way a zone may write
    an owner (relative, absolute, another case, IDNA, escaped) reads as dnspython reads it."""
    import dns.rdatatype
    import dns.zone

    from tlsa_manager_providers.zonefile import ZoneFileProvider

    digest = "ab" * 32
    body = (
        "$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns1 hm ( 1 7200 3600 1209600 300 )\n  IN NS ns1\n"
        f"_25._TCP.Mail IN TLSA 3 1 1 {digest}\n"
        f"_25._tcp.mail2.example.com. 600 IN TLSA 3 1 1 {digest}\n"
        f"_25._tcp.müller IN TLSA 3 1 1 {digest}\n"
        f"_25._tcp.we\\.ird IN TLSA 3 1 1 {digest}\n"
        f"_25._tcp.other IN TLSA 3 1 1 {digest}\n"
        "$ORIGIN sub.example.com.\n"
        f"_25._tcp.mail IN TLSA 2 1 1 {digest}\n"
    )
    zone = tmp_path / "db.example.com"
    zone.write_text(body)
    oracle = dns.zone.from_text(body, origin="example.com.", relativize=False)
    owners = [dns.name.from_text(n) for n in (
        "_25._tcp.mail.example.com.", "_25._tcp.MAIL2.example.com.", "_25._tcp.xn--mller-kva.example.com.",
        "_25._tcp.we\\.ird.example.com.", "_25._tcp.mail.sub.example.com.", "_25._tcp.absent.example.com.")]
    got = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"}).read(owners)
    for owner in owners:
        rdataset = oracle.get_rdataset(owner, dns.rdatatype.TLSA)
        expected = frozenset(Tlsa.from_rdata(r) for r in rdataset) if rdataset else frozenset()
        assert got[owner].records == expected, owner
        if rdataset:
            assert got[owner].ttl == rdataset.ttl, owner
    assert sum(bool(got[o].records) for o in owners) == 5
