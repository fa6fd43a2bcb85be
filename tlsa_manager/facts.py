"""What the planner needs to know about a chain, as plain bytes (pure).

The planner never handles certificates: it needs only the DER bytes a TLSA record
can select (the leaf's SPKI and certificate, each CA's), so the same planner runs on
real chains and on the synthetic chains of the simulation.  Matching follows
RFC 7671/7672: DANE-EE(3) and PKIX-EE(1) match the leaf, DANE-TA(2) and PKIX-TA(0)
match a CA certificate the server actually sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlsa_manager.certmemo import described
from tlsa_manager.certs import Chain, cert_spki, der, is_self_signed, key_type, raw_parts, subject_text
from tlsa_manager.memo import frozen_hash, memo_method
from tlsa_manager.records import (
    MatchingType,
    Params,
    Selector,
    Tlsa,
    Usage,
    digest,
    spki_der,
)

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class CertFacts:
    """The selectable bytes of one certificate (or of a bare key: no ``cert_der``)."""

    spki_der: bytes
    cert_der: bytes | None = None
    name: str = ""

    def __hash__(self) -> int:
        return frozen_hash(self)

    def selected(self, selector: Selector) -> bytes | None:
        return self.spki_der if selector is Selector.SPKI else self.cert_der

    @memo_method  # frozen value objects; the planner asks again and again
    def record(self, params: Params) -> Tlsa | None:
        usage, selector, mtype = params
        content = self.selected(selector)
        if content is None:
            return None
        return Tlsa(usage, selector, mtype, digest(mtype, content))


@dataclass(frozen=True)
class ChainFacts:
    """A chain as the server would send it: leaf (or bare key) and CA certificates.

    ``problem`` is set when the chain must not go live (e.g. the staged key does
    not match the staged certificate, H24); the planner then keeps its gate closed.
    """

    label: str
    leaf: CertFacts
    key_type: str
    cas: tuple[CertFacts, ...] = ()
    problem: str | None = None
    issuer_name: str | None = None
    extra: tuple[str, ...] = field(default=())
    #: the leaf's issuer (CN, O) as the certificate names it: a Let's Encrypt chain
    #: whose issuer the catalog does not know means the catalog is stale (H26)
    leaf_issuer_cn: str = ""
    leaf_issuer_org: str = ""
    #: the catalog CA the leaf names as its issuer when that CA's key did not sign it
    #: (a test or staging leaf borrowing the name): H26 then says so, not "unknown CA"
    named_issuer: str = ""

    def __hash__(self) -> int:
        return frozen_hash(self)

    @property
    def leaf_id(self) -> bytes:
        return self.leaf.spki_der

    @memo_method
    def matching(self, params: Params) -> frozenset[Tlsa]:
        """Every record of this kind that would authenticate this chain."""
        usage = params[0]
        sources = (self.leaf,) if usage in (Usage.DANE_EE, Usage.PKIX_EE) else self.cas
        return frozenset(r for c in sources if (r := c.record(params)) is not None)

    def matched_by(self, records: Iterable[Tlsa], params: Params) -> bool:
        return bool(self.matching(params) & set(records))

    def covered_by(self, records: Iterable[Tlsa]) -> bool:
        """I-1 for one RRset version: every kind present has a record matching this chain.

        An empty RRset covers nothing but breaks nothing either (no DANE); callers
        decide what absence means.
        """
        records = frozenset(records)
        kinds = {r.params for r in records}
        return all(self.matching(k) & records for k in kinds)

    def authenticates(self, records: Iterable[Tlsa]) -> bool:
        """What a DANE sender concludes (RFC 7672 §3): some record it uses matches."""
        return any(r in self.matching(r.params) for r in usable(records))


#: digest agility (RFC 7671 §9): per usage and selector a sender uses the strongest present
DIGEST_STRENGTH = {MatchingType.FULL: 0, MatchingType.SHA2_256: 1, MatchingType.SHA2_512: 2}


def usable(records: Iterable[Tlsa]) -> list[Tlsa]:
    """The records a DANE SMTP sender uses: usages 2/3 only (RFC 7672 §3.1.3), and per
    (usage, selector) only those of the strongest matching type present (RFC 7671 §9).

    The one rule for both the planner's view (:meth:`ChainFacts.authenticates`) and the
    live check's (:func:`tlsa_manager.danecheck.verify`), so they cannot disagree.
    """
    candidates = [r for r in records if r.usage in (Usage.DANE_TA, Usage.DANE_EE)]
    best: dict[tuple[Usage, Selector], MatchingType] = {}
    for r in candidates:
        key = (r.usage, r.selector)
        if key not in best or DIGEST_STRENGTH[r.mtype] > DIGEST_STRENGTH[best[key]]:
            best[key] = r.mtype
    return [r for r in candidates if best[(r.usage, r.selector)] == r.mtype]


def cert_facts(cert: x509.Certificate) -> CertFacts:
    """The facts of one certificate, one object per certificate: a CA's is shared by
    every chain that carries it (with what the planner asks of it, see ``record``)."""
    return described(cert, _describe)


def _describe(cert: x509.Certificate) -> CertFacts:
    return CertFacts(cert_spki(cert), der(cert), subject_text(cert))


def facts_from_chain(chain: Chain, label: str, issuer_name: str | None = None) -> ChainFacts:
    """ChainFacts of a loaded chain (self-signed roots dropped: servers need not send them)."""
    if chain.key is None:
        raise ValueError("a chain without leaf or key has no facts")
    leaf = cert_facts(chain.leaf) if chain.leaf is not None else CertFacts(spki_der(chain.key), None, "(key)")
    cas = tuple(cert_facts(c) for c in chain.cas if not is_self_signed(c))
    cn, org = _issuer_names(chain.leaf) if chain.leaf is not None else ("", "")
    return ChainFacts(
        label, leaf, key_type(chain.key), cas, issuer_name=issuer_name, leaf_issuer_cn=cn, leaf_issuer_org=org
    )


#: (CN, O) of an issuer name by its DER: a fleet's leaves name the same few issuers
_ISSUER_NAMES: dict[bytes, tuple[str, str]] = {}


def _issuer_names(cert: x509.Certificate) -> tuple[str, str]:
    """The leaf's issuer CN and O, read once per issuer name (the same DER, the same name)."""
    raw = raw_parts(cert)
    found = _ISSUER_NAMES.get(raw.issuer) if raw is not None else None
    if found is None:
        found = _names(cert)
        if raw is not None:
            if len(_ISSUER_NAMES) >= 256:
                _ISSUER_NAMES.clear()
            _ISSUER_NAMES[raw.issuer] = found
    return found


def _names(cert: x509.Certificate) -> tuple[str, str]:
    from cryptography import x509

    def first(oid: x509.ObjectIdentifier) -> str:
        values = cert.issuer.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    return first(x509.NameOID.COMMON_NAME), first(x509.NameOID.ORGANIZATION_NAME)


def _cert_to_json(c: CertFacts) -> dict[str, str | None]:
    return {"spki": c.spki_der.hex(), "cert": c.cert_der.hex() if c.cert_der else None, "name": c.name}


def _cert_from_json(doc: dict[str, Any]) -> CertFacts:
    cert = doc.get("cert")
    der = bytes.fromhex(str(cert)) if cert else None
    return CertFacts(bytes.fromhex(str(doc["spki"])), der, str(doc["name"]))


def chain_to_json(chain: ChainFacts) -> dict[str, Any]:
    """Public bytes only (the ledger keeps the chain a deploy replaced, never a key)."""
    return {
        "label": chain.label,
        "key_type": chain.key_type,
        "issuer": chain.issuer_name,
        "leaf": _cert_to_json(chain.leaf),
        "cas": [_cert_to_json(c) for c in chain.cas],
    }


def chain_from_json(doc: dict[str, Any]) -> ChainFacts:
    return ChainFacts(
        str(doc["label"]),
        _cert_from_json(doc["leaf"]),
        str(doc["key_type"]),
        tuple(_cert_from_json(c) for c in doc["cas"]),
        issuer_name=doc.get("issuer"),
    )
