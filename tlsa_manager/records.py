"""The TLSA record value type and how its association data is computed.

Presentation and wire format come from dnspython's TLSA rdata (never re-implemented
here); this module adds the RFC 7218 names, the hashing of RFC 6698 §2.1 and the
SMTP owner name of RFC 7672 §2.2.3.  Pure: no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from tlsa_manager.errors import UsageError
from tlsa_manager.interning import interned

if TYPE_CHECKING:
    # dnspython is imported where it is used: importing it costs more than the rest of
    # `tlsa-manager records FILE` (dns._features loads importlib.metadata).
    import dns.name
    import dns.rdata


class Usage(IntEnum):
    """Certificate usage field (RFC 6698 §2.1.1, names from RFC 7218)."""

    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(IntEnum):
    """Which part of the certificate is matched (RFC 6698 §2.1.2)."""

    CERT = 0
    SPKI = 1


class MatchingType(IntEnum):
    """How the selected bytes are compared (RFC 6698 §2.1.3)."""

    FULL = 0
    SHA2_256 = 1
    SHA2_512 = 2


Params = tuple[Usage, Selector, MatchingType]
"""A record kind such as (DANE_EE, SPKI, SHA2_256): "3 1 1"."""


def params_text(params: Params) -> str:
    """``(3, 1, 1)`` as the ``"3 1 1"`` users write in configs."""
    return " ".join(str(int(p)) for p in params)


def parse_params(text: str) -> Params:
    """Parse a record kind such as ``"3 1 1"``; a clear error for anything else."""
    parts = text.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UsageError(
            f"record kind {text!r} is not 'USAGE SELECTOR MTYPE'",
            'write it like "3 1 1" or "2 1 1"',
        )
    usage, selector, mtype = (int(p) for p in parts)
    return (to_usage(usage), to_selector(selector), to_mtype(mtype))


#: members by value: a dict lookup, where ``Usage(3)`` runs the enum machinery in Python (per Tlsa made)
_USAGES: dict[int, Usage] = {int(m): m for m in Usage}
_SELECTORS: dict[int, Selector] = {int(m): m for m in Selector}
_MTYPES: dict[int, MatchingType] = {int(m): m for m in MatchingType}


def to_usage(value: int) -> Usage:
    try:
        return _USAGES[value]
    except (KeyError, TypeError):
        raise UsageError(
            f"TLSA usage {value} is not one of 0, 1, 2, 3", "use 3 (DANE-EE) or 2 (DANE-TA)"
        ) from None


def to_selector(value: int) -> Selector:
    try:
        return _SELECTORS[value]
    except (KeyError, TypeError):
        raise UsageError(f"TLSA selector {value} is not 0 or 1", "use 1 (public key, SPKI)") from None


def to_mtype(value: int) -> MatchingType:
    try:
        return _MTYPES[value]
    except (KeyError, TypeError):
        raise UsageError(f"TLSA matching type {value} is not 0, 1 or 2", "use 1 (SHA2-256)") from None


@dataclass(frozen=True, slots=True, order=True)
class Tlsa:
    """One TLSA record's RDATA: usage, selector, matching type and association data.

    Immutable and hashable, so sets of records compare the way RRsets do.  Ordering
    is by (usage, selector, mtype, data), which gives stable, readable output.
    """

    usage: Usage
    selector: Selector
    mtype: MatchingType
    data: bytes

    def __post_init__(self) -> None:
        # Normalise plain ints to the enums (and validate them) while staying frozen.
        object.__setattr__(self, "usage", to_usage(int(self.usage)))
        object.__setattr__(self, "selector", to_selector(int(self.selector)))
        object.__setattr__(self, "mtype", to_mtype(int(self.mtype)))
        expected = {MatchingType.SHA2_256: 32, MatchingType.SHA2_512: 64}.get(self.mtype)
        if expected is not None and len(self.data) != expected:
            raise UsageError(
                f"TLSA matching type {int(self.mtype)} needs {expected} bytes of data, got {len(self.data)}",
                "check that the hash was copied whole",
            )
        if not self.data:
            raise UsageError("TLSA record has no association data", "give the hex digest")

    @property
    def params(self) -> Params:
        return (self.usage, self.selector, self.mtype)

    @property
    def kind(self) -> str:
        """The record kind as users write it: ``"3 1 1"``."""
        return params_text(self.params)

    def to_rdata(self) -> dns.rdata.Rdata:
        """dnspython's TLSA rdata for this record (presentation and wire format)."""
        return _rdata(self)

    def _make_rdata(self) -> dns.rdata.Rdata:
        import dns.rdataclass
        import dns.rdatatype
        from dns.rdtypes.ANY.TLSA import TLSA

        # the class from_wire would pick, built from the fields (no wire parser per record)
        fields = (int(self.usage), int(self.selector), int(self.mtype), self.data)
        return TLSA(dns.rdataclass.IN, dns.rdatatype.TLSA, *fields)  # type: ignore[no-untyped-call]

    def to_text(self) -> str:
        """Presentation format, lower-case hex in one piece: ``3 1 1 ab12...``."""
        return _presentation(self)

    @classmethod
    def from_rdata(cls, rdata: dns.rdata.Rdata) -> Tlsa:
        return cls(
            Usage(rdata.usage),  # type: ignore[attr-defined]
            Selector(rdata.selector),  # type: ignore[attr-defined]
            MatchingType(rdata.mtype),  # type: ignore[attr-defined]
            bytes(rdata.cert),  # type: ignore[attr-defined]
        )

    @classmethod
    def from_wire(cls, rdata: bytes) -> Tlsa:
        """From TLSA RDATA as it travels (usage, selector, matching type, data)."""
        return _from_wire(bytes(rdata))

    @classmethod
    def from_text(cls, text: str) -> Tlsa:
        """Parse ``"3 1 1 <hex>"`` (any case, spaces in the hex allowed)."""
        known = _PLAIN_TEXT.get(text)
        if known is not None:  # the ledger holds the same few issuer records for every host
            return known
        plain = _PLAIN.fullmatch(text)
        if plain:  # the form the ledger and tlsa-manager write: no tokenizer needed
            record = interned(_plain(plain.group(1), plain.group(2), plain.group(3), plain.group(4).lower()))
            if len(_PLAIN_TEXT) >= 65536:
                _PLAIN_TEXT.clear()
            _PLAIN_TEXT[text] = record
            return record
        import dns.exception
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype

        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, text.strip())
        except (dns.exception.DNSException, ValueError) as exc:
            raise UsageError(
                f"not a TLSA record: {text.strip()!r} ({exc})",
                "write it as 'USAGE SELECTOR MTYPE HEX', e.g. '3 1 1 0123ab...'",
            ) from None
        return cls.from_rdata(rdata)

    def __str__(self) -> str:
        return self.to_text()


_PLAIN = re.compile(r"\s*([0-3]) ([01]) ([0-2]) ((?:[0-9a-fA-F]{2})+)\s*")
_PLAIN_TEXT: dict[str, Tlsa] = {}


@functools.lru_cache(maxsize=65536)
def _plain(usage: str, selector: str, mtype: str, hexdata: str) -> Tlsa:
    return Tlsa(Usage(int(usage)), Selector(int(selector)), MatchingType(int(mtype)), bytes.fromhex(hexdata))


@functools.lru_cache(maxsize=65536)
def _from_wire(rdata: bytes) -> Tlsa:
    if len(rdata) < 4:
        raise UsageError("TLSA RDATA is shorter than 4 bytes", "check the record at the server")
    return interned(Tlsa(to_usage(rdata[0]), to_selector(rdata[1]), to_mtype(rdata[2]), rdata[3:]))


@functools.lru_cache(maxsize=65536)
def _rdata(record: Tlsa) -> dns.rdata.Rdata:
    """Immutable in dnspython, so shared: the issuer records of a fleet are the same few."""
    return record._make_rdata()


def _presentation(record: Tlsa) -> str:
    """RFC 6698 §2.2 presentation: three decimals and the data as one lower-case hex word.

    Written here rather than through dnspython's rdata only so that printing a record
    does not import dnspython; tests/test_records_oracle.py holds it equal to
    ``to_rdata().to_text(chunksize=0)`` for every kind.
    """
    return f"{int(record.usage)} {int(record.selector)} {int(record.mtype)} {record.data.hex()}"


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo, algorithm identifier included (RFC 6698 §2.1.2)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def digest(mtype: MatchingType, content: bytes) -> bytes:
    """The association data for ``content`` under matching type ``mtype``."""
    if mtype is MatchingType.SHA2_256:
        return hashlib.sha256(content).digest()
    if mtype is MatchingType.SHA2_512:
        return hashlib.sha512(content).digest()
    return content


def selected_bytes(selector: Selector, cert: x509.Certificate | None, key: PublicKeyTypes) -> bytes:
    """The bytes a selector picks: the whole DER certificate, or the DER SPKI."""
    if selector is Selector.CERT:
        if cert is None:
            raise UsageError(
                "selector 0 (whole certificate) needs a certificate, but only a key was given",
                'use selector 1 (public key), which is what "3 1 1" pins',
            )
        return cert.public_bytes(serialization.Encoding.DER)
    return spki_der(key)


def compute(
    usage: Usage,
    selector: Selector,
    mtype: MatchingType,
    *,
    cert: x509.Certificate | None = None,
    key: PublicKeyTypes | None = None,
) -> Tlsa:
    """Compute a TLSA record for a certificate, or for a bare public key.

    A bare key is what makes pre-publication possible: the "3 1 1" of a next key can
    be in DNS long before any certificate for it exists.
    """
    if key is None:
        if cert is None:
            raise UsageError("nothing to compute a TLSA record from", "give a certificate or key")
        key = cert.public_key()
    return Tlsa(usage, selector, mtype, digest(mtype, selected_bytes(selector, cert, key)))


def spki_sha256(key: PublicKeyTypes) -> str:
    """Hex SHA-256 of the SPKI: the identity of a key across all its certificates."""
    return hashlib.sha256(spki_der(key)).hexdigest()


def hashed_name(labels: tuple[bytes, ...]) -> dns.name.Name:
    """A dnspython name that computes its hash once.

    dnspython hashes a name by a Python loop over every byte, on every dict lookup; a
    fleet run looks its owner names up (views, published RRsets, plans) tens of
    thousands of times.  Equal to, and hashing like, the plain name of the same labels.
    """
    return _name_class()(labels)


@functools.cache
def _name_class() -> type[dns.name.Name]:
    import dns.name

    class HashedName(dns.name.Name):
        __slots__ = ("_folded", "_hash")

        def __init__(self, labels: tuple[bytes, ...]) -> None:
            super().__init__(labels)
            object.__setattr__(self, "_hash", dns.name.Name.__hash__(self))
            object.__setattr__(self, "_folded", tuple(label.lower() for label in self.labels))

        def __hash__(self) -> int:
            return self._hash  # type: ignore[attr-defined,no-any-return]

        # dnspython's hash is a sum over the bytes: names of a numbered fleet collide
        # (tm-19 and tm-20 hash alike), and each collision in a dict lookup costs a
        # label-by-label ``fullcompare``.  Between two of these names equality is the
        # same question (case-insensitive labels, absolute or not) asked of tuples.
        def __eq__(self, other: object) -> bool:
            if type(other) is type(self):
                return self._folded == other._folded  # type: ignore[attr-defined,no-any-return]
            return bool(dns.name.Name.__eq__(self, other))  # type: ignore[no-untyped-call]

        def __ne__(self, other: object) -> bool:
            return not self.__eq__(other)

        def __reduce__(self) -> tuple[type[dns.name.Name], tuple[tuple[bytes, ...]]]:
            return dns.name.Name, (self.labels,)  # pickles and copies as the plain name

    return HashedName


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SERVICE_LABEL = re.compile(r"[A-Za-z0-9-]{1,62}")


@functools.lru_cache(maxsize=65536)
def owner_name(host: str, port: int = 25, protocol: str = "tcp") -> dns.name.Name:
    """``_25._tcp.<host>.``, the TLSA owner of RFC 7672 §2.2.3 (always absolute).

    Raises a UsageError for anything that is not a valid DNS host name, so a typo
    never reaches a zone.
    """
    import dns.name

    if not 1 <= port <= 65535:
        raise UsageError(f"port {port} is outside 1-65535", "SMTP servers use port 25")
    if _SERVICE_LABEL.fullmatch(protocol):
        # the labels as they are: what from_text gives for "_25._tcp", without its tokenizer
        return hashed_name((f"_{port}".encode(), f"_{protocol}".encode(), *host_name(host).labels))
    return dns.name.from_text(f"_{port}._{protocol}", origin=None).concatenate(host_name(host))


@functools.lru_cache(maxsize=65536)
def host_name(host: str) -> dns.name.Name:
    """Parse and check a host name: letters, digits, hyphens, dots; absolute result.

    Cached: the configuration checks every host's name and the run then builds its
    owner names from it (dnspython names are immutable, so one object is shared)."""
    import dns.exception
    import dns.name

    text = host.strip()
    if not text or text == ".":
        raise UsageError("the host name is empty", "give the MX host name, e.g. mail.example.com")
    labels = text.rstrip(".").split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise UsageError(f"{host!r} is not a valid DNS host name", _name_hint(text))
    try:
        # every label is ASCII letters, digits and hyphens: nothing for from_text to unescape
        return hashed_name((*(label.encode() for label in labels), b""))
    except dns.exception.DNSException as exc:
        raise UsageError(f"{host!r} is not a valid DNS host name ({exc})", "shorten it") from None


def _name_hint(text: str) -> str:
    """What to write instead; for an internationalised name (``mail.exämple.com``), its
    A-label form, the name as it is in DNS and in the certificate."""
    if not text.isascii():
        import dns.exception
        import dns.name

        try:
            a_label = dns.name.from_unicode(text.rstrip(".")).to_text(omit_final_dot=True)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            pass
        else:
            return f"write it in its A-label (ASCII) form: {a_label}"
    return "use letters, digits and hyphens between dots, e.g. mail.example.com"


def parse_records(text: str) -> list[Tlsa]:
    """The TLSA records of a records file (``check --records``), one a line: bare
    ``3 1 1 HEX`` or a zone-file line ``OWNER [TTL] IN TLSA 3 1 1 HEX``; ``;`` starts a
    comment, blank lines are skipped.  A line that is not a record is a usage error."""
    records = []
    for line in text.splitlines():
        record = line.split(";", 1)[0].strip()
        if record:
            records.append(Tlsa.from_text(record.split(" TLSA ", 1)[1] if " TLSA " in record else record))
    return records
