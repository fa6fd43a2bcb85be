"""Loading a fleet's chains fast (issue 14) gives what the plain loading gave.

The loader remembers certificates (the fleet's shared CA once, each leaf briefly) and
reads a leaf's issuer and key from its DER.  Each shortcut must be invisible: a
rewritten file is read again, a key that is not the leaf's is still refused, names
equal in another string type still match.  Key blocks are the PEM loader's to judge
(reading them through their DER was tried and gave nothing): the tests of that stay.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from tlsa_manager import catalog as catalog_module
from tlsa_manager.certs import load_chain
from tlsa_manager.config import HostSpec
from tlsa_manager.errors import InputError
from tlsa_manager.hostfiles import HostFiles, chain_facts
from tlsa_manager.records import spki_der

import pki


def spki_of(issued: pki.Issued) -> bytes:
    return spki_der(issued.cert.public_key())


def test_a_file_rewritten_with_another_key_gives_the_new_chain(tmp_path: Path) -> None:
    """Same path, same CA block, same size: the host's chain is the new leaf's, and a key
    that is not the new leaf's is refused although the old leaf was seen with it."""
    ca = pki.make_ca("Rewrite CA", issuer=pki.make_ca("Rewrite Root"))
    first, second = pki.make_leaf(["mx.example.com"], ca), pki.make_leaf(["mx.example.com"], ca)
    live = pki.write(tmp_path / "ecdsa.pem", first.key_pem, first.pem, ca.pem)
    files = HostFiles(HostSpec("mx.example.com", "none", certs=(live,)), catalog_module.load_bundled(), [])
    assert files.chains().live[0].leaf.spki_der == spki_of(first)

    pki.write(tmp_path / "new.pem", second.key_pem, second.pem, ca.pem)
    os.replace(tmp_path / "new.pem", live)  # what an ACME client's renewal does
    renewed = files.chains().live[0]
    assert renewed.leaf.spki_der == spki_of(second)
    assert renewed.cas == files.chains().live[0].cas

    pki.write(live, first.key_pem, second.pem, ca.pem)  # the old key with the new leaf
    with pytest.raises(InputError, match="does not match the certificate"):
        files.chains()


def test_the_same_leaf_with_another_key_is_refused_after_it_loaded_with_its_own(tmp_path: Path) -> None:
    """The leaf (the same PEM block, parsed once) first comes with its own key, then in
    another file with a key that is not its: the check is made again and refuses it."""
    ca = pki.make_ca("Pair CA")
    leaf, other = pki.make_leaf(["mx.example.com"], ca), pki.make_leaf(["mx.example.com"], ca)
    good = pki.write(tmp_path / "good.pem", leaf.key_pem, leaf.pem, ca.pem)
    bad = pki.write(tmp_path / "bad.pem", other.key_pem, leaf.pem, ca.pem)
    catalog = catalog_module.load_bundled()
    assert chain_facts(good, "live good.pem", catalog).leaf.spki_der == spki_of(leaf)
    with pytest.raises(
        InputError, match=r"bad\.pem: the key does not match the certificate 'mx\.example\.com'"
    ):
        chain_facts(bad, "live bad.pem", catalog)
    separate = pki.write(tmp_path / "other.key", other.key_pem)
    with pytest.raises(InputError, match=r"other\.key: the key does not match"):
        chain_facts(pki.write(tmp_path / "leaf.pem", leaf.pem, ca.pem), "live leaf.pem", catalog, separate)


def _leaf_named_by(issuer_name: x509.Name, ca: pki.Issued, host: str) -> pki.Issued:
    key = pki.make_key("p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.EPOCH)
        .not_valid_after(pki.EPOCH + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return pki.Issued(cert, key)


def test_an_issuer_named_in_another_string_type_is_still_the_issuer(tmp_path: Path) -> None:
    """The leaf names its CA with PrintableStrings, the CA's subject is UTF8String: other
    bytes, the same name (RFC 5280 name matching); the catalog still finds the issuer."""
    _root, issued = pki.make_test_catalog(tmp_path / "catalog", "Test Root")
    ca = issued["TE1"]
    printable = x509.Name(
        [x509.NameAttribute(a.oid, str(a.value), _ASN1Type.PrintableString) for a in ca.cert.subject]
    )
    assert printable.public_bytes() != ca.cert.subject.public_bytes() and printable == ca.cert.subject
    catalog = catalog_module.load_directory(tmp_path / "catalog")
    for host, name in (("a.example.com", printable), ("b.example.com", ca.cert.subject)):
        leaf = _leaf_named_by(name, ca, host)
        path = pki.write(tmp_path / f"{host}.pem", pki.key_pem(leaf.key), leaf.pem, ca.pem)
        facts = chain_facts(path, f"live {path.name}", catalog)
        assert facts.issuer_name == "TE1"
        assert (facts.leaf_issuer_cn, facts.leaf_issuer_org) == ("TE1", "Test Encrypt")
        assert facts.leaf.spki_der == spki_of(leaf)


def test_a_private_key_block_holding_another_format_is_still_damaged(tmp_path: Path) -> None:
    """A "PRIVATE KEY" block must hold PKCS#8; a SEC1 key in it is refused as the PEM
    loader refuses it, although DER loading would take it."""
    ca = pki.make_ca("Label CA")
    leaf = pki.make_leaf(["mx.example.com"], ca)
    key = serialization.load_pem_private_key(leaf.key_pem, None)
    sec1 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert serialization.load_der_private_key(sec1, None) is not None
    body = "\n".join(textwrap.wrap(base64.b64encode(sec1).decode(), 64))
    block = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n".encode()
    path = pki.write(tmp_path / "mislabelled.pem", block, leaf.pem, ca.pem)
    with pytest.raises(InputError, match="the private key is damaged"):
        load_chain(path)


def test_more_leaves_than_the_memo_keeps_each_get_their_own_facts(tmp_path: Path) -> None:
    """Past the number of certificates remembered at once, the unshared leaves are
    forgotten and the shared CA kept: every host still gets its own leaf and the CA."""
    from tlsa_manager import certmemo

    ca = pki.make_ca("Many CA", issuer=pki.make_ca("Many Root"))
    catalog = catalog_module.load_bundled()
    leaves = []
    for i in range(certmemo.LIMIT + 40):
        leaf = pki.make_leaf([f"mx{i}.example.com"], ca)
        path = pki.write(tmp_path / f"mx{i}.pem", leaf.key_pem, leaf.pem, ca.pem)
        leaves.append((leaf, chain_facts(path, f"live {path.name}", catalog)))
    ca_facts = {facts.cas for _, facts in leaves}
    assert len(ca_facts) == 1 and next(iter(ca_facts))[0].cert_der == ca.cert.public_bytes(
        serialization.Encoding.DER
    )
    for i, (leaf, facts) in enumerate(leaves):
        assert facts.leaf.spki_der == spki_of(leaf)
        assert facts.leaf.cert_der == leaf.cert.public_bytes(serialization.Encoding.DER)
        assert facts.leaf.name == f"mx{i}.example.com"


def test_a_key_block_the_pem_loader_refuses_is_still_refused(tmp_path: Path) -> None:
    """A blank line inside the key's base64 (the PEM loader takes it for the end of
    headers) is refused as damaged, although its base64 decodes; CRLF lines still load."""
    ca = pki.make_ca("Layout CA")
    leaf = pki.make_leaf(["mx.example.com"], ca)
    lines = leaf.key_pem.decode().splitlines()
    blank = "\n".join([*lines[:2], "", *lines[2:]]) + "\n"
    path = pki.write(tmp_path / "blank.pem", blank.encode(), leaf.pem, ca.pem)
    with pytest.raises(InputError, match="the private key is damaged"):
        load_chain(path)
    crlf = pki.write(tmp_path / "crlf.pem", leaf.key_pem.replace(b"\n", b"\r\n"), leaf.pem, ca.pem)
    assert load_chain(crlf).leaf == leaf.cert


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    count = (size.bit_length() + 7) // 8
    length = bytes([size]) if size < 0x80 else bytes([0x80 | count]) + size.to_bytes(count, "big")
    return bytes([tag]) + length + content


def _rsa_pem(n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int, iqmp: int, pkcs8: bool) -> bytes:
    """A PKCS#1 (or PKCS#8) RSA key file holding exactly these numbers, consistent or not
    (cryptography will not write an inconsistent key, so the DER is written here)."""
    ints = b"".join(
        _der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big")) for v in (0, n, e, d, p, q, dmp1, dmq1, iqmp)
    )
    der = _der(0x30, ints)
    label = "RSA PRIVATE KEY"
    if pkcs8:
        algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
        der = _der(0x30, _der(0x02, b"\x00") + algorithm + _der(0x04, der))
        label = "PRIVATE KEY"
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def _openssl_accepts(pem: bytes) -> bool:
    try:
        serialization.load_pem_private_key(pem, None)  # OpenSSL's RSA_check_key: the oracle
    except ValueError:
        return False
    return True


def test_rsa_keys_are_refused_exactly_when_openssl_refuses_them(tmp_path: Path) -> None:
    """An RSA key is no longer re-proven prime by OpenSSL on every load (45 ms a key);
    every key a damaged or edited file can hold is still judged as OpenSSL judges it:
    each part changed alone, a valid exponent off by lambda(n), p and q swapped."""
    numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    p, q, d, e, n = numbers.p, numbers.q, numbers.d, numbers.public_numbers.e, numbers.public_numbers.n
    dmp1, dmq1, iqmp = numbers.dmp1, numbers.dmq1, numbers.iqmp
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    variants = {
        "whole": (n, e, d, p, q, dmp1, dmq1, iqmp),
        "d plus lambda": (n, e, d + lam, p, q, dmp1, dmq1, iqmp),
        "d off by 2": (n, e, d + 2, p, q, dmp1, dmq1, iqmp),
        "p off by 2": (n, e, d, p + 2, q, dmp1, dmq1, iqmp),
        "q off by 2": (n, e, d, p, q - 2, dmp1, dmq1, iqmp),
        "n off by 2": (n + 2, e, d, p, q, dmp1, dmq1, iqmp),
        "e even": (n, e + 1, d, p, q, dmp1, dmq1, iqmp),
        "e is 1": (n, 1, d, p, q, dmp1, dmq1, iqmp),
        "dmp1": (n, e, d, p, q, dmp1 + 1, dmq1, iqmp),
        "dmq1": (n, e, d, p, q, dmp1, dmq1 - 1, iqmp),
        "iqmp": (n, e, d, p, q, dmp1, dmq1, iqmp + 1),
        "p and q swapped": (n, e, d, q, p, dmp1, dmq1, iqmp),
        "p is q": (q * q, e, d, q, q, dmp1, dmq1, iqmp),
        "p even": (2 * q, e, d, 2, q, dmp1, dmq1, iqmp),
    }
    verdicts = {}
    for name, variant in variants.items():
        for label, pkcs8 in (("pkcs8", True), ("pkcs1", False)):
            pem = _rsa_pem(*variant, pkcs8=pkcs8)
            path = pki.write(tmp_path / f"{name} {label}.pem", pem)
            try:
                loaded = load_chain(path)
            except InputError as exc:
                assert exc.message == f"{path}: the private key is damaged"
                ours = False
            else:
                assert loaded.key is not None
                assert spki_der(loaded.key) == spki_der(
                    rsa.RSAPublicNumbers(variant[1], variant[0]).public_key()
                )
                ours = True
            assert ours == _openssl_accepts(pem), (name, label)
            verdicts[name] = ours
    assert verdicts["whole"] and verdicts["d plus lambda"]
    assert sum(verdicts.values()) == 2


def test_an_rsa_fleet_loads_without_proving_primes_each_time(tmp_path: Path) -> None:
    """Ten hosts with RSA keys: OpenSSL's check took 45 ms a key (the primality proof);
    the whole chain files now load in well under 10 ms a host, with the facts they had."""
    ca = pki.make_ca("RSA CA")
    key = pki.make_key("rsa2048")
    catalog = catalog_module.load_bundled()
    paths = []
    for i in range(10):
        leaf = pki.make_leaf([f"mx{i}.example.com"], ca, key=key)
        paths.append(pki.write(tmp_path / f"mx{i}.pem", leaf.key_pem, leaf.pem, ca.pem))
    expected = spki_der(key.public_key())
    start = time.process_time()
    facts = [chain_facts(path, f"live {path.name}", catalog) for path in paths]
    spent = time.process_time() - start
    assert all(f.leaf.spki_der == expected and f.key_type == "rsa" for f in facts)
    assert spent < 0.1, f"{spent:.3f} s of CPU for 10 RSA chain files"


def test_rsa_keys_in_every_form_load_or_are_refused_as_before(tmp_path: Path) -> None:
    """Encrypted PEM (right and wrong passphrase), DER PKCS#1 and PKCS#8: a whole key
    gives the SPKI openssl gives; a key that is not whole gives the line it gave when
    OpenSSL checked it (damaged, or the passphrase that does not decrypt it)."""
    private = pki.make_key("rsa2048")
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.private_numbers()
    whole = _rsa_pem(
        numbers.public_numbers.n, numbers.public_numbers.e, numbers.d, numbers.p, numbers.q,
        numbers.dmp1, numbers.dmq1, numbers.iqmp, pkcs8=True,
    )  # fmt: skip
    broken = _rsa_pem(
        numbers.public_numbers.n, numbers.public_numbers.e, numbers.d + 2, numbers.p, numbers.q,
        numbers.dmp1, numbers.dmq1, numbers.iqmp, pkcs8=True,
    )  # fmt: skip
    plain = pki.write(tmp_path / "plain.pem", whole)
    expected = subprocess.run(
        ["openssl", "pkey", "-in", str(plain), "-pubout", "-outform", "DER"], capture_output=True, check=True
    ).stdout
    encryption = serialization.BestAvailableEncryption(b"s3cret-pass")

    def encoded(pem: bytes, encoding: serialization.Encoding, fmt: serialization.PrivateFormat) -> bytes:
        key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
        cipher = encryption if encoding is serialization.Encoding.PEM else serialization.NoEncryption()
        return key.private_bytes(encoding, fmt, cipher)

    forms = {
        "encrypted.pem": (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
        "pkcs1.der": (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
        "pkcs8.der": (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
    }
    for name, (encoding, fmt) in forms.items():
        good = pki.write(tmp_path / f"good-{name}", encoded(whole, encoding, fmt))
        bad = pki.write(tmp_path / f"bad-{name}", encoded(broken, encoding, fmt))
        passphrase = b"s3cret-pass" if name == "encrypted.pem" else None
        loaded = load_chain(good, passphrase=passphrase)
        assert loaded.key is not None and spki_der(loaded.key) == expected
        with pytest.raises(InputError) as refused:
            load_chain(bad, passphrase=passphrase)
        if passphrase:
            assert refused.value.message == (
                f"{bad}: the passphrase does not decrypt the private key (or the key is damaged)"
            )
            with pytest.raises(InputError, match="the passphrase does not decrypt"):
                load_chain(good, passphrase=b"wrong")
        else:
            assert refused.value.message == f"{bad}: not a certificate or key (neither PEM nor DER)"


def test_the_catalog_certificates_a_leaf_names_are_those_a_scan_finds(tmp_path: Path) -> None:
    """``Catalog.named_by`` looks the leaf's issuer name up instead of comparing it with
    every catalog subject: for a catalog CA's name (also spelled in another string type),
    a name no catalog CA has, and a CA's name with an extra attribute, it gives exactly
    the pairs the scan gave, in catalog order."""
    _root, issued = pki.make_test_catalog(tmp_path / "catalog", "Test Root")
    catalog = catalog_module.load_directory(tmp_path / "catalog")
    ca = issued["TE2"]
    printable = x509.Name(
        [x509.NameAttribute(a.oid, str(a.value), _ASN1Type.PrintableString) for a in ca.cert.subject]
    )
    longer = x509.Name([*ca.cert.subject, x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])
    stranger = pki.make_ca("Stranger CA", org="Stranger Org")
    names = {
        "catalog name": ca.cert.subject,
        "another string type": printable,
        "extra attribute": longer,
        "not in the catalog": stranger.cert.subject,
    }
    for what, name in names.items():
        leaf = _leaf_named_by(name, stranger, "mx.example.com").cert
        scan = tuple(
            (issuer, cert)
            for issuer in catalog.issuers
            for cert in issuer.certs
            if cert.certificate.subject == name
        )
        assert catalog.named_by(leaf) == scan, what
        assert bool(scan) == (what in ("catalog name", "another string type")), what


def test_a_fleet_of_another_ca_loads_without_comparing_names_per_catalog_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaves of a CA the catalog does not know (a bare cert.pem, or another public CA)
    compared their issuer with each catalog subject twice (about 100 name comparisons a
    host); now a host compares at most the one name its chain offers, and still gets no
    catalog issuer, and a leaf borrowing a catalog CA's name still gets it named (H26)."""
    stranger = pki.make_ca("Stranger CA", issuer=pki.make_ca("Stranger Root"), org="Stranger Org")
    catalog = catalog_module.load_bundled()
    ye1 = catalog.by_name("YE1")
    assert ye1 is not None
    borrowed = pki.Issued(ye1.certs[0].certificate, stranger.key)
    compared = []
    original = x509.Name.__eq__

    def counting(self: x509.Name, other: object) -> bool:
        compared.append(1)
        return original(self, other)

    paths = []
    for i in range(20):
        leaf = pki.make_leaf([f"mx{i}.example.net"], stranger)
        paths.append(pki.write(tmp_path / f"mx{i}.pem", leaf.key_pem, leaf.pem, stranger.pem))
    borrower = pki.make_leaf(["borrow.example.net"], borrowed)
    bare = pki.write(tmp_path / "borrow.pem", borrower.key_pem, borrower.pem)
    monkeypatch.setattr(x509.Name, "__eq__", counting)
    facts = [chain_facts(path, f"live {path.name}", catalog) for path in paths]
    named = chain_facts(bare, "live borrow.pem", catalog)
    monkeypatch.undo()
    assert len(compared) <= len(paths) + 1, len(compared)
    assert all(f.issuer_name is None and f.named_issuer == "" for f in facts)
    assert all(f.leaf_issuer_org == "Stranger Org" for f in facts)
    assert named.issuer_name is None and named.named_issuer == "YE1"
