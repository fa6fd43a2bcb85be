"""The engine's ports over one simulated instance: chain files, provider, servers, MTA, clocks.

:func:`tlsa_manager.engine.converge` runs unchanged with an instance as its
``HostPorts``: nothing inside the product is mocked.  The provider's copy is the
primary's RRset (with per-instance marks), the servers answer with what they serve
now, a deploy renames the staged file and reloads the MTA (a kill can fall between),
and the probe sees exactly what the MTA presents.  Faults armed by events (a failed,
partial or unanswered write, a concurrent edit, a kill or a race at a checkpoint)
happen here.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.name

from tlsa_manager.clock import ClockSample
from tlsa_manager.engine import HostChains, StagedChanged
from tlsa_manager.errors import ProviderConflict, ProviderError, StateError, TlsaManagerError
from tlsa_manager.facts import ChainFacts
from tlsa_manager.ledger import LedgerData
from tlsa_manager.observations import ServerView
from tlsa_manager.planner import chain_identity
from tlsa_manager.provider import ChangeSet, RRset
from tlsa_manager.records import Tlsa
from tlsa_manager.simulation.instance import Instance


class SimCrash(Exception):
    """The simulated process was killed at a checkpoint."""


class InstancePorts(Instance):
    """``HostPorts`` (and the run's checkpoints) over one instance."""

    #: the port's check at deploy: the staged file must still hold the gated chain
    compare_staged = True

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
        for server in self.dns.servers.values():
            version = server.current()
            if server.down or version is None:
                views.append(ServerView(server.name, None, None, "timeout"))
            else:
                signed = None
                if self.signer_backdate is not None:  # a signed zone: re-signed when it changes
                    signed = self.dns.published[version.serial] - self.signer_backdate
                views.append(
                    ServerView(
                        server.name,
                        version.records,
                        version.ttl if version.records else None,
                        signed_at=signed,
                    )
                )
        return {o: tuple(views) for o in owners}

    def apply(self, changeset: ChangeSet) -> None:
        if self.partial_next:
            # A provider without atomic batches: the additions land, then the call fails.
            self.partial_next = False
            adds = frozenset().union(*(c.add for c in changeset.changes))
            if adds - self.primary.records and changeset.changes[0].expected == self.primary.records:
                self.publish(self.primary.records | adds, self.primary.ttl, by_tool=False)  # half a write
                self.log("the provider applied only the additions, then failed")
            raise ProviderError("simulated partial write (HTTP 500 after the first records)", "retry")
        if self.edit_before_apply:
            self.edit_before_apply = False
            stray = Tlsa.from_text("3 1 1 " + self._bytes(32).hex())
            self.publish(self.primary.records | {stray}, self.primary.ttl, by_tool=False)
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

    @property
    def confirms_deploys(self) -> bool:
        """This world reloads and probes exactly: every deploy is confirmed in its run."""
        return True

    def read_clocks(self) -> ClockSample:
        return ClockSample(self.clock + self.skew, self.clock - self.booted + 1000.0, self.boot_id)

    def now(self) -> float:
        return float(self.clock + self.skew)

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
