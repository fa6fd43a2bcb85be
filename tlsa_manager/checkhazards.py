"""What ``check``'s lookups and handshakes imply (pure): a host's DANE state, and the
hazards only a live check can see (bogus or insecure lookups, signatures about to
lapse, CNAMEs, STARTTLS missing, the same key on every MX), plus the planner's lint
run on the chains the servers sent.  The lookups, chains and time are given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import dns.rdatatype
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import Chain, key_type
from tlsa_manager.checkresult import Dane, DaneState, HostCheck
from tlsa_manager.facts import ChainFacts
from tlsa_manager.freshness import facts_with_issuer, stale_catalog
from tlsa_manager.hazards import (
    CNAME_MX,
    CNAME_OWNER,
    LOOKUP_FAILS,
    MX_INSECURE,
    NO_STARTTLS,
    SHARED_KEY,
    TA_NAME_OR_DATES,
    TLSA_INSECURE,
    WRONG_OWNER,
    Hazard,
    Severity,
)
from tlsa_manager.lint import lint
from tlsa_manager.policy import issuers_from_catalog
from tlsa_manager.records import Tlsa
from tlsa_manager.resolve import Lookup
from tlsa_manager.tlsprobe import Presented

#: why a signed answer came back without the AD bit
UNVALIDATED = "not validated (no AD bit): the resolver does not validate, or the zone has no DS at its parent"
UNVALIDATED_FIX = "check with a validating resolver (--resolver ADDR), or publish the zone's DS at its parent"


def bogus(where: str, what: str) -> Hazard:
    """H7: a lookup senders need fails validation."""
    return LOOKUP_FAILS.hazard(
        f"{what} lookup for {where} is bogus (DNSSEC fails): mail is deferred",
        "fix the signatures / DS of the zone",
        where,
    )


def address_state(host: str, lookups: Sequence[Lookup], addresses: Sequence[str]) -> DaneState | None:
    """The state when the host's addresses already decide it (bogus, or none at all)."""
    if any(lk.status == "bogus" for lk in lookups):
        return DaneState(Dane.BOGUS, "address lookup bogus: mail deferred", (bogus(host, "A/AAAA"),))
    if not addresses:
        return DaneState(Dane.ERROR, "no address: " + ", ".join(lk.error or lk.status for lk in lookups))
    return None


def dane_state(
    host: str,
    owner: str,
    records: Sequence[Tlsa],
    tlsa: Lookup | None,
    secure_addresses: bool,
    unknown: int = 0,
    signed_addresses: bool = False,
) -> DaneState:
    """Whether senders apply DANE to the host, given its TLSA lookup (None: records given).
    ``unknown`` records (a usage, selector or matching type no sender knows) are unusable
    but still make the RRset non-empty: TLS is then required (RFC 7672 §2.2)."""
    if tlsa is not None and tlsa.status == "bogus":
        return DaneState(Dane.BOGUS, "TLSA lookup bogus: mail deferred", (bogus(host, "TLSA"),))
    if tlsa is not None and tlsa.status == "error":
        return DaneState(Dane.ERROR, f"TLSA lookup failed: {tlsa.error}")
    if not secure_addresses:
        insecure = MX_INSECURE.hazard(
            f"A/AAAA of {host} insecure: senders skip TLSA",
            UNVALIDATED_FIX if signed_addresses else "sign the zone that holds the MX host",
            host,
        )
        why = f"signed but {UNVALIDATED}" if signed_addresses else "not DNSSEC-signed"
        return DaneState(Dane.NOT_IN_FORCE, f"the host's addresses are {why}", (insecure,))
    if (records or unknown) and tlsa is not None and not tlsa.secure:
        inert = TLSA_INSECURE.hazard(
            f"TLSA at {owner} is insecure: DANE is inert",
            UNVALIDATED_FIX if tlsa.signed else "sign the zone (and the delegation)",
            host,
        )
        why = f"signed but {UNVALIDATED}" if tlsa.signed else "not DNSSEC-signed"
        return DaneState(Dane.NOT_IN_FORCE, f"the TLSA RRset is {why}", (inert,))
    if not records and not unknown:
        return DaneState(Dane.NOT_IN_FORCE, f"no TLSA record at {owner}")
    ignored = f" and {unknown} unusable (unknown usage, selector or matching type)" if unknown else ""
    return DaneState(Dane.IN_FORCE, f"{len(records)} TLSA record(s){ignored} at {owner}")


def cname_mx(host: str, expanded: object) -> Hazard:
    return CNAME_MX.hazard(f"{host} is a CNAME to {expanded}", "point the MX at the real host name", host)


def cname_owner(host: str, owner: str) -> Hazard:
    return CNAME_OWNER.hazard(
        f"the TLSA owner {owner} is a CNAME", "publish the TLSA RRset at the owner itself", host
    )


def insecure_mx(target: str, signed: bool = False) -> Hazard:
    why = f"signed but {UNVALIDATED}" if signed else "not DNSSEC-signed"
    return MX_INSECURE.hazard(
        f"the MX RRset of {target} is {why}: senders do not apply DANE",
        UNVALIDATED_FIX if signed else "sign the zone",
        target,
    )


def stray_owner(target: str, owner: str) -> Hazard:
    """H15: TLSA at the domain's own name when mail goes to other MX hosts."""
    return WRONG_OWNER.hazard(
        f"TLSA records at {owner} are never used: senders look them up at each MX host's name",
        "publish them at _25._tcp.<mx-host> and remove these",
        target,
    )


def shared_key(checks: Sequence[HostCheck], target: str) -> list[Hazard]:
    """H21 when more than one MX host and every one of them presents the same key."""
    keys = {e.spki for c in checks for e in c.endpoints if e.spki}
    if len(checks) > 1 and len(keys) == 1:
        return [
            SHARED_KEY.hazard(
                "every MX host uses the same key",
                "give each MX host its own key so one mistake cannot stop all",
                target,
            )
        ]
    return []


def expiry(host: str, lookup: Lookup, now: dt.datetime, margin: dt.timedelta) -> list[Hazard]:
    """H7 ahead of time: signatures that lapse within the margin mean the signer has stalled."""
    if not lookup.secure or lookup.expires is None:
        return []
    expires = dt.datetime.fromtimestamp(lookup.expires, dt.UTC)
    left = expires - now
    if left > margin:
        return []
    what = dns.rdatatype.to_text(lookup.rdtype)
    return [
        LOOKUP_FAILS.hazard(
            f"the signatures over {what} at {(lookup.final or lookup.name).to_text(omit_final_dot=True)} "
            f"expire {expires:%Y-%m-%d %H:%MZ} (in {_hours(left)}): when they lapse the lookup is bogus "
            "and mail is deferred",
            "check that the zone is being re-signed (signer running, keys readable)",
            host,
            Severity.RISK,
        )
    ]


def _hours(left: dt.timedelta) -> str:
    hours = max(0, int(left.total_seconds() // 3600))
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def endpoint_hazards(
    host: str,
    check: HostCheck,
    presented: Mapping[tuple[str, str], Presented],
    catalog: Catalog,
    upgrade: str,
) -> list[Hazard]:
    """H20 per endpoint without TLS; with DANE in force, the lint of the RRset against the
    chains sent (and H26 for a stale catalog), and H10 for DANE-TA name or date failures."""
    out = [
        NO_STARTTLS.hazard(
            f"{e.address} does not offer {upgrade} while TLSA is "
            "published: DANE clients refuse to connect (senders defer mail)",
            f"enable {upgrade} for every client",
            host,
        )
        for e in check.endpoints
        if e.verdict == "no-starttls"
    ]
    if check.dane is not Dane.IN_FORCE or not check.tlsa:
        return out
    unique = list(_sent_chains(host, presented, catalog).values())
    out += stale_catalog(unique, host)
    out += lint(
        frozenset(check.tlsa),
        unique,
        issuers=issuers_from_catalog(catalog),
        catalog_roots=issuers_from_catalog(catalog, roots=True),
        owner=check.tlsa_owner,
    )
    out += [
        TA_NAME_OR_DATES.hazard(
            f"{e.address} {e.algorithm}: {e.detail}",
            "the certificate must name the MX host and be within its dates",
            host,
        )
        for e in check.endpoints
        if e.verdict == "fail" and "DANE-TA" not in e.detail and "matches, but" in e.detail
    ]
    return list(dict.fromkeys(out))


def _sent_chains(
    host: str, presented: Mapping[tuple[str, str], Presented], catalog: Catalog
) -> dict[bytes, ChainFacts]:
    """The chains the servers sent, once per leaf key, with the catalog's name of their issuer."""
    chains = []
    for shown in presented.values():
        # a certificate whose key this library cannot read (SM2, ...) has no records to lint
        sent = [c for c in shown.chain if _readable(c)]
        if sent and sent[0] is shown.chain[0]:
            leaf = sent[0]
            chain = Chain(leaf, leaf.public_key(), tuple(sent[1:]))
            chains.append(facts_with_issuer(chain, f"{key_type(leaf.public_key())} chain of {host}", catalog))
    return {c.leaf.spki_der: c for c in chains}


def _readable(cert: x509.Certificate) -> bool:
    try:
        cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True
