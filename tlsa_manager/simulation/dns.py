"""The simulated DNS every instance shares: servers that lag, resolver caches, the checks.

The world keeps, per authoritative server, every RRset version it served and when; a
resolver may hold any version served within that version's TTL (dane-rules F2), so at
each instant the set of *cacheable* versions is known exactly.  The invariant checked
after every delivery and event (I-1): every non-empty cacheable version covers every
chain an MTA of the owner presents, for every record kind it contains; the RFC 7672
sender's verdict (any usable record matching) is kept apart, as the "DEFERS mail" line.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tlsa_manager.records import Tlsa, owner_name

if TYPE_CHECKING:
    from tlsa_manager.simulation.instance import Instance
    from tlsa_manager.simulation.world import World

HOST = "mail.example.com"


@dataclass(frozen=True)
class Version:
    records: frozenset[Tlsa]
    ttl: int
    serial: int


@dataclass
class Interval:
    version: Version
    start: float
    end: float | None = None


@dataclass
class Server:
    name: str
    lag: float = 0.0
    stopped: bool = False
    down: bool = False
    intervals: list[Interval] = field(default_factory=list)
    held: Version | None = None

    def current(self) -> Version | None:
        return self.intervals[-1].version if self.intervals else None

    def serve(self, version: Version, at: float) -> None:
        now_serving = self.current()
        if now_serving is not None and now_serving.serial >= version.serial:
            return  # zone transfers only move forward
        if self.intervals:
            self.intervals[-1].end = at
        self.intervals.append(Interval(version, at))


@dataclass(frozen=True)
class Violation:
    at: float
    chain: str
    version: tuple[str, ...]
    server: str

    def describe(self, t0: float) -> str:
        return (
            f"T+{dur(self.at - t0)}: live chain {self.chain} not covered by a cacheable RRset "
            f"(served by {self.server}): {', '.join(self.version) or 'empty'}"
        )


def dur(seconds: float) -> str:
    """``1d2h3m4s``: offsets in the timeline."""
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts) or "0s"


#: one object for every world (``owner_name`` remembers it, hashed once): caches keyed
#: by the owner (``name_text``) find it by identity, without dnspython's comparison
OWNER = owner_name(HOST)


class Dns:
    """What every instance shares: the true clock, the authoritative servers, the
    primary's RRset, who published each record (provider marks), and the checks' findings."""

    def __init__(self, start: float, ttl: int, servers: dict[str, float]) -> None:
        self.t0 = start
        self.clock = start
        self.serial = itertools.count(1)
        self.primary = Version(frozenset(), ttl, 0)
        #: serial -> when the primary published (and signed) it, true time
        self.published: dict[int, float] = {0: start}
        self.servers = {name: Server(name, lag) for name, lag in servers.items()}
        for server in self.servers.values():
            server.serve(self.primary, start)
        self.pending: list[tuple[float, int, str, Version]] = []
        self.seq = itertools.count()
        self.worlds: list[World] = []
        #: record -> the instance whose provider call added it (a Cloudflare comment)
        self.marks: dict[Tlsa, str] = {}
        self.violations: list[Violation] = []
        self.deferrals: list[Violation] = []
        self.over_budget: list[tuple[float, int]] = []
        #: the budget bounds what the tool publishes (records not its own counted): a
        #: version someone else published, or half a write the provider failed after
        #: applying its additions, may exceed it until the tool's next write
        self.outside_serials: set[int] = set()
        self.timeline: list[str] = []
        self.reported: set[tuple[tuple[str, int], str]] = set()
        self.resolver_cap = 7 * 86400

    # -- propagation -----------------------------------------------------------

    def publish(self, records: frozenset[Tlsa], ttl: int, budget: int, *, by_tool: bool = True) -> None:
        """A new version at the primary; each server serves it after its lag (or when resumed)."""
        self.primary = Version(records, ttl, next(self.serial))
        if not by_tool:
            self.outside_serials.add(self.primary.serial)
        self.published[self.primary.serial] = self.clock
        for server in self.servers.values():
            if server.stopped:
                server.held = self.primary
            else:
                heapq.heappush(
                    self.pending,
                    (self.clock + server.lag, next(self.seq), server.name, self.primary),
                )
        self.deliver(self.clock, budget)

    def deliver(self, until: float, budget: int) -> None:
        """Every zone transfer due by ``until``, each checked at its own instant."""
        while self.pending and self.pending[0][0] <= until:
            at, _, name, version = heapq.heappop(self.pending)
            if any(p[2] == name and p[0] <= at and p[3].serial > version.serial for p in self.pending):
                continue  # a zone transfer fetches the newest serial due, not each one in turn
            keep = self.clock
            self.clock = max(self.clock, at)
            self.servers[name].serve(version, self.clock)
            self.check(budget)
            self.clock = max(keep, self.clock)

    def advance(self, to: float, budget: int) -> None:
        self.deliver(to, budget)
        self.clock = max(self.clock, to)
        self.check(budget)

    def resume(self, server: Server) -> None:
        """A stopped server transfers again: what it missed arrives after its lag."""
        server.stopped = False
        if server.held is not None:
            heapq.heappush(self.pending, (self.clock + server.lag, next(self.seq), server.name, server.held))
            server.held = None

    # -- caches and the checks ---------------------------------------------------

    def cacheable(self) -> list[tuple[str, Version]]:
        """Every version a resolver may hold now: served within its TTL, which resolvers
        cap at ``resolver_cap`` (Unbound's cache-max-ttl; the tool's ttl_ceiling)."""
        t = self.clock
        cap = self.resolver_cap
        out = []
        for server in self.servers.values():
            expired = 0
            for iv in server.intervals:
                if iv.end is not None and iv.end + min(iv.version.ttl, cap) <= t:
                    expired += 1  # gone from every cache, and time only moves forward
                elif iv.start <= t:
                    out.append((server.name, iv.version))
            if expired and expired < len(server.intervals):
                del server.intervals[:expired]
        return out

    def check(self, budget: int) -> None:
        """I-1 at this instant, the budget, and the RFC 7672 sender's verdict."""
        if (
            len(self.primary.records) > budget
            and self.primary.serial not in self.outside_serials
            and (not self.over_budget or self.over_budget[-1][1] != len(self.primary.records))
        ):
            self.over_budget.append((self.clock, len(self.primary.records)))
        seen: set[tuple[str, int]] = set()
        for w in self.worlds:
            if not w.in_service and w.synced:
                w.in_service = self.covers_everywhere(w)
        presentable = [c for w in self.worlds for c in w.presentable()]
        for server, version in self.cacheable():
            if not version.records:
                continue
            for chain in presentable:
                key = (chain.label, version.serial)
                if key in seen:
                    continue
                seen.add(key)
                if not chain.covered_by(version.records) and (key, server) not in self.reported:
                    self.reported.add((key, server))
                    found = Violation(
                        self.clock,
                        chain.label,
                        tuple(sorted(r.to_text()[:14] for r in version.records)),
                        server,
                    )
                    self.violations.append(found)
                    if not chain.authenticates(version.records):
                        self.deferrals.append(found)

    def covers_everywhere(self, world: Instance) -> bool:
        """Every server serves records for ``world``'s chains, and every cacheable RRset covers them."""
        current = [s.current() for s in self.servers.values()]
        return all(v is not None and v.records for v in current) and all(
            c.covered_by(v.records) for _, v in self.cacheable() if v.records for c in world.live.values()
        )

    def sender_verdict(self, world: Instance) -> str:
        """What an RFC 7672 sender concludes: it defers only if no usable record matches
        (of any instance; "accepts" lists what ``world`` presents)."""
        bad = sorted(
            {
                c.label
                for _, v in self.cacheable()
                if v.records
                for w in self.worlds
                for c in w.presentable()
                if not c.authenticates(v.records)
            }
        )
        if bad:
            return "DANE sender: DEFERS mail for " + ", ".join(bad)
        if not any(v.records for _, v in self.cacheable()):
            return "DANE sender: no TLSA yet (no DANE, mail flows)"
        return "DANE sender: accepts " + ", ".join(sorted(c.label for c in world.presentable()))

    def state_line(self, world: Instance) -> str:
        """What each server serves, how many versions caches may hold, the sender's verdict."""
        views = ", ".join(
            f"{s.name} serves {len(v.records)} (v{v.serial})" if (v := s.current()) else f"{s.name} -"
            for s in self.servers.values()
        )
        versions = {v.serial for _, v in self.cacheable()}
        return f"[{views}; caches may hold {len(versions)} version(s); {self.sender_verdict(world)}]"
