"""The planner: what to add, what to remove, when a staged chain may go live (pure).

No network, no clock, no files: the published RRsets, what every authoritative
server serves, the observation history and ``now`` all come in as arguments, and
an immutable, JSON-serialisable :class:`Plan` comes out.  ``plan`` is this module
stopping early; ``sync`` applies the plan.  Rules: dane-rules.md §C, §F, §H.

- Additions are applied at once: pre-publishing is always safe (C2).
- A removal is planned only for a record that matches no live, staged or next
  chain or key, never leaves the RRset empty (E6), and only for records this tool
  published, unless the host says ``prune = true``.
- A staged chain may go live at ``t_sync + 2 x max(TTL_pos, TTL_neg) + slack`` (F6);
  an unknown ``t_sync`` keeps the gate closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tlsa_manager.facts import ChainFacts
from tlsa_manager.freshness import stale_catalog
from tlsa_manager.gates import GateTime, foreign_kinds, gate_time
from tlsa_manager.hazards import (
    EMPTY_RRSET,
    KIND_OFF_LIVE,
    LOOKUP_FAILS,
    SERVERS_DISAGREE,
    STAGED_MISMATCH,
    TOO_MANY_RECORDS,
    TTL_INCONSISTENT,
    Hazard,
    Severity,
)
from tlsa_manager.lint import lint
from tlsa_manager.ownerhazards import owner_name_hazards
from tlsa_manager.plans import (
    DEFAULT_SLACK,
    DEFAULT_TTL_CEILING,
    Gate,
    OwnerInput,
    Plan,
    PlanInput,
    chain_identity,
    iso,
    name_text,
    short_time,
)
from tlsa_manager.policy import ROLES, DesiredRecord, group_by_kind
from tlsa_manager.provider import OwnerChange
from tlsa_manager.records import Params, Tlsa, params_text

#: the values live in tlsa_manager.plans and the gate time in tlsa_manager.gates;
#: these names stay importable from here
__all__ = [
    "DEFAULT_SLACK",
    "DEFAULT_TTL_CEILING",
    "Gate",
    "GateTime",
    "OwnerInput",
    "Plan",
    "PlanInput",
    "chain_identity",
    "gate_for",
    "gate_time",
    "iso",
    "name_text",
    "plan",
    "short_time",
]


def _protected(
    records: frozenset[Tlsa], chains: Sequence[ChainFacts], kinds: set[Params] | None = None
) -> frozenset[Tlsa]:
    """Records that match some chain or key an endpoint serves or may serve soon (I-3).
    ``kinds``: those of ``records``, when the caller has them."""
    # a chain's records of one kind are all of that kind: ask each chain once per kind
    if kinds is None:
        kinds = {r.params for r in records}
    return records & frozenset().union(*(c.matching(k) for c in chains for k in kinds))


def plan_owner(inp: PlanInput, owner: OwnerInput) -> tuple[OwnerChange | None, list[Hazard], list[str]]:
    """Additions and safe removals for one owner; hazards; unmanaged records kept."""
    published = owner.published.records
    wanted = inp.desired.as_set()
    name = name_text(owner.owner)
    hazards: list[Hazard] = []
    add = wanted - published
    chains = (*inp.live, *inp.staged, *inp.next_keys)
    published_kinds = {r.params for r in published}
    protected = _protected(published, chains, published_kinds)
    kinds = set(inp.desired.kinds)
    dropped_kinds = published_kinds - kinds
    candidates = set(published - wanted - protected)
    # A kind the configuration no longer wants goes as a whole, provided what stays
    # still covers every live chain (C5: one change at a time, nothing left empty).
    if dropped_kinds:
        gone = {r for r in published if r.params in dropped_kinds}
        remaining = (published | add) - gone
        if remaining and all(c.covered_by(remaining) for c in inp.live):
            candidates |= gone
    prune = inp.policy.prune and not inp.history_unknown
    managed = owner.managed | (owner.published.records if prune else frozenset())
    unmanaged = sorted(r.to_text() for r in candidates - managed)
    delete = frozenset(candidates & managed)
    result = (published - delete) | add
    if published and not result:
        hazards.append(
            EMPTY_RRSET.hazard(
                "the planned change would leave no TLSA record; keeping them all",
                "check the configuration: the host has no live key?",
                name,
            )
        )
        delete = frozenset()
    kind = "after this change a record kind would not" if add or delete else "a record kind served does not"
    for chain in inp.live:
        if result and not chain.covered_by(result):
            hazards.append(
                KIND_OFF_LIVE.hazard(
                    f"{kind} match the live chain {chain.label}",
                    "keep the live chain's records; check the configured record kinds",
                    name,
                )
            )
            delete = frozenset()
    evictable = frozenset() if inp.history_unknown else (published - delete) & managed
    add, evict, over = _within_budget(inp, published - delete, add, evictable, name)
    delete |= evict
    hazards += over
    current_ttl = owner.published.ttl if published else None
    if not add and not delete:
        if current_ttl is not None and current_ttl != inp.default_ttl:
            # A TTL change is a step of its own (I-12); the old TTL keeps counting in
            # every wait until the history forgets it (F3).
            change = OwnerChange(
                owner.owner, published, frozenset(), frozenset(), inp.default_ttl, current_ttl
            )
            return change, hazards, unmanaged
        return None, hazards, unmanaged
    # Records join the RRset at its existing TTL (E4); a TTL change waits for its own run.
    ttl = current_ttl if current_ttl is not None else inp.default_ttl
    return (
        OwnerChange(owner.owner, published, frozenset(add), delete, ttl, current_ttl),
        hazards,
        unmanaged,
    )


def _within_budget(
    inp: PlanInput, kept: frozenset[Tlsa], add: frozenset[Tlsa], evictable: frozenset[Tlsa], owner: str
) -> tuple[frozenset[Tlsa], frozenset[Tlsa], list[Hazard]]:
    """Additions, and removals of our own records, that keep the RRset within the budget (D9).

    The records that stay (still presented, staged, next, unmanaged) take room first;
    then additions in priority order: live, staged, next, active issuers, backup issuers.
    When the live chains' own records do not fit beside what stays (someone else added
    a record, or the MTA presents a chain of its own), records of ours that match no
    live chain go, lowest priority first: a staged or next chain whose records go
    simply waits (its gate closes until they are back and old enough), while a record
    over the budget may make a sender fail now.  Only the live chains' own records
    stay beyond the budget, and that is reported as a fatal H13.
    """
    budget = inp.policy.budget
    if len(kept | add) <= budget:
        return add, frozenset(), []
    by_record = {d.record: d for d in inp.desired.records}

    def rank(record: Tlsa) -> tuple[int, str]:
        known = by_record.get(record)
        return (known.priority if known else 99, record.to_text())

    ordered = sorted(add, key=rank)
    chosen: list[Tlsa] = [r for r in ordered if r in by_record and by_record[r].role == "live"]
    live_protected = _protected(kept, inp.live)
    # lowest priority first; records no role wants any more (kept only for a staged or
    # next chain) before any that a role still wants
    victims = sorted(evictable - live_protected, key=rank, reverse=True)
    evicted: list[Tlsa] = []
    while victims and len(kept) - len(evicted) + len(chosen) > budget:
        evicted.append(victims.pop(0))
    room = budget - (len(kept) - len(evicted))
    for record in ordered:
        if record not in chosen and len(chosen) < room:
            chosen.append(record)
    left = [r for r in ordered if r not in chosen]
    size = len(kept) - len(evicted) + len(chosen)
    hazards = []
    if left or evicted:
        what = []
        if left:
            what.append(f"{len(left)} wanted addition(s) are left out ({_roles(left, by_record)})")
        if evicted:
            gone = _roles(evicted, by_record)
            what.append(f"{len(evicted)} record(s) of ours no live chain needs are removed ({gone})")
        hazards.append(
            TOO_MANY_RECORDS.hazard(
                f"budget {budget}: {len(kept) - len(evicted)} records stay, so {' and '.join(what)}; "
                "their chains cannot go live until there is room",
                "let the old records go (finish the rollover), remove records that are not tlsa-manager's, "
                "or raise budget if your senders handle more",
                owner,
            )
        )
    if size > budget:
        hazards.append(
            TOO_MANY_RECORDS.hazard(
                f"the live chain's records need {size} records at one name, more than the budget {budget}",
                "remove records that are not tlsa-manager's, or raise budget",
                owner,
                Severity.FATAL,
            )
        )
    return frozenset(chosen), frozenset(evicted), hazards


def _roles(records: Sequence[Tlsa], by_record: Mapping[Tlsa, DesiredRecord]) -> str:
    """The roles of ``records`` in priority order, for a message (``other`` for none)."""
    roles = sorted({by_record[r].role for r in records if r in by_record}, key=ROLES.index)
    return ", ".join(roles) or "other"


def gate_for(inp: PlanInput, chain: ChainFacts) -> Gate:
    """F6 for one staged chain over every owner name of the host."""
    gate = _gate(inp, chain)
    return replace(gate, identity=chain_identity(chain))


def _gate(inp: PlanInput, chain: ChainFacts) -> Gate:
    if chain.problem:
        return Gate(chain.label, None, None, 0, False, f"cannot go live: {chain.problem}")
    wanted = inp.desired.as_set()
    missing_kinds = [params_text(k) for k in inp.desired.kinds if not chain.matching(k) & wanted]
    if missing_kinds:
        return Gate(
            chain.label,
            None,
            None,
            0,
            False,
            f"no {', '.join(missing_kinds)} record for it fits the budget",
        )
    blocking = foreign_kinds(inp.owners, inp.desired.kinds, chain)
    if blocking:
        return Gate(chain.label, None, None, 0, False, blocking, blocking)
    times = [gate_time(owner, chain, inp, adds_nothing=_as_live(inp, chain, owner)) for owner in inp.owners]
    pending = next((t for t in times if t.opens_at is None), None)
    if pending is not None or not times:
        why = pending.term if pending is not None else "no owner name to publish at"
        return Gate(chain.label, None, None, 0, False, why, why)
    latest = max(times, key=lambda t: t.opens_at or 0.0)
    assert latest.opens_at is not None and latest.t_sync is not None
    ready = latest.opens_at <= inp.now
    since = f"served by every server since {short_time(latest.t_sync)}; waits {latest.term}"
    reason = f"gate passed at {short_time(latest.opens_at)} ({since})" if ready else since
    return Gate(
        chain.label,
        latest.opens_at,
        latest.t_sync,
        max(t.wait for t in times),
        ready,
        reason,
        latest.term,
    )


def _as_live(inp: PlanInput, chain: ChainFacts, owner: OwnerInput) -> bool:
    """True when every published record matching ``chain`` matches a live chain too: it
    adds nothing a sender must have fetched (same key, same issuer), so no wait is needed."""
    published = owner.published.records
    for kind in inp.desired.kinds:
        mine = chain.matching(kind) & published
        if not mine or not mine <= frozenset().union(*(c.matching(kind) for c in inp.live)):
            return False
    return True


def server_hazards(inp: PlanInput, owner: OwnerInput) -> list[Hazard]:
    """H18 (servers disagree), H7 (a server cannot be read) and H23 (TTL differs or changed)."""
    out: list[Hazard] = []
    name = name_text(owner.owner)
    answered = [v for v in owner.views if v.records is not None]
    silent = [v for v in owner.views if v.records is None]
    if silent:
        out.append(
            LOOKUP_FAILS.hazard(
                "cannot read "
                + ", ".join(f"{v.server} ({v.error or 'no answer'})" for v in silent)
                + "; deploy gates stay closed",
                "fix or remove that server from the nameserver list",
                name,
                Severity.RISK,
            )
        )
    contents = {v.records for v in answered}
    if len(contents) > 1:
        lagging = [v.server for v in answered if v.records != owner.published.records]
        severity = Severity.RISK
        for chain in inp.live:
            if any(v.records and not chain.covered_by(v.records) for v in answered):
                severity = Severity.FATAL
        out.append(
            SERVERS_DISAGREE.hazard(
                "authoritative servers disagree" + (f" (lagging: {', '.join(lagging)})" if lagging else ""),
                "check zone transfers (NOTIFY/IXFR) to the lagging servers",
                name,
                severity,
            )
        )
    ttls = {v.ttl for v in answered if v.ttl is not None}
    history_ttls = {v.ttl for e in owner.history.entries for v in e.views if v.ttl is not None}
    if len(ttls) > 1 or len(history_ttls) > 1:
        out.append(
            TTL_INCONSISTENT.hazard(
                f"TTL differs between servers or changed recently ({sorted(ttls | history_ttls)}); "
                f"waits use the largest, {max(ttls | history_ttls)} s",
                "keep one TTL and change it as a step of its own",
                name,
            )
        )
    return out


def host_hazards(inp: PlanInput) -> list[Hazard]:
    out = [h for owner in inp.owners for h in owner_name_hazards(owner.owner)]
    out += stale_catalog([*inp.live, *inp.staged], inp.host)
    for chain in inp.staged:
        if chain.problem:
            out.append(
                STAGED_MISMATCH.hazard(
                    f"staged chain {chain.label}: {chain.problem}",
                    "stage a certificate that matches its key and verifies",
                    "",
                )
            )
    return out


def plan(inp: PlanInput) -> Plan:
    """Plan one host across all its owner names."""
    changes: list[OwnerChange] = []
    hazards: list[Hazard] = list(inp.desired.hazards) + list(inp.notices) + host_hazards(inp)
    unmanaged: list[tuple[str, str]] = []
    for owner in inp.owners:
        change, owner_hazards, kept = plan_owner(inp, owner)
        if change is not None:
            changes.append(change)
        hazards += owner_hazards
        hazards += server_hazards(inp, owner)
        name = name_text(owner.owner)
        records = owner.published.records
        if records:  # an empty RRset has no hazards of its own (lint answers [] for it)
            live, staged, next_keys, budget = inp.live, inp.staged, inp.next_keys, inp.policy.budget
            hazards += lint(records, live, staged, next_keys, inp.issuers, inp.roots, budget, name)
        unmanaged += [(name, text) for text in kept]
    gates = tuple(gate_for(inp, chain) for chain in inp.staged)
    unique = tuple(dict.fromkeys(hazards))
    return Plan(inp.host, inp.now, tuple(changes), gates, unique, tuple(unmanaged), inp.desired.reasons())


def group_kinds_text(records: frozenset[Tlsa]) -> list[str]:
    return [params_text(k) for k in sorted(group_by_kind(records))]
