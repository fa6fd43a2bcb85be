"""Which TLSA records a chain yields, and for which of its certificates (pure).

End-entity usages (3, 1) pin the leaf, or the bare key when no certificate exists
yet; trust-anchor usages (2, 0) pin each CA certificate that came with the leaf,
except self-signed roots, which Let's Encrypt chains do not send (dane-rules D7).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from tlsa_manager.certs import Chain, describe_key, is_self_signed, subject_text
from tlsa_manager.errors import UsageError
from tlsa_manager.records import MatchingType, Params, Selector, Tlsa, Usage, compute

DEFAULT_KINDS: tuple[Params, ...] = (
    (Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256),
    (Usage.DANE_TA, Selector.SPKI, MatchingType.SHA2_256),
)


@dataclass(frozen=True)
class DerivedRecord:
    """A computed record and what it pins: ``leaf``, ``key`` (no certificate) or ``ca``."""

    record: Tlsa
    role: str
    subject: str
    key: str
    certificate: x509.Certificate | None


def is_end_entity_usage(usage: Usage) -> bool:
    return usage in (Usage.DANE_EE, Usage.PKIX_EE)


def derive(
    chain: Chain, kinds: tuple[Params, ...] = DEFAULT_KINDS, *, strict: bool = False
) -> list[DerivedRecord]:
    """The records of ``kinds`` for this chain, leaf first, in file order.

    With ``strict`` a kind that has nothing to pin is an error (the user asked for it
    explicitly); by default it is skipped (the default kinds on a bare key yield only
    "3 1 1").
    """
    out: list[DerivedRecord] = []
    for usage, selector, mtype in kinds:
        if is_end_entity_usage(usage):
            if chain.key is None:
                if strict:
                    raise UsageError(
                        f"{chain.source}: holds only CA certificates, so there is no "
                        f"end-entity to pin with usage {int(usage)}",
                        "give the server's certificate or key, or use usage 2",
                    )
                continue
            role = "leaf" if chain.leaf is not None else "key"
            subject = subject_text(chain.leaf) if chain.leaf is not None else "(key)"
            out.append(
                DerivedRecord(
                    compute(usage, selector, mtype, cert=chain.leaf, key=chain.key),
                    role,
                    subject,
                    describe_key(chain.key),
                    chain.leaf,
                )
            )
            continue
        cas = [c for c in chain.cas if not is_self_signed(c)]
        if not cas and strict:
            raise UsageError(
                f"{chain.source}: holds no CA certificate to pin with usage {int(usage)}",
                "give the chain file (fullchain.pem), not the certificate alone",
            )
        for ca in cas:
            out.append(
                DerivedRecord(
                    compute(usage, selector, mtype, cert=ca),
                    "ca",
                    subject_text(ca),
                    describe_key(ca.public_key()),
                    ca,
                )
            )
    return out
