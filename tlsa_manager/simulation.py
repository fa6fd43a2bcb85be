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

from tlsa_manager.engine import HostChains, HostSettings, converge
from tlsa_manager.errors import ProviderConflict, ProviderError, StateError, TlsaManagerError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.ledger import LedgerData
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import iso
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


class World:
    """DNS servers, resolver caches, an MTA and a clock; the engine's ports."""

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
    ) -> None:
        self.rng = random.Random(seed)
        self.issuers = {i.name: i for i in issuers}
        self.t0 = start
        self.clock = start
        self.ttl = ttl
        self.owner = owner_name(HOST)
        self.serial = itertools.count(1)
        self.primary = Version(frozenset(), ttl, 0)
        self.servers = {name: Server(name, lag) for name, lag in (servers or {"ns1": 0, "ns2": 30}).items()}
        for server in self.servers.values():
            server.serve(self.primary, start)
        self.pending: list[tuple[float, int, str, Version]] = []
        self.seq = itertools.count()
        self.settings = HostSettings(
            HOST,
            (self.owner,),
            policy or HostPolicy(),
            tuple(issuers),
            (),
            negative_ttl,
            ttl,
            slack,
        )
        self.live: dict[str, ChainFacts] = {}
        self.staged: dict[str, ChainFacts] = {}
        self.next_keys: dict[str, ChainFacts] = {}
        self.counter = itertools.count(1)
        initial = initial_issuers or {}
        for kt in key_types:
            self.live[kt] = self.new_chain(kt, initial.get(kt) or self.default_issuer(kt), new_key=True)
        #: what the MTA presents: the live files as of its last reload
        self.serving: dict[str, ChainFacts] = dict(self.live)
        #: the MTA ignores reloads (wrong path in its config): the probe sees the old chain
        self.mta_stuck = False
        self.ledger = LedgerData()
        self.saved = LedgerData()
        self.violations: list[Violation] = []
        self.timeline: list[str] = []
        self.fail_next_apply = False
        self.crash_at: str | None = None
        self.edit_before_apply = False
        self.parallel_next = False
        self.applies = 0
        self.narrate = False
        self.quiet_timer = False
        self.last_timer = ""
        self.reported: set[tuple[tuple[str, int], str]] = set()
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
        return ChainFacts(f"{key_type}#{n}({issuer})", leaf, key_type, (ca,), issuer_name=issuer)

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
        t = self.clock
        out = []
        for server in self.servers.values():
            for iv in server.intervals:
                if iv.start <= t and (iv.end is None or iv.end + iv.version.ttl > t):
                    out.append((server.name, iv.version))
        return out

    def check(self) -> None:
        seen: set[tuple[str, int]] = set()
        for server, version in self.cacheable():
            if not version.records:
                continue
            for chain in self.presentable():
                key = (chain.label, version.serial)
                if key in seen:
                    continue
                seen.add(key)
                if not chain.covered_by(version.records) and (key, server) not in self.reported:
                    self.reported.add((key, server))
                    self.violations.append(
                        Violation(
                            self.clock,
                            chain.label,
                            tuple(sorted(r.to_text()[:14] for r in version.records)),
                            server,
                        )
                    )

    def sender_verdict(self) -> str:
        bad = sorted(
            {
                c.label
                for _, v in self.cacheable()
                if v.records
                for c in self.presentable()
                if not c.covered_by(v.records)
            }
        )
        if bad:
            return "DANE sender: DEFERS mail for " + ", ".join(bad)
        if not any(v.records for _, v in self.cacheable()):
            return "DANE sender: no TLSA yet (no DANE, mail flows)"
        return "DANE sender: accepts " + ", ".join(sorted(c.label for c in self.presentable()))

    def presentable(self) -> list[ChainFacts]:
        """What the MTA presents now, and what it presents after any restart (the files)."""
        chains = {c.label: c for c in self.serving.values()}
        chains.update((c.label, c) for c in self.live.values())
        return list(chains.values())

    # -- HostPorts -----------------------------------------------------------

    def chains(self) -> HostChains:
        return HostChains(
            tuple(self.live.values()), tuple(self.staged.values()), tuple(self.next_keys.values())
        )

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        ttl = self.primary.ttl if self.primary.records else None
        return {o: RRset(o, self.primary.records, ttl) for o in owners}

    def observe(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, tuple[ServerView, ...]]:
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
        self.publish(records, ttl)

    def wait_for_propagation(self, changeset: ChangeSet) -> None:
        """Propagation takes the time it takes; the engine decides on observations."""

    def deploy(self, chain: ChainFacts) -> None:
        """Rename the staged file over the live one, then reload the MTA (a kill can fall between)."""
        self.live[chain.key_type] = chain
        self.staged.pop(chain.key_type, None)
        self.log(f"deploy {chain.label}")
        self.check()
        self._checkpoint("renamed")
        self._reload(chain)

    def confirm(self, chain: ChainFacts) -> None:
        self._reload(chain)

    def _reload(self, chain: ChainFacts) -> None:
        kt = chain.key_type
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

    def now(self) -> float:
        return self.clock

    # -- runs ----------------------------------------------------------------

    def _save(self, data: LedgerData) -> None:
        self.saved = data.copy()

    def _checkpoint(self, step: str) -> None:
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

    def run_event(self, event: dict[str, Any]) -> None:
        kind = event["do"]
        if kind == "sync":
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
    ) -> None:
        """Replay ``(offset_seconds, event)`` pairs; a timer runs ``sync`` every ``timer`` s."""
        queue = sorted(events, key=lambda e: e[0])
        ticks = itertools.count(1)
        next_tick = self.t0 + timer if timer else None
        i = 0
        while True:
            next_event = self.t0 + queue[i][0] if i < len(queue) else None
            candidates = [t for t in (next_event, next_tick) if t is not None and t <= self.t0 + until]
            if not candidates:
                break
            t = min(candidates)
            self.advance(t)
            if next_event is not None and t == next_event:
                self.run_event(queue[i][1])
                i += 1
            else:
                self.sync("timer")
                next_tick = self.t0 + (next(ticks) + 1) * timer if timer else None
        self.advance(self.t0 + until)

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
