"""A small test PKI shaped like Let's Encrypt: a root, sibling intermediates, leaves.

Used by the tests and by ``examples/make_examples.py``; everything is generated with
``cryptography`` so no test depends on a real CA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_KINDS = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384", "ed25519")
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make_key(kind: str) -> CertificateIssuerPrivateKeyTypes:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(cn: str, org: str = "Test Encrypt") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


@dataclass
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """The private key as an unencrypted PKCS#8 PEM file holds it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    cn: str,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    issuer: Issued | None = None,
    org: str = "Test Encrypt",
    days: int = 3650,
    not_before: dt.datetime = EPOCH,
) -> Issued:
    key = key or make_key("p384")
    subject = _name(cn, org)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return Issued(builder.sign(signer_key, _hash_for(signer_key)), key)


def make_leaf(
    hosts: list[str],
    issuer: Issued,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    days: int = 90,
    not_before: dt.datetime = EPOCH,
) -> Issued:
    key = key or make_key("p256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    return Issued(builder.sign(issuer.key, _hash_for(issuer.key)), key)


def write(path: Path, *parts: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))
    return path


def fleet(directory: Path, names: list[str], issuer_pem: bytes, shared_key: str | None = None) -> list[Path]:
    """One certificate file (key, leaf, chain) per host name, all 'issued' by the CA in
    ``issuer_pem`` (its name and chain; our own signing key): a fleet for bench and tests.
    Each leaf has a P-256 key of its own, or all one key of the kind ``shared_key`` (an
    RSA fleet is made in seconds)."""
    issuer = Issued(x509.load_pem_x509_certificate(issuer_pem), make_key("p384"))
    key = make_key(shared_key) if shared_key else None
    paths = []
    for name in names:
        leaf = make_leaf([name], issuer, key=key)
        paths.append(write(directory / f"{name}.pem", leaf.key_pem, leaf.pem, issuer_pem))
    return paths


#: the ECDSA intermediates of a test catalog: two active, one backup, as Let's Encrypt's E-series
ECDSA_CAS = (("TE1", "p384"), ("TE2", "p384"), ("TE3", "p384"))


def make_test_catalog(
    catalog: Path, root_name: str, cas: Sequence[tuple[str, str]] = ECDSA_CAS, not_before: dt.datetime = EPOCH
) -> tuple[Issued, dict[str, Issued]]:
    """A Let's-Encrypt-shaped catalog folder (manifest + PEMs) for a test PKI: a root and
    intermediates ``(name, key kind)``; a name ending in 3 is a backup, the others active."""
    import json

    root = make_ca(root_name, make_key("p384"), not_before=not_before)
    issued = {name: make_ca(name, make_key(kind), issuer=root, not_before=not_before) for name, kind in cas}
    catalog.mkdir(parents=True, exist_ok=True)
    entries = [{"name": "root", "ca": root_name, "file": "root.pem", "status": "root", "key_type": "ecdsa"}]
    write(catalog / "root.pem", root.pem)
    for name, kind in cas:
        entries.append({"name": name.lower(), "ca": name, "file": f"{name.lower()}.pem",
                        "status": "backup" if name.endswith("3") else "active",
                        "key_type": "rsa" if kind.startswith("rsa") else "ecdsa"})
        write(catalog / f"{name.lower()}.pem", issued[name].pem)
    (catalog / "manifest.json").write_text(json.dumps(entries))
    return root, issued
