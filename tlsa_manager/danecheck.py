"""Does a chain, as a server sent it, authenticate against a TLSA RRset? (pure)

RFC 7671 / RFC 7672 as a DANE SMTP client applies them:
- only usages 2 (DANE-TA) and 3 (DANE-EE) are usable; 0/1 are ignored (RFC 7672 §3.1.3);
- for each (usage, selector) only the strongest matching type present counts (RFC 7671 §9);
  both rules are :func:`tlsa_manager.facts.usable`, the planner's too;
- DANE-EE: the leaf's certificate or SPKI matches; no name or date checks (§5.1);
- DANE-TA: a certificate the server actually sent matches and becomes the trust anchor;
  a chain from the leaf up to it, built from the certificates sent in any order (as
  OpenSSL does), must verify by signature, the leaf must name the MX
  host (or the next-hop domain when the MX lookup was secure), and every certificate
  from the leaf to the anchor must be within its dates (§5.2, RFC 7672 §3.2.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from tlsa_manager.certs import dns_names, issued_by
from tlsa_manager.facts import cert_facts, usable
from tlsa_manager.records import Tlsa, Usage


@dataclass(frozen=True)
class Match:
    ok: bool
    detail: str
    record: Tlsa | None = None


def _matches(cert: x509.Certificate, record: Tlsa) -> bool:
    try:
        return cert_facts(cert).record(record.params) == record
    except (ValueError, UnsupportedAlgorithm):  # a key this library cannot read (SM2, ...)
        return False


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


#: the most certificates of what a server sent that a path is built from (Postfix's
#: smtp_tls_scert_verifydepth is 9; a server sending hundreds gets no quadratic work)
PATH_POOL = 16


def path_to(chain: Sequence[x509.Certificate], depth: int) -> list[x509.Certificate] | None:
    """The certificates from the leaf up to ``chain[depth]``, each issued by the next,
    built from what the server sent in any order, as OpenSSL builds a chain from the
    untrusted certificates (a server may send an extra or misordered CA certificate);
    None when none leads there.  Breadth first, each certificate visited once."""
    pool = list(chain[:PATH_POOL])
    if depth == 0:
        return [chain[0]]
    if depth >= len(pool):
        return None
    came_from: dict[int, int] = {0: 0}
    frontier = [0]
    while frontier:
        reached = []
        for index in frontier:
            for other, cert in enumerate(pool):
                if other not in came_from and issued_by(pool[index], cert):
                    came_from[other] = index
                    reached.append(other)
        if depth in came_from:
            path, at = [depth], depth
            while at != 0:
                at = came_from[at]
                path.append(at)
            return [pool[i] for i in reversed(path)]
        frontier = reached
    return None


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
            path = path_to(chain, depth)
            if path is None:
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
