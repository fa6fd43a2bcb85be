"""The raw parts of a certificate's DER: issuer, subject and SPKI as the file holds them.

cryptography turns a name into Python objects and re-encodes a key to give its SPKI,
which for a fleet's leaves is most of the cost of reading a chain file.  Raw bytes
answer the questions the loader asks most, exactly: two names with the same DER are
the same name, and a key whose SPKI encoding is byte for byte the certificate's is the
certificate's key.  Only certificates cryptography already parsed come here; anything
unexpected gives None and the caller asks cryptography instead.
"""

from __future__ import annotations

from typing import NamedTuple

_SEQUENCE = 0x30
_INTEGER = 0x02
_VERSION = 0xA0  # [0] EXPLICIT Version
#: what ``bytes.split()`` splits on: a PEM body without it is its base64 (one C call)
WHITESPACE = b" \t\n\r\x0b\x0c"


class Parts(NamedTuple):
    """Whole DER elements (tag and length included) of a certificate's TBS."""

    issuer: bytes
    subject: bytes
    spki: bytes


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the element) of the DER element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def parts(der: bytes) -> Parts | None:
    """Issuer, subject and SPKI of a DER certificate, or None if it is not shaped as one."""
    try:
        tag, pos, end = _element(der, 0, len(der))
        if tag != _SEQUENCE:
            return None
        tag, pos, end = _element(der, pos, end)  # tbsCertificate
        if tag != _SEQUENCE:
            return None
        tag, _content, after = _element(der, pos, end)
        if tag == _VERSION:
            tag, _content, after = _element(der, after, end)
        if tag != _INTEGER:  # serialNumber
            return None
        found = []
        pos = after
        for _ in range(5):  # signature, issuer, validity, subject, subjectPublicKeyInfo
            tag, _content, after = _element(der, pos, end)
            if tag != _SEQUENCE:
                return None
            found.append(der[pos:after])
            pos = after
    except ValueError:
        return None
    return Parts(found[1], found[3], found[4])
