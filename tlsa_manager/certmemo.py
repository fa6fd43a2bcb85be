"""What a run already worked out about each certificate it parsed (for certs.py).

A fleet's chain files carry the same few CA certificates: each is parsed from its PEM
block once and described once (DER, SPKI, CA or not, ...), whichever file it is in.
Each host's leaf is needed only while its file is read: it is forgotten soon, so a run
of a thousand hosts does not keep a thousand parsed leaves (their names, extensions and
keys as Python objects) alive for the garbage collector to walk again and again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from cryptography import x509

from tlsa_manager.certder import Parts, parts

T = TypeVar("T")


class Known:
    """What was worked out about one certificate, found by the certificate's ``id``.

    One object per certificate: a repeated question costs one dict lookup and an
    attribute read (a memo keyed by a tuple per question cost more than some answers).
    It holds the certificate, so the ``id`` stays its own while it is kept.
    """

    __slots__ = ("ca", "cert", "der", "description", "raw", "self_signed", "shared", "spki", "subject")

    def __init__(self, cert: x509.Certificate, der: bytes | None = None) -> None:
        self.cert = cert
        self.der = der
        self.spki: bytes | None = None
        self.ca: bool | None = None
        self.self_signed: bool | None = None
        self.subject: str | None = None
        self.description: object = None
        #: certder.parts of the DER: False until asked, then the parts or None
        self.raw: Parts | bool | None = False
        #: parsed from a PEM block met again (in another file: a fleet's CA certificate)
        self.shared = False


_PARSED: dict[bytes, Known] = {}
_KNOWN: dict[int, Known] = {}
#: certificates known at once before the unshared ones are forgotten
LIMIT = 512


def known(cert: x509.Certificate) -> Known:
    """The record of ``cert``, a new one the first time it is asked about."""
    found = _KNOWN.get(id(cert))
    if found is None or found.cert is not cert:
        _trim()
        found = _KNOWN[id(cert)] = Known(cert)
    return found


def parsed(block: bytes) -> x509.Certificate | None:
    """The certificate of a PEM block parsed before (now known to be shared), or None."""
    found = _PARSED.get(block)
    if found is None:
        return None
    found.shared = True
    return found.cert


def remember(block: bytes, cert: x509.Certificate, der: bytes) -> None:
    """A certificate just parsed from ``block``, with the DER its base64 gave."""
    _trim()
    _PARSED[block] = _KNOWN[id(cert)] = Known(cert, der)


def raw_parts(cert: x509.Certificate, der: Callable[[x509.Certificate], bytes]) -> Parts | None:
    """Issuer, subject and SPKI of ``cert`` as its DER holds them (None: not shaped as one)."""
    record = known(cert)
    if record.raw is False:
        record.raw = parts(der(cert))
    return cast("Parts | None", record.raw)


def described(cert: x509.Certificate, describe: Callable[[x509.Certificate], T]) -> T:
    """``describe(cert)`` worked out once per certificate, for the one describer there is
    (:func:`tlsa_manager.facts.cert_facts`): a shared CA certificate gets one description,
    and what the planner asks of it is then asked once too."""
    record = known(cert)
    if record.description is None:
        record.description = describe(cert)
    return cast(T, record.description)


def _trim() -> None:
    """At the limit keep only the shared certificates (all go if they fill half of it)."""
    global _PARSED, _KNOWN
    if len(_KNOWN) < LIMIT:
        return
    _KNOWN = {i: k for i, k in _KNOWN.items() if k.shared}
    _PARSED = {b: k for b, k in _PARSED.items() if k.shared}
    if len(_KNOWN) > LIMIT // 2:
        _KNOWN, _PARSED = {}, {}
