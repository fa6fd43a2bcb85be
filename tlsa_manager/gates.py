"""When one owner name lets a staged chain go live (dane-rules F6), and why that long.

The one gate-time computation behind plan, status, sync and hook (issue 13): pure,
from the owner's history and views, the negative TTL and the slack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tlsa_manager.facts import ChainFacts
from tlsa_manager.plans import OwnerInput, short_time
from tlsa_manager.records import Params, params_text


@dataclass(frozen=True)
class GateTime:
    """When one owner name lets a chain go live (F6), and the term that sets the wait."""

    t_sync: float | None
    opens_at: float | None
    wait: float
    #: ``2 x negative TTL 60 s (...) + slack 1 s``, or why there is no time yet
    term: str


class GateTiming(Protocol):
    """A host's timing settings, as the planner's input and the run's settings both hold them."""

    @property
    def negative_ttl(self) -> int: ...
    @property
    def slack(self) -> float: ...
    @property
    def ttl_ceiling(self) -> int: ...
    @property
    def propagation_delay(self) -> float | None: ...


def gate_time(
    owner: OwnerInput, chain: ChainFacts, timing: GateTiming, *, adds_nothing: bool = False
) -> GateTime:
    """The one gate-time computation behind plan, status, sync and hook (issue 13).

    ``t_sync + 2 x max(TTL_pos, TTL_neg) + slack`` with the term that is largest named:
    the current TTL, an older larger TTL still in caches (with the server and time it
    was seen), the negative TTL (when a server had no TLSA record, with when), or the
    server that does not serve the chain's records yet.
    """
    negative_ttl, slack, ttl_ceiling = timing.negative_ttl, timing.slack, timing.ttl_ceiling
    propagation_delay = timing.propagation_delay
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


def foreign_kinds(owners: Sequence[OwnerInput], kinds: Sequence[Params], chain: ChainFacts) -> str | None:
    """Why ``chain`` can never go live while the RRsets hold them, or None: records not
    ours, of a kind tlsa-manager does not publish here (someone else's "3 0 1"), of
    which none matches it.  A sender that uses that kind would fail on it (I-1), and no
    record of ours can fix that: said as it is, not as "its records are not published
    yet" forever.  (A kind of ours that the configuration dropped the run removes.)"""
    for owner in owners:
        records = owner.published.records
        foreign = sorted({r.params for r in records - owner.managed} - set(kinds))
        blocking = [params_text(k) for k in foreign if not chain.matching(k) & records]
        if blocking:
            quoted = ", ".join(f'"{k}"' for k in blocking)
            return (
                f"{owner.owner} holds {quoted} records, a kind tlsa-manager does not publish here, "
                "and none matches it; remove them, or list that kind in the host's records"
            )
    return None
