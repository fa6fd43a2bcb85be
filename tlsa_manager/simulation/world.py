"""A simulated world: instances that run tlsa-manager, and what happens to them.

Used by ``tlsa-manager simulate SCENARIO`` and by the property tests.  A ``World`` is
one instance (its MTA, files, ledger and clock) with the engine's ports
(``ports.py``) and the shared DNS (``dns.py``); :meth:`World.add_instance` puts
another machine behind the same MX name.  Runs go through the real engine
(:func:`tlsa_manager.engine.converge`); events come from a scenario or a generated
timeline (``events.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tlsa_manager.engine import HostSettings, converge
from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.planner import iso
from tlsa_manager.simulation import events
from tlsa_manager.simulation.dns import dur
from tlsa_manager.simulation.ports import InstancePorts, SimCrash


class World(InstancePorts):
    """DNS servers, resolver caches, an MTA and a clock; the engine's ports.

    Several instances (machines behind one MX name, each with its own MTA, files,
    ledger and clock) can share one DNS: :meth:`add_instance`.
    """

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
        self.publish(self.primary.records, ttl, by_tool=False)

    def set_lag(self, server: str, lag: float) -> None:
        self.dns.servers[server].lag = lag
        self.log(f"{server} now lags {dur(lag)}")

    def stop(self, server: str) -> None:
        self.dns.servers[server].stopped = True
        self.log(f"{server} stops transferring (SIGSTOP)")

    def resume(self, server: str) -> None:
        self.dns.resume(self.dns.servers[server])
        self.log(f"{server} resumes")
        self.dns.deliver(self.clock, self.settings.policy.budget)

    def add_instance(self, name: str, **kw: Any) -> World:
        """Another machine behind the same MX name: own MTA, files, ledger, clock; same DNS."""
        kw.setdefault("ttl", self.ttl)
        kw.setdefault("seed", 7919 * len(self.dns.worlds) + self.rng.randrange(1 << 30))
        return World(tuple(self.issuers.values()), dns=self.dns, name=name, **kw)

    def run_event(self, event: dict[str, Any]) -> None:
        """One event of a scenario or timeline (the kinds: docs/simulate.md)."""
        events.dispatch(self, event)

    def run(
        self,
        timed: Sequence[tuple[float, dict[str, Any]]],
        until: float,
        timer: float | None = 3600.0,
        *,
        stop_when_settled: bool = False,
    ) -> None:
        """Replay ``(offset_seconds, event)`` pairs with a ``sync`` timer (:func:`events.replay`)."""
        events.replay(self, timed, until, timer, stop_when_settled=stop_when_settled)

    def quiescent(self) -> bool:
        """Nothing in flight: no delivery pending, every instance's last run changed nothing
        and has no gate that time alone opens, no armed race.  Only an event could change
        DNS now (a stopped server resuming, an MTA starting to reload), and none is left."""
        return not self.dns.pending and all(
            w.settled and w.in_service and w.race is None and w.interleave is None for w in self.dns.worlds
        )

    def describe_time(self, ts: float) -> str:
        return iso(ts) or ""
