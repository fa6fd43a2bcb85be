"""Load certificates, chains and keys from files, and tell what they are.

Operators hand us what their ACME client wrote: ``fullchain.pem``, ``cert.pem``,
``privkey.pem``, a Postfix key+chain file, a DER file, or a freshly generated next
key with no certificate yet.  Every way such a file can be wrong becomes one
:class:`~tlsa_manager.errors.InputError` line that names the file and what to do.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

from tlsa_manager import certmemo
from tlsa_manager.certder import WHITESPACE, Parts
from tlsa_manager.certmemo import known
from tlsa_manager.errors import InputError
from tlsa_manager.fsutil import read_regular
from tlsa_manager.keycheck import load_private_key
from tlsa_manager.records import spki_der

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
#: the same blocks when no body holds a "-" (no RFC 1421 headers): ten times faster than
#: _PEM_BLOCK's lazy scan, and the same matches whenever it finds every BEGIN line
_PEM_PLAIN_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PRIVATE_LABELS = {
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
}
_PUBLIC_LABELS = {b"PUBLIC KEY", b"RSA PUBLIC KEY"}
_IGNORED_LABELS = {b"EC PARAMETERS"}
#: A chain of a few certificates is a few KiB; a bundle of every CA is about 250 KiB.
CERT_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Material:
    """What one file holds: certificates in file order, and any keys."""

    path: Path
    certificates: tuple[x509.Certificate, ...] = ()
    private_keys: tuple[PrivateKeyTypes, ...] = ()
    public_keys: tuple[PublicKeyTypes, ...] = ()


@dataclass(frozen=True)
class Chain:
    """A leaf (or a bare key) with the CA certificates that came with it."""

    leaf: x509.Certificate | None
    key: PublicKeyTypes | None
    cas: tuple[x509.Certificate, ...] = field(default=())
    source: Path | None = None

    @property
    def key_type(self) -> str:
        return key_type(self.key) if self.key is not None else "none"


def read_bytes(path: Path) -> bytes:
    """Read a certificate or key file, turning every failure into one clear line.

    Only a regular file is read (a FIFO would block the run) and at most
    :data:`CERT_LIMIT` bytes (``/dev/zero`` or a huge file would exhaust memory).
    """
    data = read_regular(path, limit=CERT_LIMIT, what="certificate or key file")
    if not data.strip():
        raise InputError(f"{path}: the file is empty", "point at the certificate or key file")
    return data


def load_material(path: Path, passphrase: bytes | None = None) -> Material:
    """Parse every certificate and key in a PEM or DER file."""
    data = read_bytes(path)
    if b"-----BEGIN" in data:
        return _load_pem(path, data, passphrase)
    return _load_der(path, data, passphrase)


def _load_pem(path: Path, data: bytes, passphrase: bytes | None) -> Material:
    certs: list[x509.Certificate] = []
    private: list[PrivateKeyTypes] = []
    public: list[PublicKeyTypes] = []
    complete = list(_PEM_PLAIN_BLOCK.finditer(data))
    # every BEGIN line holds a "-----BEGIN ": as many whole blocks as those is all of them
    begins = len(complete) if data.count(b"-----BEGIN ") <= len(complete) else len(_PEM_BEGIN.findall(data))
    if len(complete) < begins:
        complete = list(_PEM_BLOCK.finditer(data))
    if len(complete) < begins:
        raise InputError(
            f"{path}: a PEM block has no matching END line (the file is truncated)",
            "copy the file again whole",
        )
    for match in complete:
        label, block = match.group(1), match.group(0)
        if label in _CERT_LABELS:
            try:
                certs.append(_pem_certificate(block, match.group(2)))
            except ValueError:
                raise InputError(
                    f"{path}: certificate number {len(certs) + 1} is damaged",
                    "copy the file again whole",
                ) from None
        elif label in _PRIVATE_LABELS:
            private.append(_private_key(path, block, passphrase, pem=True))
        elif label in _PUBLIC_LABELS:
            try:
                public.append(serialization.load_pem_public_key(block))
            except (ValueError, UnsupportedAlgorithm):
                raise InputError(f"{path}: the public key is damaged", "copy it again") from None
        elif label not in _IGNORED_LABELS:
            raise InputError(
                f"{path}: holds a {label.decode()!r} block, not a certificate or key",
                "point at the certificate, chain or key file",
            )
    if not (certs or private or public):
        raise InputError(
            f"{path}: no certificate or key in this file",
            "point at a PEM or DER certificate, chain or key",
        )
    return Material(path, tuple(certs), tuple(private), tuple(public))


def _pem_certificate(block: bytes, body: bytes) -> x509.Certificate:
    """The certificate of one PEM block; its DER is remembered (``der`` needs no re-encoding)."""
    cert = certmemo.parsed(block)
    if cert is not None:
        return cert
    try:
        der = base64.b64decode(body.translate(None, WHITESPACE), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        cert = x509.load_pem_x509_certificate(block)  # its own error, or headers we do not read
        der = cert.public_bytes(serialization.Encoding.DER)
    certmemo.remember(block, cert, der)
    return cert


def der(cert: x509.Certificate) -> bytes:
    """The certificate's DER bytes (what selector 0 selects), encoded once per certificate."""
    record = known(cert)
    if record.der is None:
        record.der = cert.public_bytes(serialization.Encoding.DER)
    return record.der


def cert_spki(cert: x509.Certificate) -> bytes:
    """The DER SPKI of the certificate's key (what selector 1 selects), once per certificate."""
    record = known(cert)
    if record.spki is None:
        record.spki = spki_der(cert.public_key())
    return record.spki


def _load_der(path: Path, data: bytes, passphrase: bytes | None) -> Material:
    try:
        return Material(path, certificates=(x509.load_der_x509_certificate(data),))
    except ValueError:
        pass
    try:
        return Material(path, public_keys=(serialization.load_der_public_key(data),))
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        return Material(path, private_keys=(_private_key(path, data, passphrase, pem=False),))
    except InputError as exc:
        if "passphrase" in exc.message:
            raise
    raise InputError(
        f"{path}: not a certificate or key (neither PEM nor DER)",
        "point at the certificate, chain or key file",
    )


def _private_key(path: Path, blob: bytes, passphrase: bytes | None, *, pem: bool) -> PrivateKeyTypes:
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        return load_private_key(loader, blob, passphrase)
    except TypeError as exc:
        if passphrase is None:
            raise InputError(
                f"{path}: the private key is encrypted and no passphrase was given",
                "pass --passphrase-file FILE or --passphrase-env VAR, or give the certificate instead",
            ) from None
        raise InputError(
            f"{path}: the private key is not encrypted but a passphrase was given ({exc})",
            "drop the passphrase option",
        ) from None
    except ValueError:
        if passphrase is not None:
            raise InputError(
                f"{path}: the passphrase does not decrypt the private key (or the key is damaged)",
                "check the passphrase",
            ) from None
        raise InputError(f"{path}: the private key is damaged", "copy the key again") from None
    except UnsupportedAlgorithm:
        raise InputError(
            f"{path}: the private key uses an algorithm this tool does not support",
            "use RSA, ECDSA or Ed25519",
        ) from None


def is_ca(cert: x509.Certificate) -> bool:
    """True for a CA certificate (basicConstraints cA=TRUE)."""
    record = known(cert)
    if record.ca is None:
        try:
            record.ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            record.ca = False
    return record.ca


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when the certificate is signed by its own key (a root, or a test cert)."""
    record = known(cert)
    if record.self_signed is None:
        record.self_signed = cert.issuer == cert.subject and issued_by(cert, cert)
    return record.self_signed


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``cert``'s signature and the names line up."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def key_type(key: PublicKeyTypes) -> str:
    """``rsa``, ``ecdsa`` or ``ed25519``: the catalog's ``key_type`` vocabulary."""
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    return "other"


def describe_key(key: PublicKeyTypes) -> str:
    """``RSA 2048``, ``ECDSA P-256``, ``Ed25519``: for humans."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ECDSA {curves.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def subject_text(cert: x509.Certificate) -> str:
    """The subject's CN if it has one, else the whole RFC 4514 string."""
    record = known(cert)
    if record.subject is None:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        record.subject = str(cns[0].value) if cns else (cert.subject.rfc4514_string() or "(empty subject)")
    return record.subject


def chain_from_material(material: Material, key_material: Material | None = None) -> Chain:
    """Pick the leaf, its CA certificates and its key out of loaded files.

    The leaf is the first certificate that is not a CA (a Postfix key+chain file or
    ``fullchain.pem`` put it first); a file of CA certificates only (``r10.pem``) has
    no leaf and no key, only CAs to pin with "2 1 1".  A key given
    separately must belong to the leaf, or the error says so: publishing a record for
    the wrong key is how mail gets deferred.
    """
    path = material.path
    certs = list(material.certificates)
    private = list(material.private_keys)
    public = list(material.public_keys)
    if key_material is not None:
        private += key_material.private_keys
        public += key_material.public_keys
        if not (key_material.private_keys or key_material.public_keys):
            raise InputError(f"{key_material.path}: holds no key", "point --key at the private or public key")
    keys: list[PublicKeyTypes] = [k.public_key() for k in private] + public
    if certs:
        leaf = next((c for c in certs if not is_ca(c)), None)
        if leaf is None:
            if keys:
                raise InputError(
                    f"{path}: holds a key but only CA certificates",
                    "give the server's own certificate with its key",
                )
            return Chain(leaf=None, key=None, cas=tuple(certs), source=path)
        cas = tuple(c for c in certs if c is not leaf)
        where = key_material.path if key_material is not None else path
        return Chain(leaf=leaf, key=_leaf_key(leaf, keys, where, path), cas=cas, source=path)
    if len({spki_der(k) for k in keys}) > 1:
        raise InputError(f"{path}: holds more than one different key", "give one key per file")
    return Chain(leaf=None, key=keys[0], cas=(), source=path)


def _leaf_key(leaf: x509.Certificate, keys: list[PublicKeyTypes], where: Path, path: Path) -> PublicKeyTypes:
    """The leaf's public key, once every key given is checked to be it.

    A key whose SPKI encoding is the certificate's SPKI byte for byte is the leaf's key:
    then the leaf's own key object is never built nor its SPKI encoded again (the key's
    encoding is the leaf's, see :func:`cert_spki`).  Any other key is compared as before,
    by value and then by the re-encoded SPKI a record would hash.
    """
    raw = raw_parts(leaf)
    matched: PublicKeyTypes | None = None
    leaf_key: PublicKeyTypes | None = None
    for key in keys:
        spki = spki_der(key)
        if raw is not None and spki == raw.spki:
            record = known(leaf)
            if record.spki is None:
                record.spki = spki
            matched = key
            continue
        if leaf_key is None:
            leaf_key = leaf.public_key()
        if key != leaf_key and spki != cert_spki(leaf):
            raise InputError(
                f"{where}: the key does not match the certificate {subject_text(leaf)!r} in {path}",
                "give the key that belongs to this certificate (or leave the key out)",
            )
    if leaf_key is None:
        leaf_key = matched if matched is not None else leaf.public_key()
    return leaf_key


def raw_parts(cert: x509.Certificate) -> Parts | None:
    """Issuer, subject and SPKI of ``cert`` as its DER holds them (certder.parts, once)."""
    return certmemo.raw_parts(cert, der)


def names_issuer_of(ca: x509.Certificate, cert: x509.Certificate) -> bool:
    """``ca.subject == cert.issuer``, by the names' DER first: the same bytes are the same
    name (and cryptography need not build either as Python objects); different bytes
    may still be equal names (another string type), so those are compared as names."""
    ca_raw, raw = raw_parts(ca), raw_parts(cert)
    if ca_raw is not None and raw is not None and ca_raw.subject == raw.issuer:
        return True
    return bool(ca.subject == cert.issuer)


def load_chain(path: Path, key_path: Path | None = None, passphrase: bytes | None = None) -> Chain:
    """Load a certificate/chain/key file (and optionally its separate key file)."""
    material = load_material(path, passphrase)
    key_material = load_material(key_path, passphrase) if key_path is not None else None
    return chain_from_material(material, key_material)


def read_passphrase(file: Path | None, env: str | None) -> bytes | None:
    """A key passphrase from a file (first line) or an environment variable."""
    if file is not None:
        return read_bytes(file).splitlines()[0]
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise InputError(f"environment variable {env} is not set", "export it or use --passphrase-file")
        return value.encode()
    return None


def dns_names(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS names, lower case without a final dot: its subjectAltName
    entries, or its common name when it has none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
