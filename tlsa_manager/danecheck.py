"""Does a chain, as a server sent it, authenticate against a TLSA RRset? (pure)

RFC 7671 / RFC 7672 as a DANE SMTP client applies them:
- only usages 2 (DANE-TA) and 3 (DANE-EE) are usable; 0/1 are ignored (RFC 7672 §3.1.3);
- for each (usage, selector) only the strongest matching type present counts (RFC 7671 §9);
  both rules are :func:`tlsa_manager.facts.usable`, the planner's too;
- DANE-EE: the leaf's certificate or SPKI matches; no name or date checks (§5.1);
- DANE-TA: a certificate the server actually sent matches and becomes the trust anchor;
  the chain from the leaf up to it must verify by signature, the leaf must name the MX
  host (or the next-hop domain when the MX lookup was secure), and every certificate
  from the leaf to the anchor must be within its dates (§5.2, RFC 7672 §3.2.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from tlsa_manager.certs import dns_names, issued_by
from tlsa_manager.facts import cert_facts, usable
from tlsa_manager.records import Tlsa, Usage


@dataclass(frozen=True)
class Match:
    ok: bool
    detail: str
    record: Tlsa | None = None


def _matches(cert: x509.Certificate, record: Tlsa) -> bool:
    return cert_facts(cert).record(record.params) == record


def name_ok(cert: x509.Certificate, reference: Sequence[str]) -> bool:
    """RFC 6125-style match of the leaf against the reference identifiers (one wildcard label)."""
    wanted = [r.lower().rstrip(".") for r in reference]
    for name in dns_names(cert):
        for ref in wanted:
            if name == ref:
                return True
            if name.startswith("*.") and "." in ref and ref.split(".", 1)[1] == name[2:]:
                return True
    return False


def verify(
    chain: Sequence[x509.Certificate],
    records: Sequence[Tlsa],
    reference_names: Sequence[str],
    now: dt.datetime,
) -> Match:
    """Whether a DANE SMTP client accepts this chain with these records."""
    if not chain:
        return Match(False, "the server sent no certificate")
    good = usable(records)
    if not good:
        return Match(False, "no usable TLSA record (only usage 0/1): TLS is required, not authenticated")
    leaf = chain[0]
    for record in good:
        if record.usage is Usage.DANE_EE and _matches(leaf, record):
            return Match(True, f"DANE-EE {record.kind} matches the leaf", record)
    reasons = []
    for record in good:
        if record.usage is not Usage.DANE_TA:
            continue
        for depth, anchor in enumerate(chain):
            if not _matches(anchor, record):
                continue
            path = list(chain[: depth + 1])
            if any(not issued_by(path[i], path[i + 1]) for i in range(len(path) - 1)):
                reasons.append(f"{record.kind} matches a certificate the chain does not lead to")
                continue
            if not name_ok(leaf, reference_names):
                reasons.append(
                    f"{record.kind} matches, but the certificate does not name {reference_names[0]}"
                )
                continue
            expired = [c for c in path if not c.not_valid_before_utc <= now <= c.not_valid_after_utc]
            if expired:
                reasons.append(f"{record.kind} matches, but a certificate of the chain is outside its dates")
                continue
            return Match(True, f"DANE-TA {record.kind} matches a certificate the server sent", record)
    if reasons:
        return Match(False, reasons[0])
    return Match(False, "no TLSA record matches the certificate chain the server sent")
