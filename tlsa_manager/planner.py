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

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import dns.name

from tlsa_manager.facts import ChainFacts
from tlsa_manager.freshness import stale_catalog
from tlsa_manager.hazards import (
    EMPTY_RRSET,
    KIND_OFF_LIVE,
    LOOKUP_FAILS,
    SERVERS_DISAGREE,
    STAGED_MISMATCH,
    TOO_MANY_RECORDS,
    TTL_INCONSISTENT,
    WRONG_OWNER,
    Hazard,
    Severity,
)
from tlsa_manager.lint import lint
from tlsa_manager.observations import History, ServerView
from tlsa_manager.policy import ROLES, DesiredSet, HostPolicy, IssuerFacts, group_by_kind
from tlsa_manager.provider import OwnerChange, RRset
from tlsa_manager.records import Tlsa, params_text

DEFAULT_SLACK = 300.0
#: The largest TTL assumed for anything served before the history began (a lost
#: ledger, a clock step): what common resolvers cap cached TTLs at (Unbound's
#: cache-max-ttl; configurable per host as ``ttl_ceiling``).
DEFAULT_TTL_CEILING = 86400


@dataclass(frozen=True)
class OwnerInput:
    """Everything known about one owner name (``_25._tcp.host.``) right now."""

    owner: dns.name.Name
    published: RRset
    views: tuple[ServerView, ...]
    history: History
    managed: frozenset[Tlsa] = frozenset()


@dataclass(frozen=True)
class PlanInput:
    host: str
    owners: tuple[OwnerInput, ...]
    desired: DesiredSet
    now: float
    live: tuple[ChainFacts, ...] = ()
    staged: tuple[ChainFacts, ...] = ()
    next_keys: tuple[ChainFacts, ...] = ()
    issuers: tuple[IssuerFacts, ...] = ()
    roots: tuple[IssuerFacts, ...] = ()
    policy: HostPolicy = field(default_factory=HostPolicy)
    negative_ttl: int = 0
    default_ttl: int = 3600
    slack: float = DEFAULT_SLACK
    ttl_ceiling: int = DEFAULT_TTL_CEILING
    #: the ledger's history of this host was lost or the clock stepped, and no probe
    #: showed what the MTA presents: no record is removed this run
    history_unknown: bool = False
    #: when no authoritative server can be asked: the time the operator vouches that
    #: every server takes at most to serve a change (None: new keys and issuers wait)
    propagation_delay: float | None = None
    #: hazards found outside the planner's inputs (e.g. H27, the MTA presents another chain)
    notices: tuple[Hazard, ...] = ()


@dataclass(frozen=True)
class Gate:
    """When a staged chain may go live, and why not yet."""

    chain: str
    opens_at: float | None
    t_sync: float | None
    wait: float
    ready: bool
    reason: str
    #: the term that sets the wait (``2 x negative TTL 60 s ...``), or why there is no time yet
    term: str = ""
    #: the exact chain (leaf, certificate, CAs) this gate was computed for: a deploy
    #: goes ahead only with a staged file that still holds exactly this chain
    identity: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "opens_at": iso(self.opens_at),
            "t_sync": iso(self.t_sync),
            "wait_seconds": self.wait,
            "ready": self.ready,
            "reason": self.reason,
            "term": self.term,
        }


@dataclass(frozen=True)
class Plan:
    """The outcome of planning one host: changes, gates, hazards, reasons."""

    host: str
    now: float
    changes: tuple[OwnerChange, ...]
    gates: tuple[Gate, ...]
    hazards: tuple[Hazard, ...]
    unmanaged: tuple[tuple[str, str], ...] = ()
    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def additions(self) -> int:
        return sum(len(c.add) for c in self.changes)

    @property
    def removals(self) -> int:
        return sum(len(c.delete) for c in self.changes)

    @property
    def ttl_changes(self) -> tuple[OwnerChange, ...]:
        return tuple(c for c in self.changes if c.ttl_change)

    @property
    def ready(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.ready)

    def summary(self) -> str:
        """One line: ``add 2, remove 1, deploy YR1 chain not before 2026-11-25 14:05Z``."""
        parts = []
        if self.additions:
            parts.append(f"add {self.additions}")
        if self.removals:
            parts.append(f"remove {self.removals}")
        for change in self.ttl_changes:
            parts.append(f"TTL {change.expected_ttl} -> {change.ttl}")
        for gate in self.gates:
            if gate.ready:
                parts.append(f"deploy {gate.chain} now")
            elif gate.opens_at is not None:
                parts.append(f"deploy {gate.chain} not before {short_time(gate.opens_at)}")
            else:
                parts.append(f"deploy {gate.chain}: waiting ({gate.reason})")
        fatal = sum(1 for h in self.hazards if h.severity is Severity.FATAL)
        if fatal:
            parts.append(f"{fatal} fatal hazard{'s' if fatal > 1 else ''}")
        return f"{self.host}: " + (", ".join(parts) if parts else "nothing to do")

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "now": iso(self.now),
            "summary": self.summary(),
            "changes": [
                {
                    "owner": c.owner.to_text(),
                    "ttl": c.ttl,
                    "expected_ttl": c.expected_ttl,
                    "expected": sorted(r.to_text() for r in c.expected),
                    "add": sorted(r.to_text() for r in c.add),
                    "delete": sorted(r.to_text() for r in c.delete),
                }
                for c in self.changes
            ],
            "gates": [g.as_dict() for g in self.gates],
            "hazards": [h.as_dict() for h in self.hazards],
            "unmanaged": [{"owner": o, "record": r} for o, r in self.unmanaged],
            "reasons": dict(self.reasons),
            "checksum": self.checksum(),
        }

    def checksum(self) -> str:
        """Pins the changes: a plan reviewed by a human can be applied only unchanged."""
        body = [
            (
                c.owner.to_text(),
                sorted(map(str, c.expected)),
                sorted(map(str, c.add)),
                sorted(map(str, c.delete)),
                c.ttl,
            )
            for c in self.changes
        ]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_time(ts: float) -> str:
    """To the second: a gate 50 s away must not print as "now" or as the minute before."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@functools.lru_cache(maxsize=1024)
def name_text(name: dns.name.Name) -> str:
    """``name.to_text()``, remembered: the planner asks it for every owner of every plan."""
    return str(name.to_text())


def chain_identity(chain: ChainFacts) -> str:
    """A digest of everything a sender can match in ``chain``: leaf key, leaf certificate, CAs.

    Two files with the same name but different contents (a second renewal staged
    between gate and deploy) have different identities.
    """
    h = hashlib.sha256()
    for cert in (chain.leaf, *chain.cas):
        for part in (cert.spki_der, cert.cert_der or b""):
            h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


def _protected(records: frozenset[Tlsa], chains: Sequence[ChainFacts]) -> frozenset[Tlsa]:
    """Records that match some chain or key an endpoint serves or may serve soon (I-3)."""
    return frozenset(r for r in records if any(r in c.matching(r.params) for c in chains))


def plan_owner(inp: PlanInput, owner: OwnerInput) -> tuple[OwnerChange | None, list[Hazard], list[str]]:
    """Additions and safe removals for one owner; hazards; unmanaged records kept."""
    published = owner.published.records
    wanted = inp.desired.as_set()
    name = name_text(owner.owner)
    hazards: list[Hazard] = []
    add = wanted - published
    chains = (*inp.live, *inp.staged, *inp.next_keys)
    protected = _protected(published, chains)
    kinds = set(inp.desired.kinds)
    dropped_kinds = {r.params for r in published} - kinds
    candidates = set(published - wanted - protected)
    # A kind the configuration no longer wants goes as a whole, provided what stays
    # still covers every live chain (C5: one change at a time, nothing left empty).
    remaining = (published | add) - {r for r in published if r.params in dropped_kinds}
    if dropped_kinds and remaining and all(c.covered_by(remaining) for c in inp.live):
        candidates |= {r for r in published if r.params in dropped_kinds}
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
    for chain in inp.live:
        if result and not chain.covered_by(result):
            hazards.append(
                KIND_OFF_LIVE.hazard(
                    f"after this change a record kind would not match the live chain {chain.label}",
                    "keep the live chain's records; check the configured record kinds",
                    name,
                )
            )
            delete = frozenset()
    add, over = _within_budget(inp, published - delete, add, name)
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
    inp: PlanInput, kept: frozenset[Tlsa], add: frozenset[Tlsa], owner: str
) -> tuple[frozenset[Tlsa], list[Hazard]]:
    """Additions that keep the RRset within the budget, by the priority of ``ROLES`` (D9).

    The records that stay (still presented, staged, unmanaged) take room first; then
    additions in priority order: live, staged, next, active issuers, backup issuers.
    Only the live chain's own records go in beyond the budget (leaving them out would
    make senders defer mail now), and that is reported as a fatal H13.
    """
    budget = inp.policy.budget
    if len(kept | add) <= budget:
        return add, []
    by_record = {d.record: d for d in inp.desired.records}
    ordered = sorted(add, key=lambda r: (by_record[r].priority, r.to_text()) if r in by_record else (99, ""))
    chosen: list[Tlsa] = [r for r in ordered if r in by_record and by_record[r].role == "live"]
    for record in ordered:
        if record not in chosen and len(kept) + len(chosen) < budget:
            chosen.append(record)
    left = [r for r in ordered if r not in chosen]
    roles = sorted({by_record[r].role for r in left if r in by_record}, key=ROLES.index)
    size = len(kept) + len(chosen)
    hazards = []
    if left:
        hazards.append(
            TOO_MANY_RECORDS.hazard(
                f"budget {budget}: {len(kept)} records stay, so {len(left)} wanted addition(s) are left out "
                f"({', '.join(roles) or 'other'}); their chains cannot go live until there is room",
                "let the old records go (finish the rollover), or raise budget if your senders handle more",
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
    return frozenset(chosen), hazards


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
    times = [
        gate_time(
            owner,
            chain,
            inp.negative_ttl,
            inp.slack,
            ttl_ceiling=inp.ttl_ceiling,
            propagation_delay=inp.propagation_delay,
            adds_nothing=_as_live(inp, chain, owner),
        )
        for owner in inp.owners
    ]
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


@dataclass(frozen=True)
class GateTime:
    """When one owner name lets a chain go live (F6), and the term that sets the wait."""

    t_sync: float | None
    opens_at: float | None
    wait: float
    #: ``2 x negative TTL 60 s (...) + slack 1 s``, or why there is no time yet
    term: str


def gate_time(
    owner: OwnerInput,
    chain: ChainFacts,
    negative_ttl: int,
    slack: float,
    *,
    ttl_ceiling: int = DEFAULT_TTL_CEILING,
    propagation_delay: float | None = None,
    adds_nothing: bool = False,
) -> GateTime:
    """The one gate-time computation behind plan, status, sync and hook (issue 13).

    ``t_sync + 2 x max(TTL_pos, TTL_neg) + slack`` with the term that is largest named:
    the current TTL, an older larger TTL still in caches (with the server and time it
    was seen), the negative TTL (when a server had no TLSA record, with when), or the
    server that does not serve the chain's records yet.
    """
    servers = frozenset(v.server for v in owner.views)
    if not servers:
        return GateTime(None, None, 0, f"no authoritative server known for {owner.owner}")
    t_sync = owner.history.t_sync(chain, servers)
    if t_sync is None:
        lag = owner.history.lagging(chain, servers)
        published = chain.covered_by(owner.published.records) if owner.published.records else False
        why = ("not yet served by " + ", ".join(lag)) if published else "its records are not published yet"
        return GateTime(None, None, 0, why)
    if owner.views and all(v.provider_copy for v in owner.views) and not adds_nothing:
        # No authoritative server could be asked: only the operator's word on propagation.
        if propagation_delay is None:
            return GateTime(
                None,
                None,
                0,
                f"no authoritative server can be asked for {owner.owner}: a new key or issuer goes "
                "live only with nameservers = [...] or an explicit propagation_delay",
            )
        t_sync += propagation_delay
    current = owner.published.ttl or 0
    seen = [(v.ttl, e.last, v.server) for e in owner.history.entries for v in e.views if v.ttl is not None]
    ttl_pos = max(current, owner.history.max_ttl())
    absent = [(e.last, v.server) for e in owner.history.entries for v in e.views if v.records == frozenset()]
    ttl_neg = negative_ttl if absent else 0
    if ttl_neg > ttl_pos:
        when, server = max(absent)
        term = f"2 x negative TTL {ttl_neg} s (no TLSA record on {server} at {short_time(when)})"
    elif ttl_pos > current and seen:
        _ttl, when, server = max(x for x in seen if x[0] == ttl_pos)
        term = f"2 x old TTL {ttl_pos} s (seen on {server} at {short_time(when)})"
    else:
        term = f"2 x TTL {ttl_pos} s"
    wait = 2 * max(ttl_pos, ttl_neg) + slack
    if owner.history.blind and owner.history.since is not None:
        # What was served before the history began is unknown: assume the ceiling.
        blind_until = owner.history.since + 2 * max(ttl_ceiling, ttl_pos) + slack
        if blind_until > t_sync + wait:
            term = (
                f"2 x TTL ceiling {ttl_ceiling} s from {short_time(owner.history.since)} "
                "(the history began then: a lost ledger or a clock step)"
            )
            wait = blind_until - t_sync
    return GateTime(t_sync, t_sync + wait, wait, f"{term} + slack {slack:g} s")


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
    out = []
    for owner in inp.owners:
        labels = owner.owner.labels
        if labels and labels[0] != b"_25":
            out.append(
                WRONG_OWNER.hazard(
                    f"{owner.owner} is not the port-25 owner that SMTP senders look up",
                    "publish at _25._tcp.<mx-host> for MTA-to-MTA mail",
                    name_text(owner.owner),
                )
            )
        host_labels = [lab.decode().lower() for lab in labels[2:-1]]
        for size in range(1, len(host_labels) // 2 + 1):
            if host_labels[-size:] == host_labels[-2 * size : -size] and size >= 2:
                out.append(
                    WRONG_OWNER.hazard(
                        f"{owner.owner} repeats its zone suffix (a missing trailing dot?)",
                        "write the host name fully qualified",
                        name_text(owner.owner),
                        Severity.FATAL,
                    )
                )
                break
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
        hazards += lint(
            owner.published.records,
            inp.live,
            inp.staged,
            inp.next_keys,
            inp.issuers,
            inp.roots,
            inp.policy.budget,
            name_text(owner.owner),
        )
        unmanaged += [(name_text(owner.owner), text) for text in kept]
    gates = tuple(gate_for(inp, chain) for chain in inp.staged)
    reasons = tuple(sorted((d.record.to_text(), f"{d.role}: {d.reason}") for d in inp.desired.records))
    unique = tuple(dict.fromkeys(hazards))
    return Plan(inp.host, inp.now, tuple(changes), gates, unique, tuple(unmanaged), reasons)


def group_kinds_text(records: frozenset[Tlsa]) -> list[str]:
    return [params_text(k) for k in sorted(group_by_kind(records))]
