"""A simulated DNS, clock, resolver caches and MTA, driven through the real engine.

Used by ``tlsa-manager simulate SCENARIO`` and by the property tests.  The world
keeps, per authoritative server, every RRset version it served and when; a resolver
may hold any version served within that version's TTL (dane-rules F2), so at each
instant the set of *cacheable* versions is known exactly.  The invariant checked
after every event (I-1): every non-empty cacheable version covers every chain the
MTA serves, for every record kind it contains.

Nothing here is mocked inside the product: :func:`tlsa_manager.engine.converge`
runs unchanged, with this world as its ports.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.name

from tlsa_manager.clock import ClockSample
from tlsa_manager.engine import HostChains, HostSettings, StagedChanged, converge
from tlsa_manager.errors import ProviderConflict, ProviderError, StateError, TlsaManagerError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.ledger import LedgerData
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import DEFAULT_TTL_CEILING, chain_identity, iso
from tlsa_manager.policy import HostPolicy, IssuerFacts
from tlsa_manager.provider import ChangeSet, RRset
from tlsa_manager.records import Tlsa, owner_name

HOST = "mail.example.com"
EVENTS = (
    "sync",
    "renew",
    "next-key",
    "ttl",
    "lag",
    "stop",
    "resume",
    "down",
    "up",
    "fail-next-apply",
    "crash",
    "edit",
    "parallel",
    "mta-stuck",
    "external-ttl",
    "lose-ledger",
    "clock-step",
    "lose-reply",
    "partial-write",
    "stage-race",
    "mta-fixed",
    "interleave",
)


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
            f"T+{_dur(self.at - t0)}: live chain {self.chain} not covered by a cacheable RRset "
            f"(served by {self.server}): {', '.join(self.version) or 'empty'}"
        )


class SimCrash(Exception):
    """The simulated process was killed at a checkpoint."""


def _dur(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts) or "0s"


class _Owner(dns.name.Name):
    """The owner name with its hash computed once.

    dnspython hashes a name by looping over its characters in Python on every dict
    lookup; the engine looks owners up a dozen times a run, and the simulation runs
    millions.  Equal to, and hashing like, the plain name (only faster).
    """

    __slots__ = ("_hash",)
    _hash: int

    def __init__(self, name: dns.name.Name) -> None:
        super().__init__(name.labels)
        object.__setattr__(self, "_hash", super().__hash__())

    def __hash__(self) -> int:
        return self._hash


class Dns:
    """What every instance shares: the clock, the authoritative servers, the primary's RRset,
    who published each record (provider marks), and the checks' findings."""

    def __init__(self, start: float, ttl: int, servers: dict[str, float]) -> None:
        self.t0 = start
        self.clock = start
        self.serial = itertools.count(1)
        self.primary = Version(frozenset(), ttl, 0)
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
        self.timeline: list[str] = []
        self.reported: set[tuple[tuple[str, int], str]] = set()
        self.resolver_cap = 7 * 86400


def _shared(name: str) -> property:
    """An attribute of World that lives in the shared Dns."""
    return property(lambda self: getattr(self.dns, name), lambda self, v: setattr(self.dns, name, v))


class World:
    """DNS servers, resolver caches, an MTA and a clock; the engine's ports.

    Several instances (machines behind one MX name, each with its own MTA, files,
    ledger and clock) can share one DNS: :meth:`add_instance`.
    """

    #: the port's check at deploy: the staged file must still hold the gated chain
    compare_staged = True

    t0 = _shared("t0")
    clock = _shared("clock")
    serial = _shared("serial")
    primary = _shared("primary")
    servers = _shared("servers")
    pending = _shared("pending")
    seq = _shared("seq")
    violations = _shared("violations")
    deferrals = _shared("deferrals")
    over_budget = _shared("over_budget")
    timeline = _shared("timeline")
    reported = _shared("reported")

    def __init__(
        self,
        issuers: Sequence[IssuerFacts],
        *,
        servers: dict[str, float] | None = None,
        ttl: int = 3600,
        negative_ttl: int = 300,
        slack: float = 300.0,
        policy: HostPolicy | None = None,
        start: float = 1_790_000_000.0,
        seed: int = 0,
        key_types: Sequence[str] = ("ecdsa",),
        initial_issuers: dict[str, str] | None = None,
        ttl_ceiling: int = DEFAULT_TTL_CEILING,
        skew: float = 0.0,
        mta_other: bool = False,
        can_probe: bool = True,
        unobserved: bool = False,
        propagation_delay: float | None = None,
        dns: Dns | None = None,
        name: str = "",
    ) -> None:
        self.rng = random.Random(seed)
        self.issuers = {i.name: i for i in issuers}
        self.dns = dns or Dns(start, ttl, servers or {"ns1": 0, "ns2": 30})
        self.dns.worlds.append(self)
        self.dns.resolver_cap = max(self.dns.resolver_cap if dns else 0, ttl_ceiling)
        #: the instance's name: prefixes its chains' labels, marks its records
        self.name = name
        self.ttl = ttl
        self.owner = _Owner(owner_name(HOST))
        self.settings = HostSettings(
            HOST,
            (self.owner,),
            policy or HostPolicy(),
            tuple(issuers),
            (),
            negative_ttl,
            ttl,
            slack,
            ttl_ceiling,
            propagation_delay,
        )
        #: no authoritative server can be asked: the engine sees only the provider's copy
        self.unobserved = unobserved
        self.live: dict[str, ChainFacts] = {}
        self.staged: dict[str, ChainFacts] = {}
        self.next_keys: dict[str, ChainFacts] = {}
        self.counter = itertools.count(1)
        initial = initial_issuers or {}
        for kt in key_types:
            self.live[kt] = self.new_chain(kt, initial.get(kt) or self.default_issuer(kt), new_key=True)
        #: what the MTA presents: the live files as of its last reload
        self.serving: dict[str, ChainFacts] = dict(self.live)
        #: the MTA's own configuration points at other files than tlsa-manager's
        #: ``cert``: it presents these chains whatever is deployed, until fixed
        self.mta_other: dict[str, ChainFacts] = {}
        if mta_other:
            for kt in key_types:
                self.mta_other[kt] = self.new_chain(kt, self.default_issuer(kt), new_key=True)
            self.serving = dict(self.mta_other)
        #: the MTA ignores reloads (wrong path in its config): the probe sees the old chain
        self.mta_stuck = False
        self.ledger = LedgerData()
        self.saved = LedgerData()
        self.fail_next_apply = False
        self.crash_at: str | None = None
        self.edit_before_apply = False
        self.parallel_next = False
        self.applies = 0
        self.narrate = False
        self.quiet_timer = False
        self.last_timer = ""
        #: the host clock runs ``skew`` seconds off the true time (steps change it)
        self.skew = skew
        self.boot_id = "boot-1"
        #: the MTA can be probed on its own port (``probe`` configured)
        self.can_probe = can_probe
        #: this instance's MTA gets mail (a peer: once its first records are everywhere)
        self.in_service = len(self.dns.worlds) == 1
        self.synced = False
        #: the last run changed nothing and waits for nothing (see :meth:`quiescent`)
        self.settled = False
        #: the provider's marks say only "managed by tlsa-manager", not which instance (the old way)
        self.shared_marks = False
        #: another instance runs a whole sync when this one reaches a checkpoint
        self.interleave: tuple[str, int] | None = None
        self.lose_reply_next = False
        self.partial_next = False
        #: a renewal staged at this checkpoint by something that ignores the lock
        self.race: tuple[str, dict[str, Any]] | None = None
        self.lose_ledger_at: str | None = None

        self.said: set[str] = set()

    # -- helpers -------------------------------------------------------------

    def default_issuer(self, key_type: str) -> str:
        return sorted(n for n, i in self.issuers.items() if i.key_type == key_type and i.status == "active")[
            0
        ]

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def new_chain(
        self, key_type: str, issuer: str, *, new_key: bool, old: ChainFacts | None = None
    ) -> ChainFacts:
        n = next(self.counter)
        if not new_key and old is not None:
            spki = old.leaf.spki_der
        elif new_key and key_type in self.next_keys:
            spki = self.next_keys.pop(key_type).leaf.spki_der
        else:
            spki = b"SPKI-" + key_type.encode() + self._bytes(24)
        ca = (
            self.issuers[issuer].certs[0]
            if issuer in self.issuers
            else CertFacts(self._bytes(40), self._bytes(60), issuer)
        )
        leaf = CertFacts(spki, b"CERT" + self._bytes(40), HOST)
        return ChainFacts(f"{self.name}{key_type}#{n}({issuer})", leaf, key_type, (ca,), issuer_name=issuer)

    def log(self, text: str) -> None:
        if self.quiet_timer and text.startswith("timer:"):
            if text.endswith("nothing to do") or text == self.last_timer:
                return
            self.last_timer = text
        self.timeline.append(f"T+{_dur(self.clock - self.t0):>9}  {text}")
        if self.narrate:
            self.timeline.append(f"{'':13}{self.state_line()}")

    def log_once(self, text: str) -> None:
        """Log a line only the first time (a stuck MTA says the same every timer run)."""
        if text not in self.said:
            self.said.add(text)
            self.log(text)

    # -- time, propagation, caches ----------------------------------------

    def publish(self, records: frozenset[Tlsa], ttl: int) -> None:
        self.primary = Version(records, ttl, next(self.serial))
        for server in self.servers.values():
            if server.stopped:
                server.held = self.primary
            else:
                heapq.heappush(
                    self.pending,
                    (self.clock + server.lag, next(self.seq), server.name, self.primary),
                )
        self._deliver(self.clock)

    def _deliver(self, until: float) -> None:
        while self.pending and self.pending[0][0] <= until:
            at, _, name, version = heapq.heappop(self.pending)
            if any(p[2] == name and p[0] <= at and p[3].serial > version.serial for p in self.pending):
                continue  # a zone transfer fetches the newest serial due, not each one in turn
            keep = self.clock
            self.clock = max(self.clock, at)
            self.servers[name].serve(version, self.clock)
            self.check()
            self.clock = max(keep, self.clock)

    def advance(self, to: float) -> None:
        self._deliver(to)
        self.clock = max(self.clock, to)
        self.check()

    def cacheable(self) -> list[tuple[str, Version]]:
        """Every version a resolver may hold now: served within its TTL, which resolvers
        cap at ``resolver_cap`` (Unbound's cache-max-ttl; the tool's ttl_ceiling)."""
        t = self.clock
        cap = self.dns.resolver_cap
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

    def check(self) -> None:
        if len(self.primary.records) > self.settings.policy.budget and (
            not self.over_budget or self.over_budget[-1][1] != len(self.primary.records)
        ):
            self.over_budget.append((self.clock, len(self.primary.records)))
        seen: set[tuple[str, int]] = set()
        for w in self.dns.worlds:
            if not w.in_service and w.synced:
                w.in_service = self._covers_everywhere(w)
        presentable = [c for w in self.dns.worlds for c in w.presentable()]
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

    def _covers_everywhere(self, world: World) -> bool:
        """Every server serves records for ``world``'s chains, and every cacheable RRset covers them."""
        current = [s.current() for s in self.servers.values()]
        return all(v is not None and v.records for v in current) and all(
            c.covered_by(v.records) for _, v in self.cacheable() if v.records for c in world.live.values()
        )

    def sender_verdict(self) -> str:
        """What an RFC 7672 sender concludes: it defers only if no usable record matches."""
        bad = sorted(
            {
                c.label
                for _, v in self.cacheable()
                if v.records
                for w in self.dns.worlds
                for c in w.presentable()
                if not c.authenticates(v.records)
            }
        )
        if bad:
            return "DANE sender: DEFERS mail for " + ", ".join(bad)
        if not any(v.records for _, v in self.cacheable()):
            return "DANE sender: no TLSA yet (no DANE, mail flows)"
        return "DANE sender: accepts " + ", ".join(sorted(c.label for c in self.presentable()))

    def presentable(self) -> list[ChainFacts]:
        """What the MTA presents now, and what it presents after any restart (the files).

        A machine added behind the MX name gets mail only once every RRset a resolver
        may hold covers it (the operator's part when adding a machine; see :meth:`check`).
        """
        if not self.in_service:
            return []
        chains = {c.label: c for c in self.serving.values()}
        chains.update((c.label, c) for c in self.live.values())
        return list(chains.values())

    # -- HostPorts -----------------------------------------------------------

    def chains(self) -> HostChains:
        return HostChains(
            tuple(self.live.values()), tuple(self.staged.values()), tuple(self.next_keys.values())
        )

    def zone_of(self, owner: dns.name.Name) -> str:
        return "simulated zone"

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        """The provider's copy, with the records it marks as this instance's (per-instance marks)."""
        ttl = self.primary.ttl if self.primary.records else None
        mine = frozenset(
            r
            for r in self.primary.records
            if r in self.dns.marks and (self.shared_marks or self.dns.marks[r] == self.name)
        )
        return {o: RRset(o, self.primary.records, ttl, mine) for o in owners}

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
        if self.unobserved:
            ttl = self.primary.ttl if self.primary.records else None
            copy = ServerView("provider", self.primary.records, ttl, provider_copy=True)
            return {o: (copy,) for o in owners}
        views = []
        for server in self.servers.values():
            version = server.current()
            if server.down or version is None:
                views.append(ServerView(server.name, None, None, "timeout"))
            else:
                views.append(
                    ServerView(server.name, version.records, version.ttl if version.records else None)
                )
        return {o: tuple(views) for o in owners}

    def apply(self, changeset: ChangeSet) -> None:
        if self.partial_next:
            # A provider without atomic batches: the additions land, then the call fails.
            self.partial_next = False
            adds = frozenset().union(*(c.add for c in changeset.changes))
            if adds - self.primary.records and changeset.changes[0].expected == self.primary.records:
                self.publish(self.primary.records | adds, self.primary.ttl)
                self.log("the provider applied only the additions, then failed")
            raise ProviderError("simulated partial write (HTTP 500 after the first records)", "retry")
        if self.edit_before_apply:
            self.edit_before_apply = False
            stray = Tlsa.from_text("3 1 1 " + self._bytes(32).hex())
            self.publish(self.primary.records | {stray}, self.primary.ttl)
            self.log(f"someone else adds {stray.to_text()[:20]}... at the primary")
        if self.fail_next_apply:
            self.fail_next_apply = False
            raise ProviderError("simulated provider failure (HTTP 502)", "retry later")
        for change in changeset.changes:
            if change.expected != self.primary.records:
                raise ProviderConflict(f"{change.owner} changed", "re-read")
        records = self.primary.records
        ttl = self.primary.ttl
        for change in changeset.changes:
            records = (records - change.delete) | change.add
            ttl = change.ttl
        self.applies += 1
        for change in changeset.changes:
            for record in change.add - self.primary.records:
                self.dns.marks[record] = self.name
            for record in change.delete:
                self.dns.marks.pop(record, None)
        self.publish(records, ttl)
        if self.lose_reply_next:
            self.lose_reply_next = False
            self.log("the change was applied but its reply was lost")
            raise ProviderError("simulated timeout waiting for the reply", "retry later")

    def wait_for_propagation(self, changeset: ChangeSet) -> None:
        """Propagation takes the time it takes; the engine decides on observations."""

    def deploy(self, chain: ChainFacts) -> None:
        """Rename the staged file over the live one, then reload the MTA (a kill can fall between).

        The file is what holds the staged name now; like LivePorts it is compared with
        the gated chain first (``compare_staged``).
        """
        file = self.staged.get(chain.key_type)
        if file is None or (self.compare_staged and chain_identity(file) != chain_identity(chain)):
            raise StagedChanged("the staged file changed after its gate was computed", "next run")
        self.live[chain.key_type] = file
        self.staged.pop(chain.key_type, None)
        self.log(f"deploy {file.label}")
        self.check()
        self._checkpoint("renamed")
        self._reload(chain)

    def confirm(self, chain: ChainFacts) -> None:
        self._reload(chain)

    def _reload(self, chain: ChainFacts) -> None:
        kt = chain.key_type
        if kt in self.mta_other:
            self.serving[kt] = self.mta_other[kt]
            raise TlsaManagerError(
                f"after the reload the server presents {self.mta_other[kt].label}, not {chain.label}",
                "point the MTA at the configured file",
            )
        if self.mta_stuck:
            self.log_once(f"MTA reloaded but still presents {self.serving[kt].label}")
            raise TlsaManagerError(
                f"after the deploy the server still presents {self.serving[kt].label}; the old records stay",
                "check the MTA's certificate settings and reload it",
            )
        if self.serving.get(kt) != self.live[kt]:
            self.serving[kt] = self.live[kt]
            self.log(f"MTA reloaded: presents {self.live[kt].label}")
        self.check()

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """The probe of the MTA (exact in this world), unless the world says it has none."""
        return tuple(self.serving.values()) if self.can_probe else None

    def read_clocks(self) -> ClockSample:
        return ClockSample(self.clock + self.skew, self.clock - self.t0 + 1000.0, self.boot_id)

    def now(self) -> float:
        return float(self.clock + self.skew)

    # -- runs ----------------------------------------------------------------

    def _save(self, data: LedgerData) -> None:
        self.saved = data.copy()

    def _checkpoint(self, step: str) -> None:
        if self.interleave is not None and self.interleave[0] == step:
            other = self.dns.worlds[self.interleave[1] % len(self.dns.worlds)]
            self.interleave = None
            if other is not self:
                other.sync(f"instance {other.name or 'A'} (while {self.name or 'A'} is at '{step}')")
        if self.race is not None and self.race[0] == step:
            _, ev = self.race
            self.race = None
            kt = ev.get("key_type", "ecdsa")
            if kt in self.live:
                issuer = ev.get("issuer") or self.live[kt].issuer_name or ""
                chain = self.new_chain(kt, issuer, new_key=bool(ev.get("new_key", True)), old=self.live[kt])
                self.staged[kt] = chain
                self.log(f"{chain.label} staged without the lock while a run is at '{step}'")
        if self.lose_ledger_at == step:
            self.lose_ledger_at = None
            self.saved = LedgerData()
            self.log(f"the ledger is deleted while a run is at '{step}'")
            raise SimCrash(step)
        if step == "observed" and self.parallel_next:
            self.parallel_next = False
            self.log(
                "a second run starts in parallel: refused, "
                + StateError("another tlsa-manager run holds the lock").message
            )
        if self.crash_at == step:
            self.crash_at = None
            raise SimCrash(step)

    def sync(self, why: str = "sync") -> None:
        self.ledger = self.saved.copy()  # a new process reads the ledger from disk
        try:
            report = converge(self.settings, self, self.ledger, self._save, checkpoint=self._checkpoint)
        except SimCrash as crash:
            self.log(f"{why}: killed after step '{crash}'")
            return
        except TlsaManagerError as exc:
            self.log(f"{why}: failed: {exc.one_line()}")
            return
        self.synced = True
        self.settled = (
            not report.applied
            and not report.deployed
            and all(not p.changes and all(g.opens_at is None for g in p.gates) for p in report.plans)
        )
        summary = report.plans[0].summary() if report.plans else ""
        extra = f" (then: {report.plans[-1].summary()})" if len(report.plans) > 1 else ""
        self.log(f"{why}: {summary}{extra}")
        for note in report.notes:
            self.log_once(f"  note: {note}")

    def renew(self, key_type: str, *, new_key: bool, issuer: str, direct: bool = False) -> None:
        """A renewal; ``direct`` models an ACME client that installs it itself (no staging)."""
        old = self.live.get(key_type)
        chain = self.new_chain(key_type, issuer, new_key=new_key, old=old)
        self.staged[key_type] = chain
        if direct:
            self.log(f"renewal: {chain.label} installed directly by the ACME client")
            self.live[key_type] = self.serving[key_type] = chain
            self.staged.pop(key_type, None)
            self.check()
        else:
            self.log(f"renewal: {chain.label} staged ({'new' if new_key else 'same'} key)")
        self.sync("hook")

    def add_next_key(self, key_type: str) -> None:
        n = next(self.counter)
        self.next_keys[key_type] = ChainFacts(
            f"{key_type}-next#{n}",
            CertFacts(b"SPKI-" + key_type.encode() + self._bytes(24)),
            key_type,
        )

    def set_ttl(self, ttl: int) -> None:
        """The operator changes the configured TTL; the next sync applies it."""
        self.log(f"configuration: ttl = {ttl}")
        self.settings = HostSettings(**{**self.settings.__dict__, "default_ttl": ttl})

    def external_ttl(self, ttl: int) -> None:
        """Someone changes the TTL behind the tool's back (seen only if a run observes it)."""
        self.log(f"someone sets the TTL to {ttl} at the primary")
        self.publish(self.primary.records, ttl)

    def set_lag(self, server: str, lag: float) -> None:
        self.servers[server].lag = lag
        self.log(f"{server} now lags {_dur(lag)}")

    def stop(self, server: str) -> None:
        self.servers[server].stopped = True
        self.log(f"{server} stops transferring (SIGSTOP)")

    def resume(self, server: str) -> None:
        s = self.servers[server]
        s.stopped = False
        if s.held is not None:
            heapq.heappush(self.pending, (self.clock + s.lag, next(self.seq), s.name, s.held))
            s.held = None
        self.log(f"{server} resumes")
        self._deliver(self.clock)

    # -- event dispatch (scenarios and property tests) ----------------------

    def add_instance(self, name: str, **kw: Any) -> World:
        """Another machine behind the same MX name: own MTA, files, ledger, clock; same DNS."""
        kw.setdefault("ttl", self.ttl)
        kw.setdefault("seed", 7919 * len(self.dns.worlds) + self.rng.randrange(1 << 30))
        return World(tuple(self.issuers.values()), dns=self.dns, name=name, **kw)

    def run_event(self, event: dict[str, Any]) -> None:
        if "instance" in event:
            target = self.dns.worlds[int(event["instance"]) % len(self.dns.worlds)]
            target.run_event({k: v for k, v in event.items() if k != "instance"})
            return
        kind = event["do"]
        if kind == "interleave":
            self.interleave = (str(event.get("step", "observed")), int(event.get("other", 1)))
        elif kind == "sync":
            self.sync()
        elif kind == "renew":
            self.renew(
                event.get("key_type", "ecdsa"),
                new_key=bool(event.get("new_key", False)),
                direct=bool(event.get("direct", False)),
                issuer=event.get("issuer") or self.live[event.get("key_type", "ecdsa")].issuer_name or "",
            )
        elif kind == "next-key":
            self.add_next_key(event.get("key_type", "ecdsa"))
            self.log(f"next {event.get('key_type', 'ecdsa')} key generated")
        elif kind == "ttl":
            self.set_ttl(int(event["ttl"]))
        elif kind == "lag":
            self.set_lag(event.get("server", "ns2"), float(event["seconds"]))
        elif kind == "stop":
            self.stop(event.get("server", "ns2"))
        elif kind == "resume":
            self.resume(event.get("server", "ns2"))
        elif kind == "down":
            self.servers[event.get("server", "ns2")].down = True
            self.log(f"{event.get('server', 'ns2')} stops answering")
        elif kind == "up":
            self.servers[event.get("server", "ns2")].down = False
            self.log(f"{event.get('server', 'ns2')} answers again")
        elif kind == "fail-next-apply":
            self.fail_next_apply = True
        elif kind == "crash":
            self.crash_at = str(event.get("step", "intent-saved"))
        elif kind == "edit":
            self.edit_before_apply = True
        elif kind == "parallel":
            self.parallel_next = True
        elif kind == "external-ttl":
            self.external_ttl(int(event["ttl"]))
        elif kind == "lose-ledger":
            if event.get("step"):
                self.lose_ledger_at = str(event["step"])
            else:
                self.saved = LedgerData()
                self.log("the ledger is deleted")
        elif kind == "clock-step":
            self.skew += float(event["seconds"])
            self.log(f"the host clock steps by {event['seconds']:+.0f} s (now off by {self.skew:+.0f} s)")
        elif kind == "lose-reply":
            self.lose_reply_next = True
        elif kind == "partial-write":
            self.partial_next = True
        elif kind == "stage-race":
            self.race = (str(event.get("step", "gated")), event)
        elif kind == "mta-fixed":
            if self.mta_other:
                self.mta_other = {}
                self.log("the MTA is pointed at the configured files (not reloaded yet)")
        elif kind == "mta-stuck":
            self.mta_stuck = bool(event.get("stuck", True))
            self.log("the MTA " + ("ignores reloads from now on" if self.mta_stuck else "reloads again"))
        else:
            from tlsa_manager.errors import ConfigError

            raise ConfigError(f"unknown scenario event {kind!r}", f"use one of: {', '.join(EVENTS)}")

    def run(
        self,
        events: Sequence[tuple[float, dict[str, Any]]],
        until: float,
        timer: float | None = 3600.0,
        *,
        stop_when_settled: bool = False,
    ) -> None:
        """Replay ``(offset_seconds, event)`` pairs; a timer runs ``sync`` every ``timer`` s.

        With ``stop_when_settled`` the replay ends early once no event is left and the
        world is :meth:`quiescent`: every later timer run would find nothing to do, and
        with nothing served anew no cached version can start to violate the invariant.
        """
        queue = sorted(events, key=lambda e: e[0])
        # Timer ticks at t0 + k x timer, from the first one after now (a replay resumes).
        ticks = itertools.count(max(1, int((self.clock - self.t0) // timer) + 1) if timer else 1)
        next_tick = self.t0 + next(ticks) * timer if timer else None
        i = 0
        while True:
            next_event = self.t0 + queue[i][0] if i < len(queue) else None
            candidates = [t for t in (next_event, next_tick) if t is not None and t <= self.t0 + until]
            if not candidates:
                break
            t = min(candidates)
            if next_event is None and stop_when_settled and self.quiescent():
                break
            self.advance(t)
            if next_event is not None and t == next_event:
                self.run_event(queue[i][1])
                i += 1
            else:
                for world in list(self.dns.worlds):
                    world.sync("timer" if world is self else f"timer {world.name}")
                next_tick = self.t0 + next(ticks) * timer if timer else None
        self.advance(self.t0 + until)

    def quiescent(self) -> bool:
        """Nothing in flight: no delivery pending, every instance's last run changed nothing
        and has no gate that time alone opens, no armed race.  Only an event could change
        DNS now (a stopped server resuming, an MTA starting to reload), and none is left."""
        return not self.pending and all(
            w.settled and w.in_service and w.race is None and w.interleave is None for w in self.dns.worlds
        )

    def state_line(self) -> str:
        """What each server serves, how many versions caches may hold, the sender's verdict."""
        views = ", ".join(
            f"{s.name} serves {len(v.records)} (v{v.serial})" if (v := s.current()) else f"{s.name} -"
            for s in self.servers.values()
        )
        versions = {v.serial for _, v in self.cacheable()}
        return f"[{views}; caches may hold {len(versions)} version(s); {self.sender_verdict()}]"

    def describe_time(self, ts: float) -> str:
        return iso(ts) or ""


@dataclass
class Scenario:
    """A TOML scenario: the world's settings and a list of timed events."""

    description: str
    world: World
    events: list[tuple[float, dict[str, Any]]]
    until: float
    timer: float | None


def load_scenario(path: str, issuers: Sequence[IssuerFacts]) -> Scenario:
    """Read a scenario file (format: docs/simulate.md); every mistake is one ConfigError line."""
    import tomllib

    from tlsa_manager.durations import parse_duration
    from tlsa_manager.errors import ConfigError, InputError
    from tlsa_manager.fsutil import decode_text, read_regular
    from tlsa_manager.records import parse_params

    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such scenario file", "see examples/scenarios/")
    # A regular file only, size-capped: a FIFO or /dev/zero must not hang the run.
    text = decode_text(read_regular(file, limit=4 * 1024 * 1024, what="scenario file"), file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", "fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply", "a scenario is flat tables") from None
    world_doc = doc.get("world", {})
    servers = {
        str(name): parse_duration(lag, f"world.servers.{name}")
        for name, lag in world_doc.get("servers", {"ns1": 0, "ns2": "30s"}).items()
    }
    kinds = tuple(parse_params(k) for k in world_doc.get("records", ["3 1 1", "2 1 1"]))
    policy = HostPolicy(
        kinds=kinds, unsafe_allow_fragile_kinds=bool(world_doc.get("unsafe_allow_fragile_kinds"))
    )
    from tlsa_manager.policy import validate_kinds

    validate_kinds(kinds, policy.unsafe_allow_fragile_kinds)
    known = {i.name for i in issuers}
    initial = {str(k): str(v) for k, v in world_doc.get("issuers", {}).items()}
    for name in initial.values():
        if name not in known:
            raise ConfigError(f"{path}: unknown issuer {name!r}", "use a catalog name such as YE1 or YR2")
    world = World(
        issuers,
        servers=servers,
        ttl=int(parse_duration(world_doc.get("ttl", "1h"), "world.ttl")),
        negative_ttl=int(parse_duration(world_doc.get("negative_ttl", "5m"), "world.negative_ttl")),
        slack=parse_duration(world_doc.get("slack", "5m"), "world.slack"),
        policy=policy,
        key_types=tuple(world_doc.get("key_types", ["ecdsa"])),
        initial_issuers=initial,
        seed=int(world_doc.get("seed", 0)),
    )
    events = []
    for i, ev in enumerate(doc.get("events", [])):
        if "do" not in ev or "at" not in ev:
            raise ConfigError(f"{path}: event {i + 1} needs 'at' and 'do'", 'e.g. at = "1d", do = "renew"')
        if ev.get("issuer") and ev["issuer"] not in known:
            raise ConfigError(f"{path}: event {i + 1}: unknown issuer {ev['issuer']!r}", "use YE1-3 or YR1-3")
        at = parse_duration(ev["at"], f"event {i + 1} at")
        body = {k: v for k, v in ev.items() if k != "at"}
        if "seconds" in body:
            body["seconds"] = parse_duration(body["seconds"], f"event {i + 1} seconds")
        if "ttl" in body:
            body["ttl"] = int(parse_duration(body["ttl"], f"event {i + 1} ttl"))
        events.append((at, body))
    timer_value = world_doc.get("timer", "1h")
    timer = None if timer_value in ("off", 0, "0") else parse_duration(timer_value, "world.timer")
    last = max((at for at, _ in events), default=0.0)
    until = parse_duration(world_doc.get("until", last + 2 * 86400), "world.until")
    return Scenario(str(doc.get("description", "")), world, events, until, timer)
