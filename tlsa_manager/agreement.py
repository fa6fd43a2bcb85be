"""Do the zone's authoritative servers agree on a TLSA RRset, and would each version
they serve still let a sender in?  (dane-rules.md H18, and H7 for lame servers)

A resolver asks any one of a zone's servers, so a sender sees whatever RRset that server
holds.  A secondary that missed an update (a lost NOTIFY, a refused IXFR) hands out the
old RRset until its next refresh, or for good; a check through one resolver sees only
one of the versions.  So every server is read directly, and every version served is
matched against every chain the live server presented: a version that fails is mail
deferred for the senders whose resolver happens to ask that server.

Pure: the per-server views, the chains and the time are given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from tlsa_manager.danecheck import verify
from tlsa_manager.hazards import LOOKUP_FAILS, SERVERS_DISAGREE, Hazard, Severity
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

TRANSFER_FIX = (
    "fix zone transfers to the lagging server (NOTIFY, IXFR, allow-transfer, TSIG) or force a retransfer"
)


def server_hazards(
    host: str,
    owner: str,
    views: Sequence[ServerView],
    chains: Sequence[tuple[str, Sequence[x509.Certificate]]],
    reference: Sequence[str],
    now: dt.datetime,
) -> list[Hazard]:
    """H7 for each server without a usable answer, H18 when the answered versions differ:
    FATAL if some served version fails a live chain, RISK otherwise (the next change is
    what breaks)."""
    out = [
        LOOKUP_FAILS.hazard(
            f"authoritative server {v.server} gives no usable answer for {owner} ({v.error}): resolvers "
            "that ask it retry elsewhere or fail",
            "repair the server or take it out of the NS set",
            host,
            Severity.RISK,
        )
        for v in views
        if v.records is None
    ]
    answered = [v for v in views if v.records is not None]
    versions: dict[frozenset[Tlsa], list[str]] = {}
    for v in answered:
        versions.setdefault(frozenset(v.records or ()), []).append(v.server)
    if len(versions) <= 1:
        return out
    spread = "; ".join(
        f"{', '.join(servers)} serve{'s' if len(servers) == 1 else ''} {len(records)} record(s)"
        for records, servers in versions.items()
    )
    failing = [
        f"{v.server} fails the {label} chain"
        for v in answered
        for label, chain in chains
        if not verify(list(chain), list(v.records or ()), reference, now).ok
    ]
    if failing:
        out.append(
            SERVERS_DISAGREE.hazard(
                f"authoritative servers disagree on {owner} ({spread}) and {'; '.join(failing)}: "
                "senders whose resolver asks that server defer mail",
                TRANSFER_FIX,
                host,
                Severity.FATAL,
            )
        )
    else:
        out.append(
            SERVERS_DISAGREE.hazard(
                f"authoritative servers disagree on {owner} ({spread}); every version still matches the live "
                "server, but the next key or issuer change would not wait for the lagging one",
                TRANSFER_FIX,
                host,
            )
        )
    return out
