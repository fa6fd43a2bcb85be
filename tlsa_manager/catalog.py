"""The Let's Encrypt issuer catalog: which CA keys may sign the next certificate.

A DANE-TA "2 1 1" RRset for a Let's Encrypt host must list every active and backup
intermediate of the host's key type, because Let's Encrypt picks one at random and
may switch to a backup without warning (dane-rules.md D5).  The catalog is data:
PEM files plus a manifest with each certificate's status, bundled in the package
and refreshable with ``tlsa-manager catalog update``.  No status lives in code.

The unit that matters for "2 1 1" is the CA *key*: cross-signs and reissues of one
key share one SPKI hash, so certificates are grouped by SPKI into :class:`Issuer`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509

from tlsa_manager.certs import (
    Chain,
    cert_spki,
    describe_key,
    is_self_signed,
    issued_by,
    key_type,
    names_issuer_of,
    raw_parts,
)
from tlsa_manager.errors import InputError
from tlsa_manager.fsutil import check_private, check_trusted_dir
from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage, compute, spki_sha256

STATUSES = ("active", "backup", "retired", "root")
_STATUS_RANK = {"active": 0, "backup": 1, "root": 2, "retired": 3}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CatalogCert:
    """One certificate file of the catalog, with the facts from its manifest entry."""

    name: str
    ca: str
    variant: str
    status: str
    status_detail: str
    certificate: x509.Certificate
    pem: bytes


@dataclass(frozen=True)
class Issuer:
    """One CA key with all its certificates (self-signed, cross-signed, reissued)."""

    name: str
    spki_sha256: str
    status: str
    is_root: bool
    certs: tuple[CatalogCert, ...]

    @property
    def key_type(self) -> str:
        return key_type(self.certs[0].certificate.public_key())

    @property
    def key_description(self) -> str:
        return describe_key(self.certs[0].certificate.public_key())

    @property
    def not_before(self) -> datetime:
        return min(c.certificate.not_valid_before_utc for c in self.certs)

    @property
    def not_after(self) -> datetime:
        return max(c.certificate.not_valid_after_utc for c in self.certs)

    @property
    def record(self) -> Tlsa:
        """The "2 1 1" record that pins this CA key."""
        return compute(
            Usage.DANE_TA,
            Selector.SPKI,
            MatchingType.SHA2_256,
            cert=self.certs[0].certificate,
        )

    def label(self) -> str:
        """``YR2, active``: how the CLI names an issuer."""
        return f"{self.name}, {self.status}"


@dataclass(frozen=True)
class Catalog:
    """All issuers, plus where they were loaded from (bundled or refreshed)."""

    issuers: tuple[Issuer, ...]
    origin: str

    def by_spki(self, spki_hex: str) -> Issuer | None:
        return self._by_spki.get(spki_hex.lower())

    @functools.cached_property
    def _by_spki(self) -> dict[str, Issuer]:
        """The issuers by their SPKI hash (the first of equal ones, as a scan finds it)."""
        found: dict[str, Issuer] = {}
        for issuer in self.issuers:
            found.setdefault(issuer.spki_sha256, issuer)
        return found

    @functools.cached_property
    def _by_ca_spki(self) -> dict[bytes, Issuer | None]:
        """:meth:`by_spki` of a CA certificate's SPKI bytes, hashed once per CA key: a
        fleet's chains carry the same few CA certificates (their SPKI is one object)."""
        return {}

    def by_name(self, name: str) -> Issuer | None:
        wanted = name.strip().lower()
        return next((i for i in self.issuers if i.name.lower() == wanted), None)

    def intermediates(
        self, key_type_: str | None = None, statuses: Iterable[str] = ("active", "backup")
    ) -> tuple[Issuer, ...]:
        """Issuing CAs (never roots) of a key type whose status is one of ``statuses``."""
        wanted = set(statuses)
        return tuple(
            i
            for i in self.issuers
            if not i.is_root and i.status in wanted and (key_type_ is None or i.key_type == key_type_)
        )

    def issuer_of(self, chain: Chain) -> Issuer | None:
        """The catalog CA that signed the chain's leaf, or None if it is not one of ours.

        The CA certificate the chain carries for the leaf's issuer name decides (that
        is the certificate a DANE-TA record must match, RFC 7671 §5.2.2); for a bare
        ``cert.pem`` every catalog certificate with that name is tried by signature.
        """
        leaf = chain.leaf
        if leaf is None:
            return None
        for ca in chain.cas:
            if names_issuer_of(ca, leaf):
                spki = cert_spki(ca)
                try:
                    found = self._by_ca_spki[spki]
                except KeyError:
                    found = self._by_ca_spki[spki] = self.by_spki(hashlib.sha256(spki).hexdigest())
                if found is not None:
                    return found
        found_cert = self.issuing_cert(leaf)
        return found_cert[0] if found_cert else None

    def issuing_cert(self, leaf: x509.Certificate) -> tuple[Issuer, CatalogCert] | None:
        """The catalog CA certificate that signed ``leaf``: same name as the leaf's issuer,
        a key identifier that fits its AKI (when both have one) and, what decides, a
        signature that verifies.  A bare ``cert.pem`` (certbot's, lego's ``.crt`` without
        the issuer) is completed with this certificate.  Of one CA's certificates the
        primary one is preferred (not cross-signed, not revoked, not retired)."""
        aki = _key_id(leaf, x509.AuthorityKeyIdentifier)
        found = [
            (issuer, cert)
            for issuer, cert in self.named_by(leaf)
            if (aki is None or _key_id(cert.certificate, x509.SubjectKeyIdentifier) in (None, aki))
            and issued_by(leaf, cert.certificate)
        ]
        if not found:
            return None
        return min(
            found,
            key=lambda pair: (
                _STATUS_RANK[pair[1].status],
                "revoked" in pair[1].name,
                "cross" in pair[1].variant.lower(),
            ),
        )

    def named_by(self, leaf: x509.Certificate) -> tuple[tuple[Issuer, CatalogCert], ...]:
        """The catalog certificates whose subject is the name ``leaf`` gives as its issuer
        (equal as cryptography compares names), in catalog order: one lookup, where
        comparing the name with every catalog subject was 50 comparisons of Python
        objects per host whose issuer is not in its chain or not in the catalog."""
        if not self.issuers:
            return ()
        return self._by_subject.get(_issuer_key(leaf), ())

    @functools.cached_property
    def _by_subject(self) -> dict[NameKey, tuple[tuple[Issuer, CatalogCert], ...]]:
        found: dict[NameKey, list[tuple[Issuer, CatalogCert]]] = {}
        for issuer in self.issuers:
            for cert in issuer.certs:
                found.setdefault(name_key(cert.certificate.subject), []).append((issuer, cert))
        return {key: tuple(pairs) for key, pairs in found.items()}

    def siblings(self, issuer: Issuer) -> tuple[Issuer, ...]:
        """Other active/backup intermediates of the same key type: the next issuer may be any."""
        return tuple(i for i in self.intermediates(issuer.key_type) if i is not issuer)

    def roots(self) -> tuple[Issuer, ...]:
        return tuple(i for i in self.issuers if i.is_root)


#: a name as cryptography compares names: its RDNs in order, each the set of (type, value)
NameKey = tuple[frozenset[tuple[x509.ObjectIdentifier, object]], ...]
#: the NameKey of a leaf's issuer by the name's DER: a fleet's leaves name the same few
_ISSUER_KEYS: dict[bytes, NameKey] = {}


def name_key(name: x509.Name) -> NameKey:
    """``name`` reduced to what ``x509.Name.__eq__`` compares (RDN by RDN, each a set of
    attributes equal by OID and value): equal keys exactly when the names are equal."""
    return tuple(frozenset((attribute.oid, attribute.value) for attribute in rdn) for rdn in name.rdns)


def _issuer_key(leaf: x509.Certificate) -> NameKey:
    """The NameKey of ``leaf.issuer``, worked out once per issuer DER (the same bytes
    parse to the same name)."""
    raw = raw_parts(leaf)
    if raw is None:
        return name_key(leaf.issuer)
    found = _ISSUER_KEYS.get(raw.issuer)
    if found is None:
        found = name_key(leaf.issuer)
        if len(_ISSUER_KEYS) >= 256:
            _ISSUER_KEYS.clear()
        _ISSUER_KEYS[raw.issuer] = found
    return found


def _key_id(
    cert: x509.Certificate, kind: type[x509.AuthorityKeyIdentifier] | type[x509.SubjectKeyIdentifier]
) -> bytes | None:
    """A certificate's authority or subject key identifier, None when it has none."""
    try:
        value = cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):  # none, or extensions that do not parse
        return None
    key_id = value.key_identifier if isinstance(value, x509.AuthorityKeyIdentifier) else value.digest
    return bytes(key_id) if key_id is not None else None


def build_catalog(entries: Sequence[Mapping[str, Any]], pems: Mapping[str, bytes], origin: str) -> Catalog:
    """Group manifest entries by CA key and check each PEM against its manifest facts.

    A manifest whose hash does not match its PEM is rejected: a catalog that
    silently disagrees with itself would publish the wrong "2 1 1".
    """
    certs: list[CatalogCert] = []
    for entry in entries:
        file = str(entry["file"])
        if file not in pems:
            raise InputError(f"catalog {origin}: {file} is listed but missing", "run 'catalog update'")
        cert = x509.load_pem_x509_certificate(pems[file])
        status = str(entry["status"])
        if status not in STATUSES:
            raise InputError(
                f"catalog {origin}: {file} has unknown status {status!r}",
                f"use one of {', '.join(STATUSES)}",
            )
        expected = entry.get("spki_sha256")
        if expected and expected != spki_sha256(cert.public_key()):
            raise InputError(
                f"catalog {origin}: {file} does not match its manifest hash",
                "reinstall the package or run 'catalog update'",
            )
        certs.append(
            CatalogCert(
                name=str(entry["name"]),
                ca=str(entry["ca"]),
                variant=str(entry.get("variant", "")),
                status=status,
                status_detail=str(entry.get("status_detail", "")),
                certificate=cert,
                pem=pems[file],
            )
        )
    by_key: dict[str, list[CatalogCert]] = {}
    for cert_entry in certs:
        by_key.setdefault(spki_sha256(cert_entry.certificate.public_key()), []).append(cert_entry)
    issuers = []
    for spki, group in by_key.items():
        status = min((c.status for c in group), key=_STATUS_RANK.__getitem__)
        names = sorted({c.ca for c in group}, key=lambda n: (len(n), n))
        issuers.append(
            Issuer(
                name=names[0],
                spki_sha256=spki,
                status=status,
                is_root=any(is_self_signed(c.certificate) for c in group),
                certs=tuple(group),
            )
        )
    return Catalog(tuple(issuers), origin)


def load_directory(directory: Path, origin: str | None = None) -> Catalog:
    """Load a catalog written by ``catalog update`` (or any manifest + PEM folder)."""
    try:
        entries = json.loads((directory / MANIFEST).read_text())
        pems = {e["file"]: (directory / e["file"]).read_bytes() for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"catalog in {directory} is unreadable ({exc})",
            "run 'tlsa-manager catalog update' again or delete that folder",
        ) from None
    return build_catalog(entries, pems, origin or str(directory))


@functools.cache
def load_bundled() -> Catalog:
    """The catalog shipped inside the package."""
    root = resources.files("tlsa_manager") / "data" / "letsencrypt"
    entries = json.loads((root / MANIFEST).read_text())
    pems = {e["file"]: (root / e["file"]).read_bytes() for e in entries}
    return build_catalog(entries, pems, "bundled")


def bundled_roots() -> tuple[x509.Certificate, ...]:
    """The self-signed ISRG roots shipped in the package: the trust anchors of updates."""
    return tuple(
        c.certificate
        for issuer in load_bundled().roots()
        for c in issuer.certs
        if is_self_signed(c.certificate) and "ISRG" in issuer.name
    )


def refreshed_dir(state_dir: Path) -> Path:
    return state_dir / "catalog"


def load(state_dir: Path | None) -> Catalog:
    """The refreshed catalog from the state directory if there is one, else the bundled one."""
    if state_dir is not None and (refreshed_dir(state_dir) / MANIFEST).is_file():
        # A forged catalog would pin the wrong issuers: trust it only where nobody else writes.
        check_trusted_dir(state_dir)
        check_trusted_dir(refreshed_dir(state_dir), "catalog directory")
        for item in refreshed_dir(state_dir).iterdir():  # the files too: each could be edited in place
            check_private(item, os.lstat(item), "catalog file", f"chmod 644 {item} and chown it to this user")
        return load_directory(refreshed_dir(state_dir), origin=f"refreshed ({refreshed_dir(state_dir)})")
    return load_bundled()
