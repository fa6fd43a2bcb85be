"""One host's planner input: its chains, what was read and observed, and its ledger.

The observation of each owner goes into its history here (with ``record``), and
what the history cannot vouch for (a lost ledger, a clock step) is passed on as
``history_unknown``, so that the pure planner gets everything as values.
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.name

from tlsa_manager.journal import mismatch_hazards
from tlsa_manager.planner import OwnerInput, Plan, PlanInput, name_text, plan
from tlsa_manager.policy import desired
from tlsa_manager.ports import HostChains, HostSettings, Views
from tlsa_manager.provider import RRset
from tlsa_manager.state import LedgerData


def plan_host(
    settings: HostSettings,
    chains: HostChains,
    now: float,
    published: Mapping[dns.name.Name, RRset],
    views: Views,
    ledger: LedgerData,
    record: bool,
) -> Plan:
    """Plan one host at ``now``; with ``record`` its owners' histories take the views."""
    host = ledger.host(settings.host)
    owners = []
    for owner in settings.owners:
        rec = host.owner(name_text(owner))
        seen = views.get(owner, ())
        history = rec.history.observe(now, seen, settings.slack)
        if record:
            rec.history = history
        rrset = published.get(owner)
        if rrset is None:
            rrset = RRset(owner)
        # After a lost history nobody can vouch for the provider's marks: only what this
        # ledger added may go, until a probe shows what the MTA presents.
        marks = frozenset() if host.unverified else rrset.managed
        owners.append(OwnerInput(owner, rrset, seen, history, rec.managed | marks))
    unknown = host.unverified and any(o.history.blind for o in owners)
    want = desired(
        chains.live,
        chains.staged,
        chains.next_keys,
        settings.issuers,
        settings.policy,
        owner=settings.host,
    )
    return plan(
        PlanInput(
            host=settings.host,
            owners=tuple(owners),
            desired=want,
            now=now,
            live=chains.live,
            staged=chains.staged,
            next_keys=chains.next_keys,
            issuers=settings.issuers,
            roots=settings.roots,
            policy=settings.policy,
            negative_ttl=settings.negative_ttl,
            default_ttl=settings.default_ttl,
            slack=settings.slack,
            ttl_ceiling=settings.ttl_ceiling,
            history_unknown=unknown,
            propagation_delay=settings.propagation_delay,
            notices=mismatch_hazards(ledger, settings.host),
        )
    )
